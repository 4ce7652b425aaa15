"""``bench.py ab`` step by step: two workers, one per tree, loaded side by side, taking turns.

Alternating whole processes (``benchmarks.paired.run_pairs``) costs each side its process, imports, model build,
warm-up and ceiling for every pair. Here a pair of a cell is one step server per tree (``python -m
benchmarks.step_server``, run from that tree with that tree's code on its path), started fresh, prepared and
warmed up, then given ``turns`` turns each: ``step K`` to one while the other waits on its pipe, then the same to
the other, in ABBA order (``paired.order``), a second or so apart, so a slow spell of the machine falls on both.

- **Why a pair is a pair of servers, not a pair of turns.** Measured on a shared 2-core VM with nothing else running:
  two servers of one build differ by a few percent, up to 10-20%, for tens of seconds at a time (with threads pinned,
  with one thread each, with address randomisation off, after rebuilding the model inside the same processes: the
  offset stayed). Neighbouring turns cannot cancel that, and 35 turns of one pair of servers counted as 35 pairs once
  called a comparison of a build with itself a 5% regression at p = 1.5e-5. Most of that offset was oneDNN's primitive
  cache: each process kept the kernels its first calls got, for its whole life. With the cache off
  (``paired.PRIMITIVE_CACHES``, the default) the spread of PyTorch inference pairs fell from 6-14% to 4-5% (Keras's is
  about 2% with it off); what is left is still per process. So every pair starts new servers, the pair's ratio is
  the median over its turns (``reports.paired.pair_log_ratio``), and the test runs over pairs of servers: the
  offset between processes is measured as the noise it is.
- **Turns.** ``K`` steps a turn, the same for both sides, chosen from the warm-up so that a turn takes about
  ``turn_s`` (0.25 s by default); ``turns`` (4) a side per pair, or more, so that each side times at least
  ``PAIR_STEPS`` (6) steps (a training turn holds one step). With the cache off, most of a pair's spread is what
  happens from turn to turn, not between its servers: taking the first 1, 2, 3, 4 or 6 of the training pairs' turns
  (ten comparisons, eight cells), their spread fell from 8.4% to 5.5, 4.3, 3.7 and 3.3% (Keras) and from 6.9% to
  6.4, 4.6, 3.8 and 3.4% (PyTorch), which leaves about 2% between PyTorch's servers and next to nothing between
  Keras's. Bursts of another tenant last a second or so and slow a turn by 10-50%, and the median of two turns is
  their mean: one bad turn moved its pair by half. So turns are short and at least four: four turns of 0.25 s cost
  what two of 0.5 s did, and the median leaves a bad turn out. In A/A runs of the four inference cells (12 pairs
  each, one run of each setting, one after another, through a noisy hour) the pairs spread by 5.2% (RMS over cells)
  with four turns of 0.25 s, 6.5% with two of 0.5 s, 5.4% with four of 0.5 s (which took 37% longer). Over the
  ten comparisons of the README's table, the median over four or more turns left pairs less spread than the mean
  of each side's fastest half of steps (3.2% against 4.1% for inference, 3.6% against 4.0% for training); with two
  turns it had been the other way round. A pair still costs a start-up and a warm-up, and a t test over few pairs at
  the sequential rule's strict level needs a far larger change than over many, so pairs are not made longer than
  that (Kalibera and Jones, "Rigorous Benchmarking in Reasonable Time", 2013: repeat most at the level whose
  variance dominates).
- **Shared servers.** The cells of one framework (and one environment) share each round's pair of servers,
  which switch from cell to cell (``cell JSON``, protocol 2), so a round pays one start-up per framework. A base
  whose server cannot switch gets fresh servers for every cell.
- **Forked servers.** Even so, a round of the eight quick cells took about 43 s on two cores, of which about 21 s
  were timed turns and about 12 s imports: PyTorch, and ``torch._dynamo``, which the first optimizer imports
  (about 5 s), and TensorFlow (about 6 s), in every pair's fresh processes. So each side of a group has a fork
  server (``step_server --fork-server``, protocol 3) that imports its framework once (``Framework.preload_modules``)
  and forks that side's server for every round: still a new process per pair, whose heap and mappings start at
  a random page offset (``step_server.shift_layout``) as a fresh process's do. Measured, two rounds of the eight
  cells: 30.4 s a round instead of 43 s, the same step times. The fork servers wait on their pipes while the
  children take turns. A fork server that fails to start leaves its group to fresh servers; a child that fails
  breaks its fork server, which is killed and started anew for the next round. ``--servers fresh`` starts every
  pair's servers from nothing; a base from before protocol 3, or a framework that names nothing to preload (JAX
  is not safe to fork once imported), gets fresh servers too.
- **Pairs and looks.** A cell gets ``min_pairs`` pairs, then more while it is undecided (a look, in
  ``reports.paired``'s sequential rule, every ``look_every`` pairs), ``max_pairs`` is not reached and the next round
  fits in the budget (asked before every round). The frameworks' groups take rounds in turn under one deadline, so
  what a decided cell leaves goes to every cell still open, whichever its framework.
- **Nothing else runs while a turn is timed.** A pair's servers are told to quit as it ends and exit while the
  next pair starts (startup is not timed); they are gone, or killed, before that pair's first turn (a forked one
  before the next fork: until then it holds its fork server's pipes).
- **Rows.** One row per side and pair (``paired``: side, pair, order, ``mode: "interleaved-steps"``,
  ``turn_steps``, ``turns`` and ``servers``: forked or fresh), with all the pair's step times in turn order.
  Memory peaks, energy and the matmul ceiling are left out: with two models loaded they would not be those of a
  cell alone.
- **Which cells.** Cells of one process on one device. A multi-device or multi-node cell, a launcher
  (``--xeon-launch``), or a tree without the step server is paired as whole processes instead.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.cell import CellConfig
from benchmarks.lifeline import die_with_parent
from benchmarks.paired import (
    SIDES,
    PairedRows,
    PairedRun,
    Tree,
    noise_settings,
    order,
    paired_fields,
    run_pairs,
)
from benchmarks.process import kill_group
from benchmarks.results import ResultRow, append_row, lock_results, new_run_id, paired_key

TURN_S = 0.25
TURNS = 4
PAIR_STEPS = 6  # timed steps a side gets in a pair at least: more turns when a turn holds one or two steps
LOOK_EVERY = 3
# A round may take this much longer than the group's last one (a slow spell; measured on two cores: up to 15%
# longer with the same cells). Without it, one of ten comparisons of --budget 360 ended at 365 s.
ROUND_MARGIN = 1.25
MODE = "interleaved-steps"
# benchmarks.step_server's words, spelled here: the base tree's copy of that module is never imported
READY, STEPS, FAILED, ENDED = "READY ", "STEPS ", "FAILED ", "ENDED "
SERVER_STARTS = ("forked", "fresh")  # how each pair's servers start: ``PairedRun.servers``


class ServerFailed(RuntimeError):
    """A step server that failed, ended or stopped answering; ``status`` is the row's status."""

    def __init__(self, status: str, error: str) -> None:
        super().__init__(error)
        self.status = status


def interleavable(cell: CellConfig) -> bool:
    """A cell whose worker is one process on one device, started without a launcher."""
    return cell.parallel == "none" and cell.nodes == 1 and not cell.simulate_devices and not cell.xeon_launch


def server_environment(run: PairedRun, tree: Tree, cell: CellConfig) -> dict[str, str]:
    """The worker's environment (``runner.worker_environment``) with ``tree`` first on the path, and the noise
    settings (wait policy, oneDNN's primitive cache)."""
    from benchmarks.runner import worker_environment

    env = worker_environment(cell)
    env.update(noise_settings(run.wait_policy, run.primitive_cache))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(tree.path), run.environ.get("PYTHONPATH")]))
    return env


class StepServer:
    """One side's step server: started from its tree, spoken to line by line, killed with its group."""

    def __init__(self, command: list[str], env: dict[str, str], cwd: Path) -> None:
        parent = os.getpid()
        self.stderr = tempfile.TemporaryFile(mode="w+")  # a file, not a pipe: chatter never blocks the server
        self.process = subprocess.Popen(
            command, cwd=cwd, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.stderr,
            text=True, bufsize=1, start_new_session=True, preexec_fn=lambda: die_with_parent(parent),
        )  # fmt: skip
        self.lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def _tail(self) -> str:
        self.stderr.seek(0)
        return " | ".join(line.strip() for line in self.stderr.read().strip().splitlines()[-3:]) or "no output"

    def answer(self, timeout_s: float, ended: bool = False) -> dict:
        """The next protocol line's payload (READY or STEPS; ENDED when ``ended``); ServerFailed on FAILED, an exit,
        a forked child's end when not expected, or the timeout."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                line = self.lines.get(timeout=max(deadline - time.monotonic(), 0.0))
            except queue.Empty:
                raise ServerFailed("timeout", f"no answer within {timeout_s:g} s; step server killed") from None
            if line is None:
                raise self._exited(self.process.wait())
            for word in (READY, STEPS, FAILED, ENDED):
                if (at := line.find(word)) >= 0:  # chatter without a newline may precede the word
                    payload = json.loads(line[at + len(word) :])
                    if word == FAILED:
                        raise ServerFailed(payload.get("status", "failed"), payload.get("error", ""))
                    if word == ENDED and not ended:  # a forked child that ended without a word
                        raise self._exited(payload.get("code"))
                    if (word == ENDED) == ended:
                        return payload

    def _exited(self, code: int | None) -> ServerFailed:
        return ServerFailed("crashed", f"step server exited with code {code}: {self._tail()}")

    def send(self, command: str) -> None:
        try:
            self.process.stdin.write(command + "\n")
            self.process.stdin.flush()
        except (BrokenPipeError, OSError):
            raise ServerFailed("crashed", f"step server gone: {self._tail()}") from None

    def step(self, count: int, timeout_s: float) -> list[float]:
        self.send(f"step {count}")
        return self.answer(timeout_s)["times"]

    def retire(self) -> None:
        """Ask it to quit and return at once: it exits while the next pair of servers starts (``reap``)."""
        try:
            self.send("quit")
        except ServerFailed:
            pass  # already gone: reap kills the group and collects it either way

    def reap(self, grace_s: float = 10.0) -> None:
        """Wait up to ``grace_s`` for it to exit, then kill its group: nothing of it is left running."""
        try:
            self.process.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            pass  # it hangs on its way out: killed below
        kill_group(self.process)
        self.stderr.close()


def reap_all(servers: list[StepServer]) -> None:
    """Every retired server gone (``StepServer.reap``); the list emptied."""
    while servers:
        servers.pop().reap()


def start_server(run: PairedRun, tree: Tree, cell: CellConfig) -> StepServer:
    command = [sys.executable, "-m", "benchmarks.step_server", "--config", cell.to_json()]
    return StepServer(command, server_environment(run, tree, cell), tree.path)


def start_fork_server(run: PairedRun, tree: Tree, cell: CellConfig) -> StepServer:
    """A tree's fork server for ``cell``'s group: its framework imported once, in the group's environment."""
    command = [sys.executable, "-m", "benchmarks.step_server", "--fork-server", cell.framework]
    return StepServer(command, server_environment(run, tree, cell), tree.path)


def forks(run: PairedRun, cell: CellConfig) -> bool:
    """Whether ``cell``'s group gets forked servers: asked for, both trees can, and its framework says what to
    import once (a framework whose runtime is not safe to fork after import says nothing)."""
    from benchmarks import frameworks

    trees = run.base.fork_server and run.new.fork_server
    can_fork = hasattr(os, "fork")  # not on Windows
    return run.servers == "forked" and trees and can_fork and bool(frameworks.get(cell.framework).preload_modules)


@dataclass
class ForkServer:
    """One side's fork server: it lives as long as its group's rounds, and forks that side's server for each."""

    server: StepServer
    broken: bool = False  # a child failed or stopped answering: this one is killed and not used again

    def fork(self, cell: CellConfig) -> ForkedServer:
        child = ForkedServer(self)
        child.send("fork " + cell.to_json())
        return child

    def quit(self) -> None:
        """Asked to exit (not waited for: fork servers asked together exit side by side)."""
        if not self.broken:
            self.server.retire()

    def reap(self) -> None:
        """Gone: waited for, or killed at once when broken."""
        self.server.reap(grace_s=0 if self.broken else 10.0)


@dataclass
class ForkedServer:
    """A step server forked by a ``ForkServer``: spoken to on its pipes, as a fresh one is; reaped when its fork
    server says it ended. Any failure breaks the fork server, so a half-dead child never serves again."""

    home: ForkServer
    failed: bool = False

    def _guard(self, speak: Callable[[], object]) -> object:
        try:
            return speak()
        except ServerFailed:
            self.failed = self.home.broken = True
            raise

    def answer(self, timeout_s: float) -> dict:
        return self._guard(lambda: self.home.server.answer(timeout_s))

    def send(self, command: str) -> None:
        self._guard(lambda: self.home.server.send(command))

    def step(self, count: int, timeout_s: float) -> list[float]:
        return self._guard(lambda: self.home.server.step(count, timeout_s))

    def retire(self) -> None:
        if not self.failed:
            try:
                self.home.server.send("quit")
            except ServerFailed:
                self.home.broken = True

    def reap(self, grace_s: float = 10.0) -> None:
        """Wait up to ``grace_s`` for the fork server to say the child ended; else both are killed."""
        if not self.home.broken:
            try:
                self.home.server.answer(grace_s, ended=True)
                return
            except ServerFailed:
                self.home.broken = True
        kill_group(self.home.server.process)  # the child is in its fork server's process group


def turn_steps(ready: dict[str, dict], turn_s: float) -> int:
    """Steps per turn: about ``turn_s`` at the slower side's warm-up pace, at least 1."""
    paces = []
    for said in ready.values():
        times = said.get("warmup_step_s") or [said.get("first_step_s") or turn_s]
        paces.append(sorted(times)[len(times) // 2])
    return max(1, min(1000, round(turn_s / max(max(paces), 1e-6))))


@dataclass
class Interleaving:
    """How a cell's pairs go: ``turns`` pairs of turns of about ``turn_s`` seconds each per pair of servers (more
    when that would time fewer than ``pair_steps`` steps a side), and ``look_every`` pairs of servers between
    looks."""

    turn_s: float = TURN_S
    turns: int = TURNS
    look_every: int = LOOK_EVERY
    pair_steps: int = PAIR_STEPS

    def turns_for(self, turn_steps: int) -> int:
        """Turns a side takes in a pair: ``turns``, or enough turns of ``turn_steps`` to time ``pair_steps``."""
        return max(self.turns, -(-self.pair_steps // turn_steps))


def side_row(
    run: PairedRun, cell: CellConfig, side: str, pair: int, first: str, run_id: str, started: float,
    result: dict, machine: dict, extra: dict,
) -> ResultRow:  # fmt: skip
    tree = run.base if side == "base" else run.new
    row = ResultRow.from_result(cell, result, machine, run_id, started)
    data = row.to_dict()
    data["cell"] = {**data["cell"], "repeat": pair}
    paired = {**paired_fields(run, tree, cell, side, pair, first, MODE), **extra}
    data.update(key=paired_key(cell.key(), side, pair), paired=paired)
    return ResultRow.from_dict(data)


def _metrics(times: list[float], ready: dict) -> dict:
    from benchmarks.measure.timing import summarize

    return {
        **summarize(times, ready["images_per_step"]),
        "step_times_s": times,
        "build_s": ready.get("build_s"),
        "first_step_s": ready.get("first_step_s"),
        "warmup_step_s": ready.get("warmup_step_s"),
        "memory_note": "left out: two models were loaded side by side (bench.py ab, interleaved steps)",
        "environment": ready.get("environment"),
    }


def _outcome(times: list[float], ready: dict | None, failed: ServerFailed | None) -> dict:
    """A side's result for its pair: its turns' steps, or why it failed."""
    if failed is not None:
        return {"status": failed.status, "error": str(failed)}
    return {"status": "ok", "metrics": _metrics(times, ready)}


def shares_servers(run: PairedRun, one: CellConfig, other: CellConfig) -> bool:
    """Whether one pair of servers can measure both cells in turn: the same framework and the same environment."""
    return one.framework == other.framework and all(
        server_environment(run, tree, one) == server_environment(run, tree, other) for tree in (run.base, run.new)
    )


def group_cells(run: PairedRun, cells: list[CellConfig]) -> list[list[CellConfig]]:
    """The cells in groups that can share servers, in plan order."""
    groups: list[list[CellConfig]] = []
    for cell in cells:
        home = next((group for group in groups if shares_servers(run, group[0], cell)), None)
        if home is None:
            groups.append([cell])
        else:
            home.append(cell)
    return groups


@dataclass
class ServerPair:
    """One step server per side, the cell they hold and what each said when it was ready."""

    servers: dict[str, StepServer | ForkedServer]
    ready: dict[str, dict]
    failures: dict[str, ServerFailed]
    forked: bool = False

    @classmethod
    def start(
        cls, run: PairedRun, cell: CellConfig, sides: tuple[str, str], retiring: list[StepServer],
        fork_servers: dict[str, ForkServer] | None = None,
    ) -> ServerPair:  # fmt: skip
        """Fresh servers, or forked by ``fork_servers`` once their last children are gone (``retiring``)."""
        if fork_servers is None:
            servers = {side: start_server(run, run.base if side == "base" else run.new, cell) for side in sides}
            pair = cls(servers, {}, {})
        else:
            reap_all(retiring)  # a child still on a fork server's pipes would read the next fork line
            pair = cls({}, {}, {}, forked=True)
            for side in sides:
                try:
                    pair.servers[side] = fork_servers[side].fork(cell)
                except ServerFailed as failed:
                    pair.failures[side] = failed
        pair.await_ready(run.timeout_s)
        return pair

    def await_ready(self, timeout_s: float) -> None:
        for side, server in self.servers.items():
            if side in self.failures:
                continue
            try:
                self.ready[side] = server.answer(timeout_s)
            except ServerFailed as failed:
                self.failures[side] = failed

    def can_switch(self) -> bool:
        """Both servers up and speaking protocol 2 or later (the ``cell`` command)."""
        return not self.failures and all(said.get("protocol", 1) >= 2 for said in self.ready.values())

    def switch(self, cell: CellConfig, timeout_s: float) -> None:
        """Both servers prepare ``cell`` in place of the one they hold."""
        self.ready = {}
        for side, server in self.servers.items():
            try:
                server.send("cell " + cell.to_json())
            except ServerFailed as failed:
                self.failures[side] = failed
        self.await_ready(timeout_s)

    def retire(self, retiring: list[StepServer]) -> None:
        for server in self.servers.values():
            server.retire()
        retiring += self.servers.values()


def retire(servers: ServerPair | None, retiring: list[StepServer]) -> None:
    """Ask a round's servers, if any, to quit; ``take_turns`` reaps them before the next timed turn."""
    if servers is not None:
        servers.retire(retiring)


def take_turns(
    run: PairedRun, cell: CellConfig, index: int, pair: int, how: Interleaving, servers: ServerPair,
    retiring: list[StepServer], record: Callable[[CellConfig, str, int, str, dict, dict], None],
) -> bool:  # fmt: skip
    """``how.turns`` turns a side, in ABBA order, of ``cell`` on ``servers``; both sides' rows recorded.

    Servers retired before (``retiring``) are gone before the first turn: nothing but these two runs while a turn
    is timed. Each side's row holds every step of its turns (``turn_steps`` a turn, in order), so the statistics
    can pair turn with turn. False when a side failed: its row says how, the other's what it had done.
    """
    reap_all(retiring)
    ready, failures = servers.ready, servers.failures
    times: dict[str, list[float]] = {side: [] for side in SIDES}
    # A side that failed to start leaves the other one turn, to show that it works.
    count = turn_steps(ready, how.turn_s) if ready else 1
    for turn in range(1 if failures else how.turns_for(count)):
        for side in order(pair + turn, index):
            if side in failures:
                continue
            try:
                times[side] += servers.servers[side].step(count, run.timeout_s)
            except ServerFailed as failed:
                failures[side] = failed
                break
        if failures:
            break
    first = order(pair, index)[0]
    for side in SIDES:
        extra = {"turn_steps": count, "turns": len(times[side]) // count, "servers": SERVER_STARTS[not servers.forked]}
        record(cell, side, pair, first, _outcome(times[side], ready.get(side), failures.get(side)), extra)
    return not failures


@dataclass
class Rounds:
    """One group's rounds of pairs (cells that share servers): the next pair, the cells stopped and why, and how
    long its last round took, which says whether the next one fits in the budget."""

    group: list[CellConfig]
    pair: int = 0
    took: float = 0.0
    stopped: dict[str, str] = field(default_factory=dict)
    fork_servers: dict[str, ForkServer] | None = None
    forking: bool = True  # until a fork server fails to start: then fresh servers for the rest

    def stop(self, why: str, keep: AbstractSet[str] = frozenset()) -> None:
        """Every cell not stopped yet and not in ``keep`` stops, ``why`` saying why."""
        self.stopped |= {
            cell.key(): why for cell in self.group if cell.key() not in self.stopped and cell.key() not in keep
        }

    def next_cells(
        self, run: PairedRun, how: Interleaving, still_open: Callable[[list[ResultRow]], set[str]],
        rows: list[ResultRow], deadline: float,
    ) -> list[CellConfig]:  # fmt: skip
        """The cells that take the next round, or none when every cell has stopped.

        Looks come after ``min_pairs`` rounds and every ``look_every`` rounds after that; at a look a cell stops when
        it is decided, and at ``max_pairs`` every cell stops. Past ``min_pairs``, every round is also asked whether
        it fits: all stop when it, taking ``ROUND_MARGIN`` times as long as this group's last, would end after
        ``deadline``. Checking at looks alone left up to three rounds of the budget unspent.
        """
        if self.pair >= run.max_pairs:
            open_keys = still_open(rows)
            self.stop("decided", keep=open_keys)
            self.stop("max pairs")
        elif self.pair >= run.min_pairs:
            if (self.pair - run.min_pairs) % how.look_every == 0:
                self.stop("decided", keep=still_open(rows))
            if time.monotonic() + self.took * ROUND_MARGIN > deadline:
                self.stop("budget")
        return [cell for cell in self.group if cell.key() not in self.stopped]

    def play(
        self, run: PairedRun, cells: list[CellConfig], how: Interleaving, retiring: list[StepServer],
        record: Callable[[CellConfig, str, int, str, dict, dict], None],
    ) -> None:  # fmt: skip
        """One round: a fresh server per side, and the next pair of every cell in ``cells`` on them in turn
        (``cell`` switches them; a tree whose server cannot switch gets fresh servers per cell). A cell that fails
        stops at once, with its rows saying how."""
        began, servers, pair = time.monotonic(), None, self.pair
        try:
            for cell in cells:
                index = run.cells.index(cell)
                if servers is not None and servers.can_switch():
                    servers.switch(cell, run.timeout_s)
                else:
                    retire(servers, retiring)
                    forking = self.ready_fork_servers(run, cell, retiring)
                    servers = ServerPair.start(run, cell, order(pair, index), retiring, forking)
                if not take_turns(run, cell, index, pair, how, servers, retiring, record):
                    self.stopped[cell.key()] = "failed"
                    retire(servers, retiring)
                    servers = None
        finally:
            retire(servers, retiring)
        self.took, self.pair = time.monotonic() - began, pair + 1

    def ready_fork_servers(
        self, run: PairedRun, cell: CellConfig, retiring: list[StepServer]
    ) -> dict[str, ForkServer] | None:
        """This group's fork servers, started on first use and again after one broke; None for fresh servers."""
        if not (self.forking and forks(run, cell)):
            return None
        if self.fork_servers is not None and not any(home.broken for home in self.fork_servers.values()):
            return self.fork_servers
        reap_all(retiring)
        self.close()
        started = {side: start_fork_server(run, run.base if side == "base" else run.new, cell) for side in SIDES}
        self.fork_servers = {side: ForkServer(server) for side, server in started.items()}
        try:
            for server in started.values():
                server.answer(run.timeout_s)
        except ServerFailed:
            self.forking = False  # fresh servers will say, cell by cell, what fails
            for home in self.fork_servers.values():
                home.broken = True
            self.close()
            return None
        return self.fork_servers

    def close(self) -> None:
        """Its fork servers, if any, told to quit and reaped (killed when broken)."""
        close_fork_servers([self])


def close_fork_servers(schedules: list[Rounds]) -> None:
    """Every fork server of ``schedules`` asked to quit, then reaped: they exit side by side (a fork server that
    imported TensorFlow takes a second or more to exit)."""
    homes = [home for rounds in schedules for home in (rounds.fork_servers or {}).values()]
    for home in homes:
        home.quit()
    for home in homes:
        home.reap()
    for rounds in schedules:
        rounds.fork_servers = None


def interleave_groups(
    run: PairedRun, groups: list[list[CellConfig]], deadline: float,
    still_open: Callable[[list[ResultRow]], set[str]], how: Interleaving, run_id: str, machine: dict,
    rows: list[ResultRow], on_row: Callable[[ResultRow], None] = lambda row: None,
) -> list[str]:  # fmt: skip
    """Rounds of pairs for every group of cells that share servers, the groups taking rounds in turn until
    ``deadline``; rows appended as each cell's pair ends; why each group's cells stopped, group after group.

    One deadline for all groups, not a share each: time that a decided cell or a quicker framework leaves goes to
    the cells still undecided, whichever framework they belong to, and a slow spell of the machine falls on every
    group's rounds alike instead of on one framework's share.
    """
    started = time.time()

    def record(cell: CellConfig, side: str, pair: int, first: str, result: dict, extra: dict) -> None:
        row = side_row(run, cell, side, pair, first, run_id, started, result, machine, extra)
        append_row(run.results, row)
        rows.append(row)
        on_row(row)

    schedules = [Rounds(group) for group in groups]
    retiring: list[StepServer] = []
    try:
        playing = True
        while playing:
            playing = False
            for rounds in schedules:
                cells = rounds.next_cells(run, how, still_open, rows, deadline)
                if cells:
                    rounds.play(run, cells, how, retiring, record)
                    playing = True
        return [rounds.stopped[cell.key()] for rounds in schedules for cell in rounds.group]
    finally:
        reap_all(retiring)
        close_fork_servers(schedules)


def run_ab(
    run: PairedRun,
    still_open: Callable[[list[ResultRow]], set[str]],
    how: Interleaving | None,
    on_start: Callable[[CellConfig, str, int], None] = lambda cell, side, pair: None,
    on_row: Callable[[ResultRow], None] = lambda row: None,
) -> PairedRows:
    """Interleave what can be interleaved (``how`` given), then pair the rest as whole processes (``run_pairs``).

    The interleaved cells get the budget's share of their number of cells; the cells paired as processes count as
    one more, and get what is left."""
    if how is None:
        return run_pairs(run, still_open, on_start, on_row)
    from benchmarks.measure.environment import machine_environment

    groups = group_cells(run, [cell for cell in run.cells if interleavable(cell)])
    rest = [cell for cell in run.cells if not interleavable(cell)]
    began, run_id, rows = time.monotonic(), new_run_id(), []
    machine = {**machine_environment(), "cuda_visible_devices": None}
    reasons = []
    with lock_results(run.results):
        interleaved = sum(len(group) for group in groups)
        if interleaved:
            share = run.budget_s * interleaved / (interleaved + (1 if rest else 0))
            for cell in (cell for group in groups for cell in group):
                on_start(cell, "both", 0)
            reasons = interleave_groups(run, groups, began + share, still_open, how, run_id, machine, rows, on_row)
    stopped = next((why for why in ("budget", "max pairs") if why in reasons), "decided")
    if rest:
        left = max(run.budget_s - (time.monotonic() - began), 0.0)
        others = run_pairs(PairedRun(**{**run.__dict__, "cells": rest, "budget_s": left}), still_open, on_start, on_row)
        rows += others.rows
        stopped = others.stopped if stopped == "decided" else stopped
    return PairedRows(rows, stopped)


def mode_line(base: Tree, new: Tree) -> str | None:
    """None when both trees speak the step protocol; else the one line that says why processes are paired."""
    for side, tree in (("base", base), ("new", new)):
        if not tree.step_server:
            return (
                f"the {side} tree at {tree.path} has no step server (benchmarks/step_server.py): pairing whole "
                "processes instead of interleaved steps"
            )
    return None
