"""``bench.py ab``: the same cells from two checkouts, base and new, measured side by side in alternation.

Two builds measured at different times differ by everything that happened between them (a whole run drifts by up
to 25-30% between invocations on a shared machine). Measured in alternation they share the machine's state, and a
test on the pairs sees only their difference.

- **Each side by its own code.** A cell of either side runs through that tree's own command line,
  ``python TREE/bench.py run`` with the cell's options, one process (``--repeats 1``) and its own ``--results``
  file, from the tree's folder; no cell JSON of one tree reaches the other's worker. Only options both trees
  accept are passed: :func:`read_tree` reads the base's ``bench.py run --help`` and a base too old for a cell's
  options is refused in one line that names them.
- **ABBA.** Pair ``p`` of the ``i``-th cell runs base first when ``p + i`` is even, else new first: a cell
  alternates base-new, new-base, ... over its pairs, and neighbouring cells alternate too, so neither side
  always runs first (a warm cache, a spell of the machine) or always second.
- **Rows.** Each side's row is appended to the comparison's results file with ``paired`` (side, pair, order,
  the OpenMP wait policy) and a key of its own (``benchmarks.results.paired_key``), and ``cell.repeat`` set to
  its pair. ``report`` shows both sides apart; ``--resume`` and "newest per key" never fold base into new.
- **How many pairs.** At least ``min_pairs``; then one more pair, for the cells still undecided only, while the
  time budget lasts and ``max_pairs`` is not reached. Which cells are undecided is the statistics' question
  (``reports.paired``), asked through ``still_open`` after every round.
- **Noise at the source.** ``WAIT_POLICIES``: by default both sides' processes run with OpenMP threads that
  sleep instead of spinning when idle (``OMP_WAIT_POLICY=PASSIVE``, ``KMP_BLOCKTIME=0``), so a worker does not
  burn the core another tenant (or its own second thread) needs; ``--wait-policy default`` leaves the runtime's
  own. ``PRIMITIVE_CACHES``: by default oneDNN, which runs PyTorch's (and TensorFlow's) CPU convolutions, keeps
  no primitives between calls (``ONEDNN_PRIMITIVE_CACHE_CAPACITY=0``). With its cache, each process times the
  kernels its first calls happened to get: measured on a shared 2-core VM, two processes of one build running
  the same PyTorch CIFAR inference step differed by 7-9% (sd of the pairs' log ratios), steadily for as long as
  they ran, with one thread, pinned to one core and with address randomisation off; two models in one process
  did not differ (ratios 0.99-1.00), and with oneDNN off, or its cache off, the pairs' spread fell to 2-4%.
  Building primitives at every call costs the step about 5% on both sides. ``--primitive-cache kept`` measures
  the cached kernels as ``bench.py run`` does. Every row records both settings.

This is the fallback of ``bench.py ab``: cells both trees can interleave step by step (``benchmarks.interleave``)
are measured that way, which is finer and cheaper; a tree without the step server, or a multi-device cell, is
paired here, as whole processes.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.cell import CellConfig
from benchmarks.process import ROOT, run_bounded
from benchmarks.results import (
    ResultRow,
    ResultsFileError,
    append_row,
    lock_results,
    new_run_id,
    paired_key,
    read_results,
)

SIDES = ("base", "new")
# OpenMP runtimes' idle threads: spin (the default of GNU and Intel OpenMP for a while) or sleep at once.
WAIT_POLICIES = {
    "passive": {"OMP_WAIT_POLICY": "PASSIVE", "KMP_BLOCKTIME": "0"},
    "default": {},
}
# oneDNN's primitive cache: "fresh" builds every call's primitives anew, so no process keeps a lucky or unlucky set.
PRIMITIVE_CACHES = {
    "fresh": {"ONEDNN_PRIMITIVE_CACHE_CAPACITY": "0"},
    "kept": {},
}
# Options every cell passes to a tree's ``bench.py run``; a base without one of them cannot run a paired cell.
NEEDED_FLAGS = (
    "--framework",
    "--variant",
    "--mode",
    "--batch-size",
    "--split-impl",
    "--steps",
    "--warmup",
    "--time-budget",
    "--repeats",
    "--gpus",
    "--seed",
    "--results",
    "--no-report",
)
HELP_TIMEOUT_S = 120.0
STEP_SERVER = Path("benchmarks/step_server.py")


class PairedError(ValueError):
    """A paired comparison that cannot run as asked; the message is one line for the user."""


@dataclass(frozen=True)
class Tree:
    """A checkout whose ``bench.py run`` measures one side: where it is, which options its ``run`` accepts, and
    whether it has a step server (``benchmarks/step_server.py``: it can be interleaved step by step)."""

    path: Path
    flags: frozenset[str]
    step_server: bool = False
    fork_server: bool = False  # its step server can fork one per pair from a process that imported once


def read_tree(path: Path, env: Mapping[str, str], timeout_s: float = HELP_TIMEOUT_S) -> Tree:
    """The options ``path``'s ``bench.py run`` accepts, from its own ``--help``; PairedError when it has none."""
    path = path.expanduser().resolve()
    if not (path / "bench.py").is_file():
        raise PairedError(f"{path} has no bench.py: give a checkout of this suite (e.g. git worktree add DIR BASE)")
    help_env = {**env, "COLUMNS": "250", "TERM": "dumb", "NO_COLOR": "1"}
    ended = run_bounded([sys.executable, str(path / "bench.py"), "run", "--help"], help_env, timeout_s, cwd=path)
    if ended.returncode != 0:
        last = (ended.stderr.strip().splitlines() or ["no output"])[-1]
        raise PairedError(f"{path}/bench.py run --help failed ({last}): the base cannot run cells")
    flags = frozenset(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", ended.stdout))
    return Tree(path, flags, speaks_steps(path), forks_servers(path))


def speaks_steps(path: Path) -> bool:
    """Whether the tree at ``path`` has the step server; read from its files, never by running its code."""
    return (path / STEP_SERVER).is_file()


def forks_servers(path: Path) -> bool:
    """Whether the tree's step server has the fork server (protocol 3); read from its file, never by running it."""
    return speaks_steps(path) and "--fork-server" in (path / STEP_SERVER).read_text(encoding="utf-8", errors="replace")


def cell_options(cell: CellConfig) -> list[str]:
    """The ``bench.py run`` options that measure exactly ``cell``, once, in one process."""
    options = [
        *("--framework", cell.framework, "--variant", cell.variant, "--mode", cell.mode),
        *("--batch-size", str(cell.batch_size), "--split-impl", cell.split_impl),
        *("--steps", str(cell.steps), "--warmup", str(cell.warmup), "--time-budget", f"{cell.time_budget_s:g}"),
        *("--repeats", "1", "--gpus", str(cell.gpus), "--seed", str(cell.seed)),
    ]
    if cell.time_budget_s:
        options += ["--target-precision", f"{cell.target_precision:g}"]
    if cell.simulate_devices:
        options += ["--simulate-devices", str(cell.simulate_devices)]
    if cell.precision != "fp32":
        options += ["--precision", cell.precision]
    if cell.gpus and cell.precision == "fp32":
        options += ["--math-mode", cell.math_mode]
    options += [flag for flag, on in (("--compile", cell.compiled), ("--channels-last", cell.channels_last),
                                      ("--xeon-launch", cell.xeon_launch)) if on]  # fmt: skip
    return options


def missing_flags(tree: Tree, cells: Sequence[CellConfig]) -> list[str]:
    """The options the cells need that ``tree``'s ``bench.py run`` does not accept."""
    wanted = dict.fromkeys(NEEDED_FLAGS)
    for cell in cells:
        wanted |= dict.fromkeys(word for word in cell_options(cell) if word.startswith("--"))
    return [flag for flag in wanted if flag not in tree.flags]


def check_trees(base: Tree, new: Tree, cells: Sequence[CellConfig]) -> None:
    """Refuse, in one line naming what is missing, a tree whose ``bench.py run`` cannot measure the cells."""
    for side, tree in (("base", base), ("new", new)):
        if missing := missing_flags(tree, cells):
            raise PairedError(
                f"the {side} tree at {tree.path} is too old for bench.py ab: its `bench.py run` lacks "
                f"{', '.join(missing)}"
            )


def order(pair: int, index: int) -> tuple[str, str]:
    """ABBA: which side runs first in pair ``pair`` of the ``index``-th cell."""
    return SIDES if (pair + index) % 2 == 0 else SIDES[::-1]


def noise_settings(wait_policy: str, primitive_cache: str) -> dict[str, str]:
    """The variables both sides' processes get for the wait policy and oneDNN's primitive cache."""
    if wait_policy not in WAIT_POLICIES:
        raise PairedError(f"unknown wait policy {wait_policy!r}; valid: {', '.join(WAIT_POLICIES)}")
    if primitive_cache not in PRIMITIVE_CACHES:
        raise PairedError(f"unknown primitive cache {primitive_cache!r}; valid: {', '.join(PRIMITIVE_CACHES)}")
    return {**WAIT_POLICIES[wait_policy], **PRIMITIVE_CACHES[primitive_cache]}


def side_environment(environ: Mapping[str, str], wait_policy: str, primitive_cache: str) -> dict[str, str]:
    """The environment both sides' processes run with: the caller's, with the noise settings set (or left)."""
    return {**environ, **noise_settings(wait_policy, primitive_cache)}


@dataclass
class PairedRun:
    """What a paired comparison runs: the cells, the two trees, where rows go and how long it may take."""

    cells: list[CellConfig]
    base: Tree
    new: Tree
    results: Path
    budget_s: float
    min_pairs: int
    max_pairs: int
    timeout_s: float
    wait_policy: str = "passive"
    primitive_cache: str = "fresh"
    environ: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    servers: str = "forked"  # interleaved steps: each pair's servers forked from a fork server, or started fresh


@dataclass
class PairedRows:
    """The rows a paired comparison wrote and why it stopped adding pairs (``bench.py ab`` times itself)."""

    rows: list[ResultRow]
    stopped: str  # "decided", "budget" or "max pairs"


def paired_fields(run: PairedRun, tree: Tree, cell: CellConfig, side: str, pair: int, first: str, mode: str) -> dict:
    """What a paired row says of its pairing: its side and pair, which side went first, the tree, how threads
    waited, whether oneDNN kept its primitives, and whether whole processes or interleaved steps were paired."""
    return {
        "side": side,
        "pair": pair,
        "order": f"{first}-first",
        "cell_key": cell.key(),
        "tree": str(tree.path),
        "wait_policy": run.wait_policy,
        "wait_environment": WAIT_POLICIES[run.wait_policy],
        "primitive_cache": run.primitive_cache,
        "primitive_cache_environment": PRIMITIVE_CACHES[run.primitive_cache],
        "mode": mode,
    }


def measure_side(
    run: PairedRun, side: str, cell: CellConfig, pair: int, first: str, run_id: str, folder: Path
) -> ResultRow:
    """One process of one side: the tree's own ``bench.py run`` of the cell; its row, marked with side and pair."""
    tree = run.base if side == "base" else run.new
    results = folder / f"{side}-{pair}-{cell.key()}.jsonl"
    command = [sys.executable, str(tree.path / "bench.py"), "run", *cell_options(cell), "--results", str(results)]
    command.append("--no-report")
    env = side_environment(run.environ, run.wait_policy, run.primitive_cache)
    started = time.time()
    # The tree's parent bounds its own worker by the cell timeout; this bound only catches a parent that hangs.
    ended = run_bounded(command, env, run.timeout_s + HELP_TIMEOUT_S, cwd=tree.path)
    try:
        written = read_results(results).rows
    except ResultsFileError as error:
        written, problem = [], str(error)
    else:
        tail = " | ".join(line.strip() for line in ended.stderr.strip().splitlines()[-3:])
        problem = f"`bench.py run` wrote no row (exit {ended.returncode}): {tail or 'no output'}"
    paired = paired_fields(run, tree, cell, side, pair, first, "processes")
    if written:
        data = written[-1].to_dict()
        paired["side_run_id"] = data["run_id"]
        data["cell"] = {**data["cell"], "repeat": pair}
    else:
        from benchmarks.measure.environment import machine_environment

        failed = ResultRow.from_result(
            cell, {"status": "crashed", "error": problem}, machine_environment(), run_id, started
        )
        data = failed.to_dict()
        data["cell"] = {**data["cell"], "repeat": pair}
    data.update(key=paired_key(cell.key(), side, pair), run_id=run_id, paired=paired)
    return ResultRow.from_dict(data)


def run_pairs(
    run: PairedRun,
    still_open: Callable[[list[ResultRow]], set[str]],
    on_start: Callable[[CellConfig, str, int], None] = lambda cell, side, pair: None,
    on_row: Callable[[ResultRow], None] = lambda row: None,
) -> PairedRows:
    """Pairs of every cell in ABBA order, appended to ``run.results`` as each side finishes; see the module doc.

    ``still_open(rows)`` answers, after each round from ``min_pairs`` on, the keys (``CellConfig.key()``) of the
    cells that need another pair; a round runs only when the last round's time for those cells fits in what is
    left of ``budget_s``.
    """
    run_id, rows, began = new_run_id(), [], time.monotonic()
    took: dict[str, float] = {}  # a cell's last pair, in seconds
    open_keys = [cell.key() for cell in run.cells]
    stopped = "max pairs"
    with lock_results(run.results), tempfile.TemporaryDirectory(prefix="bench-ab-") as scratch:
        for pair in range(run.max_pairs):
            if pair >= run.min_pairs:
                open_keys = [key for key in open_keys if key in still_open(rows)]
                if not open_keys:
                    stopped = "decided"
                    break
                left = run.budget_s - (time.monotonic() - began)
                if sum(took.get(key, 0.0) for key in open_keys) > left:
                    stopped = "budget"
                    break
            for index, cell in enumerate(run.cells):
                if cell.key() not in open_keys:
                    continue
                started = time.monotonic()
                sides = order(pair, index)
                for side in sides:
                    on_start(cell, side, pair)
                    row = measure_side(run, side, cell, pair, sides[0], run_id, Path(scratch))
                    append_row(run.results, row)
                    rows.append(row)
                    on_row(row)
                took[cell.key()] = time.monotonic() - started
    return PairedRows(rows, stopped)


def this_tree() -> Path:
    """The checkout whose code is running: the new side unless ``--new-tree`` names another."""
    return ROOT
