"""``bench.py ab`` step by step: two workers, one per tree, loaded side by side, taking turns.

Alternating whole processes (``benchmarks.paired.run_pairs``) costs each side its imports, model build, warm-up
and ceiling on every pair, and puts the difference between two processes into every pair. Here each cell starts
one step server per tree (``python -m benchmarks.step_server``, run from that tree with that tree's code on its
path), waits until both are prepared and warmed up, then gives them turns: ``step K`` to one while the other
waits on its pipe, then the same to the other. A pair is two neighbouring turns, one of each side, a second or
so apart, so even a slow spell of a few seconds falls on both; the order alternates ABBA over pairs
(``paired.order``), so neither side is always first.

- **Turn length.** ``K`` steps, the same for both sides, chosen from the warm-up step times so that a turn takes
  about ``turn_s`` (0.5 s by default), so a pair spans little of the machine's moods. Measured (README): turns of
  2 s (five steps) gave pairs no quieter than turns of one step, only four times fewer in the same time.
- **Pairs and looks.** A cell gets ``min_pairs`` pairs, then ``look_every`` more at a time while it is undecided
  (``reports.paired``'s sequential rule, which counts those looks), ``max_pairs`` is not reached and its share of
  the budget lasts (what is left, divided by the cells not yet measured).
- **Rows.** One row per side and pair, as ``run_pairs`` writes them (``paired``: side, pair, order, and
  ``mode: "interleaved-steps"`` with ``turn_steps``), with the turn's step times. Memory peaks, energy and the
  matmul ceiling are left out: with two models loaded they would not be those of a cell alone.
- **Why it is the default.** Measured A/A on a shared 2-core VM at load 6-10 (README, "Interleaved steps
  against whole processes"): for two small PyTorch cells a 150 s budget bought 15-40 interleaved pairs a cell and
  a detectable change of 7-15%, where whole processes (30-40 s each there) got 3 pairs in 387 s and could detect
  nothing below several hundred percent; a step made 10% heavier was flagged in both cells in 109 s.
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
from dataclasses import dataclass
from pathlib import Path

from benchmarks.cell import CellConfig
from benchmarks.lifeline import die_with_parent
from benchmarks.paired import (
    SIDES,
    WAIT_POLICIES,
    PairedRows,
    PairedRun,
    Tree,
    order,
    paired_fields,
    run_pairs,
)
from benchmarks.process import kill_group
from benchmarks.results import ResultRow, append_row, lock_results, new_run_id, paired_key

TURN_S = 0.5
LOOK_EVERY = 5
MODE = "interleaved-steps"
READY, STEPS, FAILED = "READY ", "STEPS ", "FAILED "  # benchmarks.step_server's words (the base's copy may differ)


class ServerFailed(RuntimeError):
    """A step server that failed, ended or stopped answering; ``status`` is the row's status."""

    def __init__(self, status: str, error: str) -> None:
        super().__init__(error)
        self.status = status


def interleavable(cell: CellConfig) -> bool:
    """A cell whose worker is one process on one device, started without a launcher."""
    return cell.parallel == "none" and cell.nodes == 1 and not cell.simulate_devices and not cell.xeon_launch


def server_environment(run: PairedRun, tree: Tree, cell: CellConfig) -> dict[str, str]:
    """The worker's environment (``runner.worker_environment``) with ``tree`` first on the path, and the wait policy."""
    from benchmarks.runner import worker_environment

    env = worker_environment(cell)
    env.update(WAIT_POLICIES[run.wait_policy])
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

    def answer(self, timeout_s: float) -> dict:
        """The next protocol line's payload (READY or STEPS); ServerFailed on FAILED, an exit or the timeout."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                line = self.lines.get(timeout=max(deadline - time.monotonic(), 0.0))
            except queue.Empty:
                raise ServerFailed("timeout", f"no answer within {timeout_s:g} s; step server killed") from None
            if line is None:
                code = self.process.wait()
                raise ServerFailed("crashed", f"step server exited with code {code}: {self._tail()}")
            for word in (READY, STEPS, FAILED):
                if (at := line.find(word)) >= 0:  # chatter without a newline may precede the word
                    payload = json.loads(line[at + len(word) :])
                    if word == FAILED:
                        raise ServerFailed(payload.get("status", "failed"), payload.get("error", ""))
                    return payload

    def send(self, command: str) -> None:
        try:
            self.process.stdin.write(command + "\n")
            self.process.stdin.flush()
        except (BrokenPipeError, OSError):
            raise ServerFailed("crashed", f"step server gone: {self._tail()}") from None

    def step(self, count: int, timeout_s: float) -> list[float]:
        self.send(f"step {count}")
        return self.answer(timeout_s)["times"]

    def close(self) -> None:
        """Ask it to quit; kill its group if it does not within a few seconds."""
        try:
            self.send("quit")
            self.process.wait(timeout=10)
        except (ServerFailed, subprocess.TimeoutExpired):
            pass  # it is gone or hangs: the group is killed below either way
        kill_group(self.process)
        self.stderr.close()


def start_server(run: PairedRun, tree: Tree, cell: CellConfig) -> StepServer:
    command = [sys.executable, "-m", "benchmarks.step_server", "--config", cell.to_json()]
    return StepServer(command, server_environment(run, tree, cell), tree.path)


def turn_steps(ready: dict[str, dict], turn_s: float) -> int:
    """Steps per turn: about ``turn_s`` at the slower side's warm-up pace, at least 1."""
    paces = []
    for said in ready.values():
        times = said.get("warmup_step_s") or [said.get("first_step_s") or turn_s]
        paces.append(sorted(times)[len(times) // 2])
    return max(1, min(1000, round(turn_s / max(max(paces), 1e-6))))


@dataclass
class Interleaving:
    """How a cell's turns go: ``turn_s`` seconds a turn, ``look_every`` pairs between looks."""

    turn_s: float = TURN_S
    look_every: int = LOOK_EVERY


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


def interleave_cell(
    run: PairedRun, cell: CellConfig, index: int, deadline: float, still_open: Callable[[list[ResultRow]], set[str]],
    how: Interleaving, run_id: str, machine: dict, rows: list[ResultRow],
    on_row: Callable[[ResultRow], None] = lambda row: None,
) -> str:  # fmt: skip
    """A cell's pairs of turns, appended to ``run.results`` (and ``rows``) as each turn ends; why it stopped."""
    servers: dict[str, StepServer] = {}
    started = time.time()

    def record(side: str, pair: int, first: str, result: dict, extra: dict) -> None:
        row = side_row(run, cell, side, pair, first, run_id, started, result, machine, extra)
        append_row(run.results, row)
        rows.append(row)
        on_row(row)

    try:
        servers = {side: start_server(run, run.base if side == "base" else run.new, cell) for side in SIDES}
        ready, failures = {}, {}
        for side in SIDES:
            try:
                ready[side] = servers[side].answer(run.timeout_s)
            except ServerFailed as failed:
                failures[side] = failed
        if failures:  # one pair that says which side failed (a side that works gets one turn, to show it does)
            for side in SIDES:
                if side in failures:
                    record(side, 0, "base", {"status": failures[side].status, "error": str(failures[side])}, {})
                    continue
                try:
                    times = servers[side].step(turn_steps({side: ready[side]}, how.turn_s), run.timeout_s)
                except ServerFailed as failed:
                    record(side, 0, "base", {"status": failed.status, "error": str(failed)}, {})
                else:
                    record(side, 0, "base", {"status": "ok", "metrics": _metrics(times, ready[side])}, {})
            return "failed"
        count = turn_steps(ready, how.turn_s)
        extra = {"turn_steps": count}
        for pair in range(run.max_pairs):
            if pair >= run.min_pairs and (pair - run.min_pairs) % how.look_every == 0:
                if cell.key() not in still_open(rows):
                    return "decided"
                if time.monotonic() >= deadline:
                    return "budget"
            sides = order(pair, index)
            for side in sides:
                try:
                    times = servers[side].step(count, run.timeout_s)
                except ServerFailed as failed:
                    record(side, pair, sides[0], {"status": failed.status, "error": str(failed)}, extra)
                    return "failed"
                record(side, pair, sides[0], {"status": "ok", "metrics": _metrics(times, ready[side])}, extra)
        return "decided" if cell.key() not in still_open(rows) else "max pairs"
    finally:
        for server in servers.values():
            server.close()


def run_ab(
    run: PairedRun,
    still_open: Callable[[list[ResultRow]], set[str]],
    how: Interleaving | None,
    on_start: Callable[[CellConfig, str, int], None] = lambda cell, side, pair: None,
    on_row: Callable[[ResultRow], None] = lambda row: None,
) -> PairedRows:
    """Interleave what can be interleaved (``how`` given), then pair the rest as whole processes (``run_pairs``)."""
    if how is None:
        return run_pairs(run, still_open, on_start, on_row)
    from benchmarks.measure.environment import machine_environment

    steps = [cell for cell in run.cells if interleavable(cell)]
    rest = [cell for cell in run.cells if not interleavable(cell)]
    began, run_id, rows = time.monotonic(), new_run_id(), []
    machine = {**machine_environment(), "cuda_visible_devices": None}
    reasons = []
    with lock_results(run.results):
        for number, cell in enumerate(steps):
            left = run.budget_s - (time.monotonic() - began)
            share = left / (len(steps) - number + (1 if rest else 0))
            on_start(cell, "both", 0)
            reasons.append(interleave_cell(run, cell, run.cells.index(cell), time.monotonic() + share, still_open,
                                           how, run_id, machine, rows, on_row))  # fmt: skip
    stopped = next((why for why in ("budget", "max pairs") if why in reasons), "decided")
    if rest:
        left = max(run.budget_s - (time.monotonic() - began), 0.0)
        others = run_pairs(PairedRun(**{**run.__dict__, "cells": rest, "budget_s": left}), still_open, on_start, on_row)
        rows += others.rows
        stopped = others.stopped if stopped == "decided" else stopped
    return PairedRows(rows, time.monotonic() - began, stopped)


def mode_line(base: Tree, new: Tree) -> str | None:
    """None when both trees speak the step protocol; else the one line that says why processes are paired."""
    for side, tree in (("base", base), ("new", new)):
        if not tree.step_server:
            return (
                f"the {side} tree at {tree.path} has no step server (benchmarks/step_server.py): pairing whole "
                "processes instead of interleaved steps"
            )
    return None
