"""Faults a sweep must survive: its parent killed (SIGKILL, SIGTERM) mid-cell, and a second run on its file.

A worker that outlives its parent keeps computing, re-parented to PID 1, and skews every later
measurement on that machine; a second run on the same results file measures the same cells at the
same time and writes them twice. Each test starts a real ``bench.py run`` whose only cell never
finishes on its own, and is bounded by timeouts.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from benchmarks.cell import CellConfig
from tests.results_factory import ok_row

pytestmark = pytest.mark.e2e  # starts the suite's commands or workers end to end: out of the quick loop

ROOT = Path(__file__).resolve().parent.parent
ENDLESS = ("run", "-f", "torch", "-m", "train", "-b", "2", "--steps", "1000000", "--time-budget", "0", "--no-report")
ENDLESS += ("--repeats", "1", "--warmup", "1")


def process_table() -> dict[int, tuple[int, str, bytes]]:
    """Every live process: pid -> (parent pid, state, command line)."""
    table = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            table[int(stat.parent.name)] = (int(fields[1]), fields[0], (stat.parent / "cmdline").read_bytes())
        except (OSError, ValueError, IndexError):
            continue
    return table


def descendants(root: int) -> list[int]:
    """Live (not zombie) descendants of ``root``."""
    table = process_table()
    found, frontier = [], [root]
    while frontier:
        parent = frontier.pop()
        children = [pid for pid, (ppid, state, _) in table.items() if ppid == parent and state != "Z"]
        found += children
        frontier += children
    return found


def alive(pids: list[int]) -> list[int]:
    table = process_table()
    return [pid for pid in pids if pid in table and table[pid][1] != "Z"]


def wait_for_workers(parent: int, count: int, timeout: float = 120) -> list[int]:
    """The parent's descendants once ``count`` of them run the benchmark worker (torchrun's ranks included)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        table = process_table()
        pids = descendants(parent)
        if sum(b"benchmarks.worker" in table.get(pid, (0, "", b""))[2] for pid in pids) >= count:
            return pids
        time.sleep(0.2)
    raise AssertionError(f"the sweep did not start {count} worker process(es) within {timeout:g} s")


@contextmanager
def sweep(results: Path, *extra: str) -> Iterator[tuple[subprocess.Popen, list[int]]]:
    """A ``bench.py run`` whose cell runs until it is stopped, and a list for the pids of its workers;
    whatever is left of either is killed at the end."""
    process = subprocess.Popen(
        [sys.executable, "bench.py", *ENDLESS, "--results", str(results), *extra],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    recorded: list[int] = []
    try:
        yield process, recorded
    finally:
        recorded += descendants(process.pid)
        if process.poll() is None:
            process.kill()
        process.communicate(timeout=30)
        for pid in alive(recorded):  # a failed assertion must not leave a worker computing
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def gone_within(pids: list[int], seconds: float) -> list[int]:
    """``pids`` still alive after ``seconds`` (polled)."""
    deadline = time.monotonic() + seconds
    while alive(pids) and time.monotonic() < deadline:
        time.sleep(0.2)
    return alive(pids)


def finished_rows(path: Path) -> str:
    """A results file holding one finished row of an earlier run."""
    text = json.dumps(ok_row(CellConfig("torch", "cifar100-single", "infer", 2), [0.1, 0.1])) + "\n"
    path.write_text(text)
    return text


@pytest.mark.parametrize(
    "variant,devices,workers",
    [("cifar100-single", [], 1), ("cifar100-single", ["--simulate-devices", "2"], 2)],
    ids=["one worker", "torchrun data-parallel"],
)
def test_sigkill_of_the_parent_takes_every_worker_with_it(tmp_path, variant, devices, workers):
    path = tmp_path / "r.jsonl"
    before = finished_rows(path)
    with sweep(path, "-v", variant, *devices) as (process, pids):
        pids += wait_for_workers(process.pid, workers)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
        assert gone_within(pids, 10) == [], "workers outlived their parent"
    assert path.read_text() == before


def test_sigterm_stops_the_sweep_like_ctrl_c(tmp_path):
    path = tmp_path / "r.jsonl"
    before = finished_rows(path)
    with sweep(path, "-v", "cifar100-single") as (process, pids):
        pids += wait_for_workers(process.pid, 1)
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=30)
        assert process.returncode == 130
        assert "interrupted; every finished cell is saved" in " ".join(stderr.split())
        assert gone_within(pids, 10) == []
    assert path.read_text() == before  # the finished row kept, the cut-off cell not written


def test_a_second_run_on_a_file_in_use_is_refused_and_leaves_it_alone(tmp_path):
    path = tmp_path / "r.jsonl"
    before = finished_rows(path)
    with sweep(path, "-v", "cifar100-single") as (first, pids):
        pids += wait_for_workers(first.pid, 1)
        second = subprocess.run(
            [sys.executable, "bench.py", *ENDLESS, "-v", "cifar100-single", "--results", str(path)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
        lines = [line for line in second.stderr.splitlines() if line.strip()]
        assert second.returncode == 2, second.stderr
        assert len(lines) == 1 and "is in use by another bench.py run" in lines[0]
        assert "Traceback" not in second.stdout + second.stderr
        assert "start  cell" not in second.stdout
        assert path.read_text() == before


# ---- Faults of what surrounds a command: a full disk under its rows, its output, Ctrl-C, a port that runs away ----

FAKE = {"ALEXNET_BENCH_FRAMEWORKS": "tests.fake_framework"}  # tests/fake_framework.py: a NumPy "framework", fast
TWO_CELLS = ("run", "-f", "numpy-fake", "-v", "cifar100-single", "-m", "infer", "-b", "2", "-b", "4", "--repeats", "1")
TWO_CELLS += ("--steps", "2", "--warmup", "1", "--time-budget", "0", "--no-report")

# The command line with the results file's os.write replaced: the first row is written; the second is written
# half-way, and then the disk is full (ENOSPC), as a small filesystem fills mid-sweep.
FULL_DISK_AT_SECOND_ROW = """
import errno, os, sys
from benchmarks import results

class FillsAtSecondRow:
    calls = 0
    def __getattr__(self, name):
        return getattr(os, name)
    def write(self, descriptor, data):
        FillsAtSecondRow.calls += 1
        if FillsAtSecondRow.calls == 1:
            return os.write(descriptor, data)
        if FillsAtSecondRow.calls == 2:
            return os.write(descriptor, data[: len(data) // 2])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

results.os = FillsAtSecondRow()
from cli.app import main
main(sys.argv[1:])
"""


def bench_lines(done: subprocess.CompletedProcess) -> list[str]:
    assert "Traceback" not in done.stdout + done.stderr, done.stderr
    return [line for line in done.stderr.splitlines() if line.strip()]


def test_a_disk_that_fills_mid_sweep_stops_it_in_one_line_and_resume_completes_it(tmp_path):
    path = tmp_path / "r.jsonl"
    env = {**os.environ, **FAKE}
    command = [*TWO_CELLS, "--results", str(path)]
    full = subprocess.run(
        [sys.executable, "-c", FULL_DISK_AT_SECOND_ROW, *command], cwd=ROOT, env=env, capture_output=True,
        text=True, timeout=300,
    )  # fmt: skip
    (line,) = bench_lines(full)
    assert full.returncode == 2 and "cannot write a row to" in line and "No space left on device" in line
    assert "--resume runs the cells still missing" in line
    first = path.read_text()
    assert first.endswith("\n") and len([json.loads(text) for text in first.splitlines()]) == 1  # valid, no fragment
    resumed = subprocess.run(
        [sys.executable, "bench.py", *command, "--resume"], cwd=ROOT, env=env, capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr
    rows = [json.loads(text) for text in path.read_text().splitlines()]
    assert path.read_text().startswith(first) and len(rows) == 2
    assert sorted(row["cell"]["batch_size"] for row in rows) == [2, 4] and {row["status"] for row in rows} == {"ok"}


def test_stdout_on_a_full_device_is_one_line_and_a_sweep_still_writes_its_rows(tmp_path):
    path = tmp_path / "r.jsonl"
    with open("/dev/full", "w") as full:
        variants = subprocess.run(
            [sys.executable, "bench.py", "variants"], cwd=ROOT, stdout=full, stderr=subprocess.PIPE, text=True,
            timeout=120,
        )  # fmt: skip
        sweep = subprocess.run(
            [sys.executable, "bench.py", *TWO_CELLS, "--results", str(path)], cwd=ROOT, env={**os.environ, **FAKE},
            stdout=full, stderr=subprocess.PIPE, text=True, timeout=300,
        )  # fmt: skip
    for done in (variants, sweep):
        assert "Traceback" not in done.stderr, done.stderr
        (line,) = [line for line in done.stderr.splitlines() if line.strip()]
        assert done.returncode == 2 and "standard output could not be written (No space left on device)" in line
    rows = [json.loads(text) for text in path.read_text().splitlines()]  # measured all the same: the file is truth
    assert sorted(row["cell"]["batch_size"] for row in rows) == [2, 4]


@pytest.mark.parametrize("slowdown,code", [(1.0, 0), (1.5, 1)], ids=["no change", "regression"])
def test_a_reader_that_closes_the_pipe_leaves_compare_its_own_exit_code(tmp_path, slowdown, code):
    """``compare | head -1``: the pipe closes early; the verdict still decides the exit code, and nothing is said."""
    from tests import results_factory as factory

    small = {"variants": ("imagenet-single",), "modes": ("train", "infer"), "repeats": 3, "spread": 0.01}
    base = factory.write_rows(tmp_path / "base.jsonl", factory.sweep(seed=1, **small))
    new = factory.write_rows(tmp_path / "new.jsonl", factory.sweep(seed=2, slowdown=slowdown, **small))
    read_end, write_end = os.pipe()
    os.close(read_end)  # a reader that is already gone: the first write meets a broken pipe
    try:
        done = subprocess.run(
            [sys.executable, "bench.py", "compare", str(base), str(new)], cwd=ROOT, stdout=write_end,
            stderr=subprocess.PIPE, text=True, timeout=120,
        )  # fmt: skip
    finally:
        os.close(write_end)
    assert done.returncode == code, done.stderr
    assert done.stderr.strip() == ""


# The command line with one step made to wait until it is interrupted; it says so on stderr when it waits.
WAIT_IN = """
import importlib, sys, time
module, name = sys.argv[1].rsplit(":", 1)

def wait(*args, **kwargs):
    sys.stderr.write("waiting\\n"); sys.stderr.flush()
    time.sleep(600)

setattr(importlib.import_module(module), name, wait)
from cli.app import main
main(sys.argv[2:])
"""


def interrupt_when_waiting(command: list[str], cwd: Path = ROOT) -> subprocess.CompletedProcess:
    process = subprocess.Popen(command, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stderr.readline().strip() == "waiting"
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


@pytest.mark.parametrize(
    "step,args",
    [
        ("cli.common:write_and_announce_report", ["report", "{ok}", "--out", "{tmp}/out"]),
        ("reports.compare:compare", ["compare", "{ok}", "{ok}"]),
    ],
    ids=["report", "compare"],
)
def test_ctrl_c_during_report_or_compare_says_interrupted_and_exits_130(tmp_path, step, args):
    ok = tmp_path / "r.jsonl"
    finished_rows(ok)
    argv = [arg.format(ok=ok, tmp=tmp_path) for arg in args]
    done = interrupt_when_waiting([sys.executable, "-c", WAIT_IN, step, *argv])
    assert done.returncode == 130, done.stderr
    assert "Traceback" not in done.stderr and done.stderr.strip() == "error: interrupted"


PORTS = """
import os, sys, time

def never_returns():
    sys.stderr.write("waiting\\n"); sys.stderr.flush()
    time.sleep(600)

def exits():
    sys.exit(0)

def logs_like_tensorflow():
    os.write(2, b"2025-01-01 00:00:00.000000: I tensorflow/core/util/port.cc:153] oneDNN custom operations are on.\\n")
    from implementations.torch_alexnet import build_torch_model
    from implementations.variants import get_variant
    return build_torch_model(get_variant("cifar100-single"), "grouped")
"""


def check_model(tmp_path: Path, factory: str, *extra: str) -> subprocess.CompletedProcess:
    (tmp_path / "ports.py").write_text(PORTS)
    command = [sys.executable, str(ROOT / "bench.py"), "check-model", f"ports.py:{factory}", "--against"]
    return subprocess.run(
        [*command, "cifar100-single", *extra], cwd=tmp_path, capture_output=True, text=True, timeout=300
    )


def test_check_model_stops_a_factory_that_never_returns_at_its_timeout(tmp_path):
    started = time.monotonic()
    done = check_model(tmp_path, "never_returns", "--timeout", "2")
    (line,) = bench_lines(done)
    assert done.returncode == 2 and "no verdict on ports.py:never_returns within 2 s (--timeout)" in line
    assert time.monotonic() - started < 60


def test_check_model_takes_a_factory_that_exits_for_an_error_not_a_pass(tmp_path):
    done = check_model(tmp_path, "exits")
    (line,) = bench_lines(done)
    assert done.returncode == 2 and "ended without a verdict" in line and "sys.exit" in line
    assert "PASS" not in done.stdout


def test_check_model_passes_a_port_without_its_framework_logs_on_stderr(tmp_path):
    done = check_model(tmp_path, "logs_like_tensorflow")
    assert done.returncode == 0, done.stderr
    assert done.stderr == "" and "verdict: PASS" in done.stdout


def test_ctrl_c_during_check_model_says_interrupted_and_leaves_no_child(tmp_path):
    (tmp_path / "ports.py").write_text(PORTS)
    command = [sys.executable, str(ROOT / "bench.py"), "check-model", "ports.py:never_returns", "--against"]

    def started(process: subprocess.Popen) -> list[int]:
        pids = wait_for_child_with(process.pid, b"check_model_worker")
        time.sleep(3)  # the child has started the factory (its stderr is its own: the parent cannot read "waiting")
        return pids

    done, pids = interrupt_once([*command, "cifar100-single"], tmp_path, dict(os.environ), started)
    assert done.returncode == 130, done.stderr
    assert done.stderr.strip() == "error: interrupted"
    assert gone_within(pids, 10) == []


def interrupt_once(
    command: list[str], cwd: Path, env: dict[str, str], started: Callable[[subprocess.Popen], list[int]]
) -> tuple[subprocess.CompletedProcess, list[int]]:
    """Start ``command``; once ``started`` has seen its children (their pids), send SIGINT; what it did, the pids."""
    process = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        pids = started(process)
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr), pids


def wait_for_child_with(parent: int, marker: bytes, timeout: float = 60) -> list[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        table = process_table()
        pids = [pid for pid, (ppid, _, command) in table.items() if ppid == parent and marker in command]
        if pids:
            return pids
        time.sleep(0.1)
    raise AssertionError(f"no child process of {parent} ran {marker!r} within {timeout:g} s")


def test_ctrl_c_during_ab_saves_finished_pairs_and_leaves_no_fork_server_or_forked_child(tmp_path):
    """``bench.py ab`` against itself with the fake framework, interrupted while forked step servers take turns."""
    env = {**os.environ, "ALEXNET_BENCH_FRAMEWORKS": "tests.fake_framework"}
    command = [sys.executable, str(ROOT / "bench.py"), "ab", "--base-tree", str(ROOT), "-f", "numpy-fake"]
    command += ["-v", "cifar100-single", "-m", "infer", "-b", "4", "--min-pairs", "30", "--max-pairs", "30"]
    command += ["--results", str(tmp_path / "ab.jsonl")]
    results = tmp_path / "ab.jsonl"

    def started(process: subprocess.Popen) -> list[int]:
        homes = wait_for_child_with(process.pid, b"--fork-server")
        children = [pid for home in homes for pid in wait_for_child_with(home, b"--fork-server")]
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and (not results.is_file() or results.read_text().count("\n") < 2):
            time.sleep(0.1)  # until a pair has finished: its two rows are what must survive
        return homes + children

    done, pids = interrupt_once(command, tmp_path, env, started)
    assert done.returncode == 130, done.stderr
    assert "Traceback" not in done.stderr and "interrupted; every finished side is saved in" in done.stderr
    assert results.read_text().count("\n") >= 2
    assert gone_within(pids, 10) == []
