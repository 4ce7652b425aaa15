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
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from benchmarks.cell import CellConfig
from tests.results_factory import ok_row

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
