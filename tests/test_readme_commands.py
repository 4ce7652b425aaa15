"""Every command in README.md runs here, end to end, the way a user types it.

A README command is a line of a fenced ``bash`` block (continuation lines joined) that runs
``bench.py`` or ``alexnet-bench``, whatever interpreter comes before it. Each runs as a subprocess
from a temporary folder, with the user's flags plus only what makes it small (``SMALL_RUN``,
``SMALL_TRAIN``, ...). What no test machine has is faked where the suite already fakes it: the CPU
stands in for GPUs (``--simulate-devices`` for two of them), two local processes for two nodes,
SLURM's variables for ``srun``, a tiny archive in the official format for CIFAR-100. Each test
asserts the exit code, that no traceback was printed, and the rows written.

``SCENARIOS`` lists every README command with how it runs; ``EXEMPT`` the ones that cannot, each
with its reason. A command added to the README, or renamed there, that is in neither fails
``test_every_readme_command_is_run_or_exempt``.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import re
import shlex
import socket
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from benchmarks import frameworks
from implementations.variants import BUILDABLE_VARIANTS
from tests.test_datasets import cifar_batch, official_members, write_archive

pytestmark = pytest.mark.e2e  # starts the suite's commands or workers end to end: out of the quick loop

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
ENTRY_POINTS = ("bench.py", "alexnet-bench")

# Options that only make a command small; appended after the user's own.
SMALL_RUN = ("-b", "2", "--steps", "1", "--warmup", "1", "--repeats", "1", "--time-budget", "0")
SMALL_TRAIN = ("-b", "8", "--max-train-images", "16")
SMALL_PARITY = ("-b", "4", "--parity-steps", "3")
COMMAND_TIMEOUT_S = 600
SIDE_BY_SIDE = 2  # scenarios running at once
TINY_CIFAR_IMAGES = 32  # one step of the default batch per epoch


# --- collecting the README's commands ----------------------------------------------------------------------------


def bash_blocks(text: str) -> list[str]:
    return re.findall(r"^```bash\n(.*?)^```", text, re.S | re.M)


def logical_lines(block: str) -> list[str]:
    """The block's lines with backslash continuations joined."""
    joined, current = [], ""
    for line in block.splitlines():
        if line.rstrip().endswith("\\"):
            current += line.rstrip()[:-1] + " "
            continue
        joined.append(current + line)
        current = ""
    return [line for line in joined if line.strip()]


def command_key(segment: str) -> str | None:
    """``bench.py ARGS`` (or ``alexnet-bench ARGS``) of one shell command, without its interpreter; None if it runs
    neither."""
    words = shlex.split(segment)
    for index, word in enumerate(words):
        name = Path(word).name
        if name in ENTRY_POINTS:
            return " ".join([name, *words[index + 1 :]])
    return None


def readme_commands(text: str) -> list[str]:
    """Every command of the README's bash blocks that runs the suite, comments and prompts left out."""
    found = []
    for block in bash_blocks(text):
        for line in logical_lines(block):
            code = line.split(" #", 1)[0] if not line.lstrip().startswith("#") else ""
            for segment in re.split(r"&&|;|\|\|", code):
                key = command_key(segment)
                if key:
                    found.append(key)
    return found


# --- how each command runs -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    """One README command as the test runs it: the user's words, what makes it small, and a host faked."""

    readme: str  # the command as the README writes it, from bench.py on
    small: tuple[str, ...] = ()
    replace: tuple[tuple[str, str], ...] = ()  # (user's words, the faked host's) where the test machine lacks one
    env: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Scenario:
    """README commands that belong together, run in one folder: in order, or side by side (two nodes)."""

    steps: tuple[Step, ...]
    rows: str | tuple[str, ...] = ()  # results files every row of which must be ``ok``, relative to the folder
    together: bool = False
    setup: Callable[[Path], None] = lambda folder: None
    check: Callable[[Path, list[dict], str], None] = lambda folder, rows, said: None
    rows_each: dict[str, int] = field(default_factory=dict)  # file -> rows per framework, where the count is known
    needs: tuple[str, ...] = ()  # frameworks it names with -f or cannot do without; else the installed defaults
    exit_codes: tuple[int, ...] = (0,)  # what counts as the command working


def write_ports(folder: Path) -> None:
    """A PyTorch port in a file and a package with a factory, as a user of check-model has them."""
    (folder / "my_port.py").write_text(
        "from implementations.torch_alexnet import build_torch_model\n"
        "from implementations.variants import get_variant\n\n\n"
        "def build():\n"
        "    return build_torch_model(get_variant('imagenet-split'), 'grouped')\n"
    )
    package = folder / "mypackage"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "models.py").write_text(
        "from implementations.torch_alexnet import build_torch_model\n"
        "from implementations.variants import get_variant\n\n\n"
        "def alexnet():\n"
        "    return build_torch_model(get_variant('cifar100-single'), 'grouped')\n"
    )


def write_tiny_cifar100(folder: Path) -> None:
    """The official archive's format, one batch of images, where ``--data-dir ~/data`` points (HOME is the
    folder)."""
    members = {
        **official_members(),
        "cifar-100-python/train": pickle.dumps(cifar_batch(TINY_CIFAR_IMAGES, 0), protocol=2),
        "cifar-100-python/test": pickle.dumps(cifar_batch(TINY_CIFAR_IMAGES // 2, 1), protocol=2),
    }
    archive = write_archive(folder / "home" / "data" / "cifar-100-python.tar.gz", members)
    (folder / "cifar100.md5").write_text(hashlib.md5(archive.read_bytes()).hexdigest())


# --- what each scenario checks beyond exit codes and rows -----------------------------------------------------------
# A check takes the scenario's folder, its rows and what its commands printed (stdout and stderr, all commands).


def plausible_throughput(rows: list[dict]) -> None:
    """Every throughput row measured something, and no faster than the device's measured matmul ceiling allows."""
    for row in rows:
        metrics = row["metrics"]
        assert 0 < metrics["images_per_s"] < 1e6, metrics["images_per_s"]
        assert metrics["achieved_flops_per_s"] == pytest.approx(metrics["flops_per_image"] * metrics["images_per_s"])
        assert 0 < metrics["fraction_of_ceiling"] < 1.5, metrics  # the tests' ceiling is a smaller matmul


def report_names_every_framework(folder: Path, rows: list[dict]) -> None:
    """The report exists in both forms, and its findings and tables name every framework that ran."""
    report = folder / "results" / "report"
    markdown = (report / "report.md").read_text(encoding="utf-8")
    assert "<html" in (report / "report.html").read_text(encoding="utf-8").lower()
    for name in {frameworks.label(row["cell"]["framework"]) for row in rows}:
        assert name in markdown, (name, markdown[:3000])
    for row in rows:
        assert row["cell"]["variant"] in markdown


def quick_run(folder: Path, rows: list[dict], said: str) -> None:
    plausible_throughput(rows)
    report_names_every_framework(folder, rows)
    assert "Findings" in said


def throughput(folder: Path, rows: list[dict], said: str) -> None:
    plausible_throughput(rows)


def simulated_devices_only(folder: Path, rows: list[dict], said: str) -> None:
    """Every cell on two logical devices: DDP under torchrun on gloo or MirroredStrategy (data), or one tower per
    device (model); the worker saw both."""
    assert rows and all(row["simulated"] and row["devices"] == 2 for row in rows)
    for row in rows:
        assert len(row["environment"]["framework"]["devices"]) == 2, row["environment"]["framework"]
    plausible_throughput(rows)


def backend_cells(folder: Path, rows: list[dict], said: str) -> None:
    """Each Keras backend ran on the backend it names."""
    for row in rows:
        environment = row["environment"]["framework"]
        if row["cell"]["framework"].startswith("keras-"):
            assert environment["backend"] == row["cell"]["framework"].removeprefix("keras-"), environment
    plausible_throughput(rows)


def two_nodes_one_row_each(folder: Path, rows: list[dict], said: str) -> None:
    """Only the first node writes, one row per cell, holding both nodes' topology; the other node says it took
    part."""
    for row in rows:
        assert row["devices"] == 2 and row["parallel"] == "data" and row["cell"]["nodes"] == 2, row
        assert row["metrics"]["distributed"] == {"nodes": 2, "processes_per_node": 1, "world_size": 2}
        assert row["metrics"]["images_per_s"] > 0
    assert len({row["key"] for row in rows}) == len(rows)
    assert "took part" in said


def shards_merged(folder: Path, rows: list[dict], said: str) -> None:
    """Each shard wrote its own cells, none twice, and the report of both files holds every cell."""
    shards = [{row["key"] for row in read_rows(folder / "results" / name)} for name in ("a.jsonl", "b.jsonl")]
    assert all(shards) and not shards[0] & shards[1]
    report_names_every_framework(folder, rows)


def parity_passed(folder: Path, rows: list[dict], said: str) -> None:
    assert said.count("verdict: PASS") >= 6 and "FAIL" not in said  # every variant, each split formulation
    assert "All parity checks passed." in said


def printed_pass(folder: Path, rows: list[dict], said: str) -> None:
    """check-model and train --check-parity: a PASS verdict and no FAIL."""
    assert "PASS" in said and "FAIL" not in said, said[-3000:]


# Digits have 10 classes: chance is 10% top-1. 64 steps of 32 images (cifar100-split, the paper's rule) reached
# 66% (PyTorch) and 79% (Keras) top-1 on a 2-core AMD EPYC; 40% is four times chance and well below both.
LEARNED_TOP1 = 0.40


def digits_learned(folder: Path, rows: list[dict], said: str) -> None:
    assert rows and all(row["cell"]["mode"] == "accuracy" for row in rows)
    for row in rows:
        assert row["metrics"]["top1"] > LEARNED_TOP1, (row["cell"]["framework"], row["metrics"]["top1"])


def accuracy_rows(folder: Path, rows: list[dict], said: str) -> None:
    assert rows and all(row["cell"]["mode"] == "accuracy" for row in rows)
    assert all(0 <= row["metrics"]["top1"] <= row["metrics"]["top5"] <= 1 for row in rows)


def variants_listed(folder: Path, rows: list[dict], said: str) -> None:
    for name in BUILDABLE_VARIANTS:
        assert name in said, said
    assert "60,965,224" in said and "62,378,344" in said  # the paper's split and single-tower parameter counts


def compared(folder: Path, rows: list[dict], said: str) -> None:
    """compare judged the cell both runs measured, by name."""
    assert "cifar100-single" in said and "infer" in said, said[-3000:]
    assert re.search(r"no change|inconclusive|regression|improved|within", said), said[-3000:]


def overhead_measured(folder: Path, rows: list[dict], said: str) -> None:
    """A verdict per framework and mode, from real rounds (on a shared machine "over 2%" may be noise: exit 1)."""
    verdicts = re.findall(r"│ (within 2%|over 2%|inconclusive) +│", said)
    assert len(verdicts) == 2 * len(INSTALLED), said[-3000:]  # training and inference per framework


AB_SMALL = ("-f", "torch", "-v", "cifar100-split", "-m", "infer", "-b", "2", "--steps", "1", "--warmup", "1")
# Two pairs of an A/A decide nothing, and the sequential rule flags an A/A cell up to 5% of the time: a threshold no
# real difference of one build reaches keeps the exit code about the command, not about chance.
AB_SMALL += ("--time-budget", "0", "--min-pairs", "2", "--max-pairs", "2", "--threshold", "60%")


def both_sides_paired(folder: Path, rows: list[dict], said: str) -> None:
    assert sorted((row["paired"]["pair"], row["paired"]["side"]) for row in rows) == [
        (0, "base"), (0, "new"), (1, "base"), (1, "new")
    ]  # fmt: skip
    assert len({row["key"] for row in rows}) == len(rows)
    assert all(row["metrics"]["images_per_s"] > 0 for row in rows)
    (cell,) = json.loads((folder / "results" / "ab.json").read_text())["cells"]
    assert cell["verdict"] != "regression" and -0.6 < cell["change"] < 0.6, cell


def free_port() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return str(probe.getsockname()[1])


NO_GPU = (("--gpus 1", "--gpus 0"),)  # the CPU in place of one GPU
TWO_SIMULATED = (("--gpus 2", "--gpus 0 --simulate-devices 2"),)  # two logical CPU devices for two GPUs
TWO_NODES_HERE = (("--gpus 8", "--gpus 0"), ("10.0.0.1:29500", "127.0.0.1:{port}"))
SLURM = (("SLURM_NNODES", "2"), ("SLURM_JOB_NODELIST", "localhost"), ("SLURM_JOB_ID", "7"))
# One variant and mode where the command's path is the same for every cell: the full matrices are planned in process
# by tests/test_matrix_and_results.py, and the cells of the other variants and modes run in run-quick.
ONE_CELL = ("-v", "cifar100-single", "-m", "infer")

SCENARIOS: dict[str, Scenario] = {
    "parity": Scenario((Step("bench.py parity"),), needs=("torch", "keras"), check=parity_passed),
    # The sweep with its report: both CIFAR-100 variants, every installed framework; inference (training cells run in
    # run-default-matrix and run-simulated-quick).
    "run-quick": Scenario(
        (Step("bench.py run --quick", (*SMALL_RUN, "-m", "infer")),),
        rows="results/results.jsonl",
        check=quick_run,
        rows_each={"results/results.jsonl": 2},
    ),
    # The default matrix's own cells are the ImageNet shapes: one of them, training.
    "run-default-matrix": Scenario(
        (Step("bench.py run", (*SMALL_RUN, "--no-report", "-v", "imagenet-split", "-m", "train")),),
        rows="results/results.jsonl",
        check=throughput,
        rows_each={"results/results.jsonl": 1},
    ),
    # Two GPUs: the split variant model-parallel, one tower per (logical) device; run-simulated-quick runs the
    # single tower data-parallel.
    "run-two-gpus": Scenario(
        (
            Step(
                "bench.py run --gpus 2",
                (*SMALL_RUN, "--no-report", "-v", "cifar100-split", "-m", "infer"),
                TWO_SIMULATED,
            ),
        ),
        rows="results/results.jsonl",
        check=simulated_devices_only,
        rows_each={"results/results.jsonl": 1},
    ),
    "run-simulated-quick": Scenario(
        (Step("bench.py run --simulate-devices 2 --quick", (*SMALL_RUN, "--no-report", "-m", "train")),),
        rows="results/results.jsonl",
        check=simulated_devices_only,
        rows_each={"results/results.jsonl": 2},
    ),
    "gpu-torch-environment": Scenario(
        (
            Step(
                "bench.py run --gpus 1 -f torch -f keras-torch -f keras-jax --quick",
                (*SMALL_RUN, "--no-report", *ONE_CELL),
                NO_GPU,
            ),
        ),
        rows="results/results.jsonl",
        check=backend_cells,
        rows_each={"results/results.jsonl": 1},
        needs=("torch", "keras-torch", "keras-jax"),
    ),
    "gpu-tensorflow-environment": Scenario(
        (
            Step(
                "bench.py run --gpus 1 -f keras --quick --results results/results.jsonl",
                (*SMALL_RUN, "--no-report", *ONE_CELL),
                NO_GPU,
            ),
        ),
        rows="results/results.jsonl",
        check=throughput,
        rows_each={"results/results.jsonl": 1},
        needs=("keras",),
    ),
    "two-nodes": Scenario(
        tuple(
            Step(
                f"bench.py run -f torch -v imagenet-single --gpus 8 --nodes 2 --node-rank {rank} "
                "--rendezvous 10.0.0.1:29500",
                (*SMALL_RUN, "--no-report", "--join-timeout", "120", "-m", "infer"),
                TWO_NODES_HERE,
            )
            for rank in (0, 1)
        ),
        rows="results/results.jsonl",
        together=True,
        check=two_nodes_one_row_each,
        rows_each={"results/results.jsonl": 1},
        needs=("torch",),
    ),
    "slurm": Scenario(
        tuple(
            Step(
                "bench.py run -v imagenet-single --results results/2nodes.jsonl",
                (*SMALL_RUN, "--no-report", "--join-timeout", "120", "--rendezvous", "127.0.0.1:{port}", "-m", "infer"),
                env=(*SLURM, ("SLURM_PROCID", str(rank))),
            )
            for rank in (0, 1)
        ),
        rows="results/2nodes.jsonl",
        together=True,
        check=two_nodes_one_row_each,
        rows_each={"results/2nodes.jsonl": 1},
    ),
    "shards-and-report": Scenario(
        (
            Step(
                "bench.py run --shard 1/2 --results results/a.jsonl",
                (*SMALL_RUN, "--no-report", "-v", "cifar100-single"),
            ),
            Step(
                "bench.py run --shard 2/2 --results results/b.jsonl",
                (*SMALL_RUN, "--no-report", "-v", "cifar100-single"),
            ),
            Step("bench.py report results/a.jsonl results/b.jsonl"),
        ),
        rows=("results/a.jsonl", "results/b.jsonl"),
        check=shards_merged,
    ),
    # An A/A of this checkout: the README's ../base (a worktree of main) is this checkout, one small cell, two pairs.
    "ab-paired": Scenario(
        (
            Step(
                "bench.py ab --base-tree ../base",
                (*AB_SMALL, "--summary", "results/ab.json"),
                (("../base", str(ROOT)),),
            ),
        ),
        rows="results/ab.jsonl",
        check=both_sides_paired,
        rows_each={"results/ab.jsonl": 4},
        needs=("torch",),
    ),
    "check-model-file": Scenario(
        (Step("bench.py check-model my_port.py:build --against imagenet-split"),),
        setup=write_ports,
        check=printed_pass,
        needs=("torch",),
    ),
    "check-model-module": Scenario(
        (Step("bench.py check-model mypackage.models:alexnet --against cifar100-single"),),
        setup=write_ports,
        check=printed_pass,
        needs=("torch",),
    ),
    # The learning check: 64 steps of the split network, enough to be far above chance (LEARNED_TOP1).
    "train-digits": Scenario(
        (
            Step(
                "bench.py train --dataset digits --epochs 4",
                ("-v", "cifar100-split", "-b", "32", "--max-train-images", "512"),
            ),
        ),
        rows="results/results.jsonl",
        check=digits_learned,
        rows_each={"results/results.jsonl": 1},
    ),
    "train-cifar100": Scenario(
        (Step("bench.py train --dataset cifar100 --data-dir ~/data --epochs 30 -v cifar100-split", ("--epochs", "2")),),
        rows="results/results.jsonl",
        setup=write_tiny_cifar100,
        check=accuracy_rows,
        rows_each={"results/results.jsonl": 1},
    ),
    "train-check-repro": Scenario(
        (Step("bench.py train --dataset digits --epochs 1 --check-repro", (*SMALL_TRAIN, "-v", "cifar100-single")),),
        rows="results/results.jsonl",
        check=accuracy_rows,
    ),
    # tests/test_train_parity.py checks cifar100-split (and that each mutation fails); here the single tower passes.
    "train-check-parity": Scenario(
        (Step("bench.py train --check-parity", (*SMALL_PARITY, "-v", "cifar100-single")),),
        check=printed_pass,
        needs=("torch", "keras"),
    ),
    "variants": Scenario((Step("bench.py variants"),), check=variants_listed),
    # Two runs of one build, then compare: one PyTorch cell, one process each; "regression" by chance is exit code 1.
    "run-twice-and-compare": Scenario(
        (
            Step(
                "bench.py run --quick --results results/base.jsonl",
                (*SMALL_RUN, "--no-report", *ONE_CELL, "-f", "torch"),
            ),
            Step(
                "bench.py run --quick --results results/new.jsonl",
                (*SMALL_RUN, "--no-report", *ONE_CELL, "-f", "torch"),
            ),
            Step("bench.py compare results/base.jsonl results/new.jsonl"),
        ),
        rows=("results/base.jsonl", "results/new.jsonl"),
        check=compared,
        exit_codes=(0, 1),
        needs=("torch",),
    ),
    "selfcheck": Scenario(
        (Step("bench.py selfcheck", ("-b", "4", "--steps", "2", "--time-budget", "0")),),
        check=overhead_measured,
        exit_codes=(0, 1),
    ),
}

# README commands that no test can run, each with its reason.
EXEMPT: dict[str, str] = {}


def test_every_readme_command_is_run_or_exempt():
    in_readme = readme_commands(README.read_text(encoding="utf-8"))
    covered = [step.readme for scenario in SCENARIOS.values() for step in scenario.steps]
    unknown = [command for command in in_readme if command not in covered and command not in EXEMPT]
    assert not unknown, f"README commands no test runs (add them to SCENARIOS or EXEMPT with a reason): {unknown}"
    gone = [command for command in [*covered, *EXEMPT] if command not in in_readme]
    assert not gone, f"commands tested here that the README no longer has (renamed?): {gone}"


def test_every_subcommand_the_readme_names_is_run_by_a_scenario():
    """Commands written in tables and prose escape the bash-block guard above; each subcommand they name must still
    be run end to end by some scenario."""
    named = set(re.findall(r"(?:bench\.py|alexnet-bench) ([a-z][a-z-]+)", README.read_text(encoding="utf-8")))
    run = {step.readme.split()[1] for scenario in SCENARIOS.values() for step in scenario.steps}
    assert named and not named - run, f"README names subcommands no scenario runs: {sorted(named - run)}"


def test_the_collector_reads_interpreters_continuations_chains_and_comments():
    text = (
        "```bash\n"
        "python3 -m venv .venv && .venv/bin/pip install x && .venv/bin/python bench.py parity\n"
        "# a comment: bench.py variants\n"
        "srun .venv/bin/python bench.py run -v a \\\n"
        "  --results r.jsonl   # trailing words\n"
        "alexnet-bench variants\n"
        "```\n"
        "```python\nbench.py ignored\n```\n"
    )
    assert readme_commands(text) == ["bench.py parity", "bench.py run -v a --results r.jsonl", "alexnet-bench variants"]


# --- running them --------------------------------------------------------------------------------------------------


def argv(step: Step, folder: Path, port: str) -> list[str]:
    """The command line the test runs: this interpreter and checkout's bench.py, the user's words (host faked), then
    what makes it small. ``~`` is the folder's HOME, as a shell would expand it."""
    words = step.readme
    for users, faked in step.replace:
        words = words.replace(users, faked.format(port=port))
    args = [word.replace("~", str(folder / "home"), 1) if word.startswith("~") else word for word in shlex.split(words)]
    small = [word.format(port=port) for word in step.small]
    entry = args.pop(0)
    assert entry in ENTRY_POINTS
    return [sys.executable, str(ROOT / "bench.py"), *args, *small]


def environment(step: Step, folder: Path) -> dict[str, str]:
    """The user's environment with HOME in the folder (caches, ``~``), the checkout importable by ports, and the
    tiny archive's checksum named where the scenario made one."""
    env = {**os.environ, "HOME": str(folder / "home"), "PYTHONPATH": str(ROOT), **dict(step.env)}
    env.pop("ALEXNET_BENCH_CIFAR100_MD5", None)
    if (folder / "cifar100.md5").is_file():
        env["ALEXNET_BENCH_CIFAR100_MD5"] = (folder / "cifar100.md5").read_text()
    return env


def read_rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


# The default frameworks this environment has (a torch-only environment runs the commands that need no Keras).
INSTALLED, LEFT_OUT = frameworks.installed(frameworks.default_names())


Ended = tuple[list[str], int, str, str]  # a command, its exit code, stdout, stderr


def run_scenario(scenario: Scenario, folder: Path) -> tuple[Path, list[Ended]]:
    """Run the scenario's commands in ``folder``: in order (stopping at the first failure), or side by side."""
    (folder / "home").mkdir()
    scenario.setup(folder)
    port = free_port()
    commands = [(argv(step, folder, port), environment(step, folder)) for step in scenario.steps]
    if not scenario.together:
        ended = []
        for command, env in commands:
            done = subprocess.run(
                command, cwd=folder, env=env, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S
            )
            ended.append((command, done.returncode, done.stdout, done.stderr))
            if done.returncode != 0:
                break
        return folder, ended
    started = [
        subprocess.Popen(command, cwd=folder, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for command, env in commands
    ]
    ended = []
    for process in started:
        try:
            out, err = process.communicate(timeout=COMMAND_TIMEOUT_S)
        finally:
            process.kill()
        ended.append((process.args, process.returncode, out, err))
    return folder, ended


def missing_frameworks(scenario: Scenario) -> list[str]:
    return [line for framework in scenario.needs if (line := frameworks.get(framework).missing())]


@pytest.fixture(scope="module")
def scenario_runs(request, tmp_path_factory) -> dict[str, Future]:
    """Every selected scenario, started at once two at a time: most of a command's time is one process importing a
    framework (one core), so two side by side use both cores. Each test then waits for its own."""
    selected = [
        item.callspec.params["name"]
        for item in request.session.items
        if getattr(item, "originalname", "") == "test_readme_command_runs"
    ]
    pool = ThreadPoolExecutor(max_workers=SIDE_BY_SIDE, thread_name_prefix="readme")
    runs = {
        name: pool.submit(run_scenario, SCENARIOS[name], tmp_path_factory.mktemp(name))
        for name in selected
        if not missing_frameworks(SCENARIOS[name])
    }
    yield runs
    pool.shutdown(wait=True, cancel_futures=True)


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_readme_command_runs(name, scenario_runs):
    scenario = SCENARIOS[name]
    if absent := missing_frameworks(scenario):
        pytest.skip(f"this environment lacks a framework the command names: {'; '.join(absent)}")
    tmp_path, ended = scenario_runs[name].result()
    for command, returncode, out, err in ended:
        said = f"{shlex.join(command[1:])}\n--- stdout\n{out[-3000:]}\n--- stderr\n{err[-3000:]}"
        assert returncode in scenario.exit_codes, said
        assert "Traceback" not in out + err, said
    rows = []
    for name_ in (scenario.rows,) if isinstance(scenario.rows, str) else scenario.rows:
        written = read_rows(tmp_path / name_)
        bad = [
            (row["cell"].get("framework"), row["status"], row.get("error")) for row in written if row["status"] != "ok"
        ]
        assert written and not bad, bad
        if name_ in scenario.rows_each:
            each = len(scenario.needs) if scenario.needs else len(INSTALLED)
            assert len(written) == scenario.rows_each[name_] * each
        rows += written
    if rows and not scenario.needs:  # the installed defaults ran (a shard may hold one framework's cells)
        assert {row["cell"]["framework"] for row in rows} == set(INSTALLED)
        said = "".join(err for *_, err in ended)
        assert all(line in " ".join(said.split()) for line in LEFT_OUT), said
    scenario.check(tmp_path, rows, "".join(out + err for *_, out, err in ended))
