"""``bench.py ab`` step by step: the step server's protocol, the ABBA order of turns, the rows they write, and the
fall-back to whole processes when a tree has no step server. Fast: the fake NumPy framework or fake servers."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import frameworks, interleave, paired, step_server
from benchmarks.cell import CellConfig
from benchmarks.interleave import Interleaving, ServerFailed, interleavable, mode_line, run_ab, turn_steps
from benchmarks.paired import PairedRows, PairedRun, Tree, speaks_steps
from benchmarks.results import read_results
from reports.compare import Outcome
from reports.paired import SequentialRule, judge_pairs, still_open
from tests.slower_tree import tree_files

pytestmark = pytest.mark.e2e  # starts the suite's commands or workers end to end: out of the quick loop

ROOT = Path(__file__).resolve().parent.parent
FAKE = CellConfig("numpy-fake", "cifar100-single", "infer", 4, steps=3, warmup=2)
ALL_FLAGS = frozenset(paired.NEEDED_FLAGS)


@pytest.fixture
def fake_framework(monkeypatch):
    monkeypatch.setenv(frameworks.PLUGINS_VARIABLE, "tests.fake_framework")  # for the step servers' processes
    from tests.fake_framework import NumpyDenseLayers  # registers on its first import only

    if "numpy-fake" not in frameworks.names():
        frameworks.register(NumpyDenseLayers())
    yield
    frameworks.unregister("numpy-fake")


def said(text: str) -> list[tuple[str, dict]]:
    words = (step_server.READY, step_server.STEPS, step_server.FAILED)
    return [(w.strip(), json.loads(line[len(w) :])) for line in text.splitlines() for w in words if line.startswith(w)]


# --- the step server ------------------------------------------------------------------------------------------------


def test_the_step_server_prepares_warms_up_then_steps_on_request(fake_framework, capsys):
    code = step_server.serve(FAKE.to_json(), iter(["step 3\n", "\n", "step 1\n", "quit\n", "step 9\n"]))
    assert code == 0
    lines = said(capsys.readouterr().out)
    assert [word for word, _ in lines] == ["READY", "STEPS", "STEPS"]  # nothing after quit
    ready = lines[0][1]
    assert ready["protocol"] == step_server.PROTOCOL and len(ready["warmup_step_s"]) == FAKE.warmup - 1
    assert ready["images_per_step"] == 4 and ready["environment"]["framework"] == "numpy-fake"
    assert [len(payload["times"]) for _, payload in lines[1:]] == [3, 1]
    assert all(t > 0 for _, payload in lines[1:] for t in payload["times"])


def test_the_step_server_says_failed_on_a_command_it_does_not_know(fake_framework, capsys):
    assert step_server.serve(FAKE.to_json(), iter(["jump 3\n"])) == 1
    (_, failed) = said(capsys.readouterr().out)[-1]
    assert failed["status"] == "failed" and "unknown command 'jump 3'" in failed["error"]


def test_the_step_server_switches_to_another_cell_on_request(fake_framework, capsys):
    other = CellConfig("numpy-fake", "cifar100-single", "train", 2, steps=3, warmup=1)
    commands = ["step 1\n", f"cell {other.to_json()}\n", "step 2\n", "quit\n"]
    assert step_server.serve(FAKE.to_json(), iter(commands)) == 0
    lines = said(capsys.readouterr().out)
    assert [word for word, _ in lines] == ["READY", "STEPS", "READY", "STEPS"]
    assert [payload["images_per_step"] for word, payload in lines if word == "READY"] == [4, 2]  # the new cell's batch
    assert lines[2][1]["protocol"] >= 2 and len(lines[3][1]["times"]) == 2


def test_a_cell_the_server_cannot_prepare_is_one_failed_line(capsys):
    assert step_server.serve(json.dumps({"framework": "torch"}), iter([])) == 1
    word, failed = said(capsys.readouterr().out)[-1]
    assert word == "FAILED" and failed["error"]


# --- the parent: turns, order, rows ---------------------------------------------------------------------------------


class FakeServer:
    """A step server in this process: each side a fixed step time; every turn logged in one shared list."""

    def __init__(self, side: str, log: list[str], step_s: float, fail_at: int | None = None, protocol: int = 1) -> None:
        self.side, self.log, self.step_s, self.fail_at, self.protocol = side, log, step_s, fail_at, protocol
        self.process = object()  # what kill_group would be given

    def answer(self, timeout_s):
        if self.fail_at == -1:
            raise ServerFailed("crashed", "step server exited with code 1: ImportError")
        return {"protocol": self.protocol, "warmup_step_s": [self.step_s], "first_step_s": 0.2, "images_per_step": 4,
                "environment": {}}  # fmt: skip

    def send(self, command):
        self.log.append(f"{self.side} {command.split()[0]}")

    def step(self, count, timeout_s):
        self.log.append(self.side)
        if self.fail_at is not None and self.log.count(self.side) > self.fail_at:
            raise ServerFailed("crashed", "gone")
        return [self.step_s * (1 + 0.001 * (i % 3)) for i in range(count)]

    def retire(self):
        self.log.append(f"{self.side} closed")

    def reap(self, grace_s=10.0):
        self.log.append(f"{self.side} reaped")


def fake_servers(
    monkeypatch, times: dict[str, float], fail: dict[str, int] | None = None, protocol: int = 1
) -> list[str]:
    log: list[str] = []
    fail = fail or {}

    def start(run, tree, cell):
        side = "base" if tree is run.base else "new"
        return FakeServer(side, log, times[side], fail.get(side), protocol)

    monkeypatch.setattr(interleave, "start_server", start)
    return log


def make_run(tmp_path: Path, cells: list[CellConfig], **limits) -> PairedRun:
    base, new = Tree(tmp_path / "base", ALL_FLAGS, True), Tree(tmp_path / "new", ALL_FLAGS, True)
    options = {"budget_s": 1000.0, "min_pairs": 4, "max_pairs": 8, **limits}
    return PairedRun(cells, base, new, tmp_path / "ab.jsonl", timeout_s=10, **options)


def judged(run: PairedRun, every: int):
    rule = SequentialRule(cells=len(run.cells), min_pairs=run.min_pairs, max_pairs=run.max_pairs, every=every)
    return rule, (lambda rows: still_open(rows, 0.05, rule))


def test_turns_go_in_abba_order_and_a_clear_regression_stops_at_the_first_look(monkeypatch, tmp_path):
    log = fake_servers(monkeypatch, {"base": 0.1, "new": 0.13})
    run = make_run(tmp_path, [FAKE])
    rule, open_ = judged(run, 2)
    done = run_ab(run, open_, Interleaving(turn_s=0.5, turns=2, look_every=2))
    pairs = [[]]  # the turns of each pair of servers; both are closed before the next pair starts
    for entry in (entry for entry in log if "reaped" not in entry):
        if "closed" not in entry:
            pairs[-1].append(entry)
        elif pairs[-1]:
            pairs.append([])
    assert pairs.pop() == [] and len(pairs) == 4  # decided at the first look (4 pairs)
    assert pairs[:2] == [["base", "new", "new", "base"], ["new", "base", "base", "new"]]
    assert done.stopped == "decided"
    rows = read_results(run.results).rows
    assert len(rows) == 8 and {row.paired["mode"] for row in rows} == {"interleaved-steps"}
    assert {row.paired["turn_steps"] for row in rows} == {4}  # 0.5 s turns at the slower warm-up's 0.13 s a step
    assert {row.paired["turns"] for row in rows} == {2} and {len(row.metrics["step_times_s"]) for row in rows} == {8}
    assert [row.paired["order"] for row in rows[:4]] == ["base-first"] * 2 + ["new-first"] * 2
    assert all("memory" not in row.metrics and "ceiling_flops_per_s" not in row.metrics for row in rows)
    result = judge_pairs(rows, 0.05, rule)
    assert result.cells["outcome"][0].outcome is Outcome.REGRESSION and result.modes == ("interleaved-steps",)
    assert result.cells["pairs"][0] == 4  # the unit is the pair of servers, not the turn


def test_every_pair_starts_fresh_servers(monkeypatch, tmp_path):
    started = []
    log = fake_servers(monkeypatch, {"base": 0.1, "new": 0.1})
    fake_start = interleave.start_server

    def start(run, tree, cell):
        started.append(tree)
        return fake_start(run, tree, cell)

    monkeypatch.setattr(interleave, "start_server", start)
    run = make_run(tmp_path, [FAKE], min_pairs=3, max_pairs=3)
    run_ab(run, judged(run, 1)[1], Interleaving(turns=3, look_every=1))
    assert len(started) == 6 and log.count("base closed") == log.count("new closed") == 3
    assert log.count("base reaped") == log.count("new reaped") == 3  # none left running after the cell
    second_pair_starts = [i for i, entry in enumerate(log) if entry in ("base", "new")][2 * 3]  # 3 turns a side
    assert {"base reaped", "new reaped"} <= set(log[:second_pair_starts])  # the first pair gone before it steps
    assert [tree.path.name for tree in started[:4]] == ["base", "new", "new", "base"]  # who starts first alternates too


def test_cells_of_one_framework_share_each_rounds_servers(fake_framework, monkeypatch, tmp_path):
    started = []
    log = fake_servers(monkeypatch, {"base": 0.1, "new": 0.1}, protocol=2)
    fake_start = interleave.start_server

    def start(run, tree, cell):
        started.append(cell)
        return fake_start(run, tree, cell)

    monkeypatch.setattr(interleave, "start_server", start)
    other = CellConfig("numpy-fake", "cifar100-single", "train", 4, steps=3, warmup=2)
    run = make_run(tmp_path, [FAKE, other], min_pairs=2, max_pairs=2)
    done = run_ab(run, judged(run, 1)[1], Interleaving(turns=1, look_every=1))
    assert started == [FAKE] * 4  # one pair of servers a round, started with the first cell, then switched
    assert log.count("base cell") == log.count("new cell") == 2
    assert sorted((row.paired["cell_key"], row.side, row.paired["pair"]) for row in done.rows) == sorted(
        (cell.key(), side, pair) for cell in (FAKE, other) for side in ("base", "new") for pair in (0, 1)
    )


def test_the_second_cell_starts_with_the_other_side(fake_framework, monkeypatch, tmp_path):
    log = fake_servers(monkeypatch, {"base": 0.1, "new": 0.1})
    other = CellConfig("numpy-fake", "cifar100-single", "train", 4, steps=3, warmup=2)
    run = make_run(tmp_path, [FAKE, other], min_pairs=2, max_pairs=2)
    run_ab(run, judged(run, 1)[1], Interleaving(turns=1, look_every=1, pair_steps=1))
    turns = [entry for entry in log if "closed" not in entry and "reaped" not in entry]
    assert turns == ["base", "new", "new", "base", "new", "base", "base", "new"]


def test_a_side_that_fails_to_start_makes_a_broken_cell_not_a_hang(monkeypatch, tmp_path):
    fake_servers(monkeypatch, {"base": 0.1, "new": 0.1}, fail={"new": -1})
    run = make_run(tmp_path, [FAKE])
    rule, open_ = judged(run, 2)
    done = run_ab(run, open_, Interleaving(look_every=2))
    by_side = {row.side: row for row in done.rows}
    assert by_side["new"].status == "crashed" and "ImportError" in by_side["new"].error
    assert by_side["base"].status == "ok"  # the side that works shows it does
    assert judge_pairs(done.rows, 0.05, rule).cells["outcome"][0].outcome is Outcome.BROKEN


def test_a_side_that_dies_mid_cell_ends_the_cell_with_its_row(monkeypatch, tmp_path):
    fake_servers(monkeypatch, {"base": 0.1, "new": 0.1}, fail={"new": 2})  # the new side's third turn fails
    run = make_run(tmp_path, [FAKE])
    done = run_ab(run, judged(run, 2)[1], Interleaving(turn_s=0.5, turns=4, look_every=2))
    assert [row.status for row in done.rows] == ["ok", "crashed"]  # the pair it died in, and no pair after it
    assert done.rows[0].paired["turns"] == 3 and len(done.rows[0].metrics["step_times_s"]) == 15


def test_cells_that_cannot_interleave_are_paired_as_processes(fake_framework, monkeypatch, tmp_path):
    fake_servers(monkeypatch, {"base": 0.1, "new": 0.1})
    two_gpus = CellConfig("numpy-fake", "cifar100-single", "infer", 4, gpus=2, steps=3, warmup=2)
    assert interleavable(FAKE) and not interleavable(two_gpus)
    seen = []
    monkeypatch.setattr(interleave, "run_pairs", lambda run, *args: seen.append(run.cells) or PairedRows([], "decided"))
    run = make_run(tmp_path, [FAKE, two_gpus], min_pairs=2, max_pairs=2)
    done = run_ab(run, judged(run, 1)[1], Interleaving(look_every=1))
    assert seen == [[two_gpus]] and {row.paired["cell_key"] for row in done.rows} == {FAKE.key()}
    assert run_ab(run, judged(run, 1)[1], None).rows == [] and seen[-1] == [FAKE, two_gpus]  # how=None: processes


def test_a_pair_times_at_least_six_steps_a_side_however_long_a_step(monkeypatch, tmp_path):
    fake_servers(monkeypatch, {"base": 0.5, "new": 0.5})  # one step fills a 0.5 s turn
    run = make_run(tmp_path, [FAKE], min_pairs=2, max_pairs=2)
    done = run_ab(run, judged(run, 1)[1], Interleaving(turn_s=0.5, turns=2, look_every=1))
    assert {(row.paired["turn_steps"], row.paired["turns"]) for row in done.rows} == {(1, 6)}
    assert {len(row.metrics["step_times_s"]) for row in done.rows} == {6}
    assert Interleaving(turns=2).turns_for(4) == 2 and Interleaving(turns=2).turns_for(2) == 3


class Clock:
    """``interleave``'s clock in these tests: every turn a side takes moves it on by one second."""

    def __init__(self) -> None:
        self.now = 0.0

    def monotonic(self) -> float:
        return self.now

    def time(self) -> float:
        return self.now


def ticking(monkeypatch) -> Clock:
    clock, step = Clock(), FakeServer.step
    monkeypatch.setattr(interleave, "time", clock)

    def timed_step(self, count, timeout_s):
        clock.now += 1.0
        return step(self, count, timeout_s)

    monkeypatch.setattr(FakeServer, "step", timed_step)
    return clock


def pairs_of(rows) -> dict[str, int]:
    return {
        key: sum(row.paired["cell_key"] == key for row in rows) // 2 for key in {row.paired["cell_key"] for row in rows}
    }


def test_the_budget_is_asked_before_every_round_not_only_at_looks(monkeypatch, tmp_path):
    ticking(monkeypatch)
    fake_servers(monkeypatch, {"base": 0.1, "new": 0.1})
    run = make_run(tmp_path, [FAKE], min_pairs=2, max_pairs=30, budget_s=18.0)
    never_decided = lambda rows: {FAKE.key()}  # noqa: E731
    done = run_ab(run, never_decided, Interleaving(turn_s=0.5, turns=2, look_every=3))
    # A round is 4 turns, 4 s: pairs 1-2 always run (8 s), 3 and 4 fit (16 s), a fifth would end at 20 s. Asked only
    # at the looks (pairs 2, 5, ...), three rounds more (20 s) would not have fitted, and it stopped at 2.
    assert done.stopped == "budget" and pairs_of(done.rows) == {FAKE.key(): 4}


def test_a_round_runs_only_when_it_fits_with_a_margin_for_a_slower_round(monkeypatch, tmp_path):
    ticking(monkeypatch)
    fake_servers(monkeypatch, {"base": 0.1, "new": 0.1})
    run = make_run(tmp_path, [FAKE], min_pairs=2, max_pairs=30, budget_s=16.5)
    done = run_ab(run, lambda rows: {FAKE.key()}, Interleaving(turn_s=0.5, turns=2, look_every=3))
    # After 3 rounds (12 s) a fourth of 4 s would end at 16 s, inside 16.5 s, but not at 5 s (4 s x 1.25): a round
    # as long as the last leaves no room for one a little slower, and the budget is the user's limit.
    assert interleave.ROUND_MARGIN * 4.0 > 16.5 - 12.0 and pairs_of(done.rows) == {FAKE.key(): 3}


def test_groups_take_rounds_in_turn_and_a_decided_group_leaves_its_time_to_the_other(
    fake_framework, monkeypatch, tmp_path
):
    ticking(monkeypatch)
    log = fake_servers(monkeypatch, {"base": 0.1, "new": 0.1})
    other = CellConfig("numpy-fake", "cifar100-single", "train", 4, steps=3, warmup=2)
    monkeypatch.setattr(interleave, "group_cells", lambda run, cells: [[cell] for cell in cells])
    run = make_run(tmp_path, [FAKE, other], min_pairs=2, max_pairs=30, budget_s=41.0)
    only_fake_open = lambda rows: {FAKE.key()}  # noqa: E731
    done = run_ab(run, only_fake_open, Interleaving(turn_s=0.5, turns=2, look_every=1, pair_steps=1))
    keys = [row.paired["cell_key"] for row in done.rows[::2]]
    assert keys[:4] == [FAKE.key(), other.key(), FAKE.key(), other.key()]  # round about
    # other stops at its first look (16 s in); FAKE has the 25 s left to itself: 6 more rounds of 4 s (each asked
    # with its margin: 5 s), 8 pairs in all, where half of the budget (20.5 s) holds 5 rounds at most.
    assert pairs_of(done.rows) == {FAKE.key(): 8, other.key(): 2} and done.stopped == "budget"
    assert log.count("base closed") == log.count("new closed") == 10


def test_turn_steps_follow_the_slower_sides_warm_up():
    ready = {"base": {"warmup_step_s": [0.1, 0.1, 0.3]}, "new": {"warmup_step_s": [], "first_step_s": 0.05}}
    assert turn_steps(ready, 0.5) == 5
    assert turn_steps({"base": {"warmup_step_s": [2.0]}}, 0.5) == 1  # a turn is at least one step


def test_the_rule_counts_one_look_per_round_of_pairs():
    assert SequentialRule(min_pairs=10, max_pairs=40, every=5).looks == 7
    assert SequentialRule(min_pairs=10, max_pairs=42, every=5).looks == 8  # the last look at max_pairs
    assert SequentialRule(min_pairs=3, max_pairs=10).looks == 8  # one pair a look, as before


# --- which trees speak the protocol ---------------------------------------------------------------------------------


def test_a_base_without_the_step_server_is_paired_as_processes_said_in_one_line(tmp_path):
    (tmp_path / "bench.py").write_text("")
    assert not speaks_steps(tmp_path) and speaks_steps(ROOT)
    old, this = Tree(tmp_path, ALL_FLAGS, False), Tree(ROOT, ALL_FLAGS, True)
    line = mode_line(old, this)
    assert line is not None and "\n" not in line
    assert line.startswith(f"the base tree at {tmp_path} has no step server") and "whole processes" in line
    assert mode_line(this, this) is None


def test_this_tree_is_read_as_speaking_the_protocol_without_running_it():
    assert paired.read_tree(ROOT, dict(os.environ)).step_server


# --- end to end, with real step servers of the fake framework --------------------------------------------------------


def test_two_real_step_servers_take_turns_and_write_judged_rows(fake_framework, tmp_path):
    tree = Tree(ROOT, ALL_FLAGS, True)
    run = PairedRun([FAKE], tree, tree, tmp_path / "ab.jsonl", 1000.0, 4, 6, 120.0)
    rule, open_ = judged(run, 2)
    done = run_ab(run, open_, Interleaving(turn_s=0.05, look_every=2))
    rows = read_results(run.results).rows
    assert len(rows) == len(done.rows) >= 8 and {row.status for row in rows} == {"ok"}
    assert {row.side for row in rows} == {"base", "new"} and len({row.key for row in rows}) == len(rows)
    result = judge_pairs(rows, 0.05, rule)
    assert result.cells["pairs"][0] >= 4 and result.summary()["modes"] == ["interleaved-steps"]
    assert {row.paired["primitive_cache"] for row in rows} == {"fresh"}


@pytest.mark.parametrize(("cache", "expected"), [("fresh", "0"), ("kept", None)])
def test_servers_run_with_onednn_keeping_no_primitives_unless_asked(
    fake_framework, monkeypatch, tmp_path, cache, expected
):
    monkeypatch.delenv("ONEDNN_PRIMITIVE_CACHE_CAPACITY", raising=False)  # the worker's environment starts from ours
    tree = Tree(tmp_path / "base", ALL_FLAGS, True)
    run = PairedRun([FAKE], tree, tree, tmp_path / "ab.jsonl", 10.0, 2, 2, 10.0, primitive_cache=cache, environ={})
    env = interleave.server_environment(run, tree, FAKE)
    assert env.get("ONEDNN_PRIMITIVE_CACHE_CAPACITY") == expected and env["OMP_WAIT_POLICY"] == "PASSIVE"
    assert paired.side_environment({}, "passive", cache).get("ONEDNN_PRIMITIVE_CACHE_CAPACITY") == expected


def test_an_unknown_primitive_cache_is_refused_by_name():
    with pytest.raises(paired.PairedError, match="unknown primitive cache 'off'; valid: fresh, kept"):
        paired.side_environment({}, "passive", "off")


def test_ab_against_a_base_without_the_step_server_says_so_once_and_pairs_processes(tmp_path):
    base = tmp_path / "base"
    for name in tree_files(ROOT):
        if name != str(paired.STEP_SERVER):  # a base from before the step server
            (base / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, base / name)
    env = {**os.environ, frameworks.PLUGINS_VARIABLE: "tests.fake_framework"}
    command = [sys.executable, str(ROOT / "bench.py"), "ab", "--base-tree", str(base), "-f", "numpy-fake"]
    command += ["-v", "cifar100-single", "-m", "infer", "-b", "4", "--steps", "2", "--warmup", "1"]
    command += ["--time-budget", "0", "--min-pairs", "2", "--max-pairs", "2", "--results", str(tmp_path / "ab.jsonl")]
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    said = done.stdout[-3000:] + done.stderr[-3000:]
    assert done.returncode == 0, said
    notes = [line for line in done.stderr.splitlines() if "has no step server" in line]
    assert notes == [f"note: the base tree at {base} has no step server (benchmarks/step_server.py): pairing whole "
                     "processes instead of interleaved steps"], said  # fmt: skip
    rows = read_results(tmp_path / "ab.jsonl").rows
    assert len(rows) == 4 and {row.paired["mode"] for row in rows} == {"processes"}


# --- fork servers: each pair's servers forked from a process that imported the framework once -----------------------


def fork_server_process(env: dict[str, str]) -> subprocess.Popen:
    command = [sys.executable, "-m", "benchmarks.step_server", "--fork-server", "numpy-fake"]
    return subprocess.Popen(command, cwd=ROOT, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)


def next_said(process: subprocess.Popen) -> tuple[str, dict]:
    words = (step_server.READY, step_server.STEPS, step_server.FAILED, step_server.ENDED)
    for line in process.stdout:
        for word in words:
            if line.startswith(word):
                return word.strip(), json.loads(line[len(word) :])
    raise AssertionError(f"the fork server ended without a protocol line (exit {process.wait()})")


def test_a_fork_server_forks_a_fresh_step_server_for_every_cell_and_says_when_each_ended():
    env = {**os.environ, frameworks.PLUGINS_VARIABLE: "tests.fake_framework"}
    process = fork_server_process(env)
    try:
        word, ready = next_said(process)
        assert word == "READY" and ready["fork_server"] and ready["protocol"] == step_server.PROTOCOL
        children = []
        for commands in (["step 2"], ["step 1", "step 3"]):
            process.stdin.write(f"fork {FAKE.to_json()}\n")
            process.stdin.flush()
            word, child = next_said(process)
            assert word == "READY" and child["pid"] != process.pid and child["images_per_step"] == FAKE.batch_size
            children.append(child["pid"])
            for command in commands:
                process.stdin.write(command + "\n")
                process.stdin.flush()
                word, steps = next_said(process)
                assert word == "STEPS" and len(steps["times"]) == int(command.split()[1])
            process.stdin.write("quit\n")
            process.stdin.flush()
            assert next_said(process) == ("ENDED", {"code": 0})
        assert len(set(children)) == 2  # a process per cell, as fresh servers are
        process.stdin.write(f"fork {json.dumps({'framework': 'numpy-fake'})}\n")  # a cell it cannot prepare
        process.stdin.flush()
        assert next_said(process)[0] == "FAILED" and next_said(process) == ("ENDED", {"code": 1})
        process.stdin.write("quit\n")
        process.stdin.flush()
        assert process.wait(timeout=30) == 0
    finally:
        process.kill()
        process.wait()


def test_a_fork_server_whose_framework_cannot_load_says_failed():
    process = fork_server_process({**os.environ, frameworks.PLUGINS_VARIABLE: ""})  # numpy-fake unknown there
    try:
        word, failed = next_said(process)
        assert word == "FAILED" and "numpy-fake" in failed["error"] and process.wait(timeout=30) == 1
    finally:
        process.kill()
        process.wait()


LAYOUT_PROBE = """
import ctypes, mmap, random
from benchmarks import step_server

def next_address():
    mapped = mmap.mmap(-1, 64 * mmap.PAGESIZE)
    address = ctypes.addressof(ctypes.c_char.from_buffer(mapped))
    mapped.close()
    return address

before = next_address()
assert next_address() == before, "without a shift, the same place again"
step_server.shift_layout(random.Random(3))
pages = len(step_server._layout_shift[0]) // mmap.PAGESIZE
assert 1 <= pages <= step_server.LAYOUT_SHIFT_PAGES, pages
assert next_address() != before, "the shift moved nothing"
"""


def test_a_forked_server_moves_its_next_mappings_by_a_random_number_of_pages():
    """In a fresh process, as a forked child is: a long-lived one (a test worker) has holes in its address space
    that a small reservation may fill without moving the next mapping."""
    done = subprocess.run([sys.executable, "-c", LAYOUT_PROBE], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def test_pairs_of_forked_servers_share_one_fork_server_per_side_and_leave_nothing_running(fake_framework, tmp_path):
    started = []
    fork_start = interleave.start_fork_server

    def start(run, tree, cell):
        server = fork_start(run, tree, cell)
        started.append(server.process)
        return server

    tree = Tree(ROOT, ALL_FLAGS, True, fork_server=True)
    other = CellConfig("numpy-fake", "cifar100-single", "train", 4, steps=3, warmup=2)
    run = PairedRun([FAKE, other], tree, tree, tmp_path / "ab.jsonl", 1000.0, 3, 3, 120.0)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(interleave, "start_fork_server", start)
        done = run_ab(run, judged(run, 1)[1], Interleaving(turn_s=0.02, look_every=1))
    assert len(started) == 2  # one fork server a side for the three rounds of both cells
    assert all(process.poll() is not None for process in started)  # told to quit, or killed, at the end
    rows = read_results(run.results).rows
    assert len(rows) == len(done.rows) == 12 and {row.status for row in rows} == {"ok"}
    assert {row.paired["servers"] for row in rows} == {"forked"}


def test_a_fork_server_that_fails_to_start_leaves_the_group_to_fresh_servers(fake_framework, monkeypatch, tmp_path):
    log = fake_servers(monkeypatch, {"base": 0.1, "new": 0.1})
    tries = []

    def broken(run, tree, cell):
        tries.append(tree)
        return FakeServer("base" if tree is run.base else "new", log, 0.1, fail_at=-1)

    monkeypatch.setattr(interleave, "start_fork_server", broken)
    base, new = Tree(tmp_path / "base", ALL_FLAGS, True, True), Tree(tmp_path / "new", ALL_FLAGS, True, True)
    run = PairedRun([FAKE], base, new, tmp_path / "ab.jsonl", 1000.0, 2, 2, 10.0)
    done = run_ab(run, judged(run, 1)[1], Interleaving(look_every=1))
    assert len(tries) == 2  # tried once a side, then fresh servers for every round
    assert [row.status for row in done.rows] == ["ok"] * 4 and {row.paired["servers"] for row in done.rows} == {"fresh"}


def test_fork_servers_are_asked_for_only_where_both_trees_have_them_and_the_framework_can_fork(
    fake_framework, tmp_path
):
    both = Tree(ROOT, ALL_FLAGS, True, True)
    old = Tree(tmp_path, ALL_FLAGS, True, False)
    assert interleave.forks(PairedRun([FAKE], both, both, tmp_path / "ab.jsonl", 1.0, 2, 2, 1.0), FAKE)
    assert not interleave.forks(PairedRun([FAKE], old, both, tmp_path / "ab.jsonl", 1.0, 2, 2, 1.0), FAKE)
    fresh = PairedRun([FAKE], both, both, tmp_path / "ab.jsonl", 1.0, 2, 2, 1.0, servers="fresh")
    assert not interleave.forks(fresh, FAKE)
    jax = CellConfig("keras-jax", "cifar100-single", "infer", 4)
    assert not interleave.forks(PairedRun([jax], both, both, tmp_path / "ab.jsonl", 1.0, 2, 2, 1.0), jax)
    assert paired.forks_servers(ROOT) and not paired.forks_servers(tmp_path)


class FakeForkServer(FakeServer):
    """A fork server in this process: the children it forks answer as a FakeServer does; ``ended`` as ENDED."""

    def answer(self, timeout_s, ended=False):
        return {"code": 0} if ended else super().answer(timeout_s)


def test_a_child_that_fails_breaks_its_fork_server_which_is_killed_and_started_anew(
    fake_framework, monkeypatch, tmp_path
):
    log, homes, killed = [], [], []

    def start(run, tree, cell):
        side = "base" if tree is run.base else "new"
        fails = side == "new" and not any(home.side == "new" for home in homes)  # the first new one only
        homes.append(FakeForkServer(side, log, 0.1, fail_at=0 if fails else None))
        return homes[-1]

    monkeypatch.setattr(interleave, "start_fork_server", start)
    monkeypatch.setattr(interleave, "kill_group", lambda process: killed.append(process))
    other = CellConfig("numpy-fake", "cifar100-single", "train", 4, steps=3, warmup=2)
    base, new = Tree(tmp_path / "base", ALL_FLAGS, True, True), Tree(tmp_path / "new", ALL_FLAGS, True, True)
    run = PairedRun([FAKE, other], base, new, tmp_path / "ab.jsonl", 1000.0, 2, 2, 10.0)
    done = run_ab(run, judged(run, 1)[1], Interleaving(turns=1, look_every=1, pair_steps=1))
    statuses = {(row.paired["cell_key"], row.side, row.paired["pair"]): row.status for row in done.rows}
    assert statuses[(FAKE.key(), "new", 0)] == "crashed" and (FAKE.key(), "new", 1) not in statuses
    assert [statuses[(other.key(), side, pair)] for side in ("base", "new") for pair in (0, 1)] == ["ok"] * 4
    assert [home.side for home in homes] == ["base", "new", "base", "new"]  # both started anew for the next cell
    assert homes[1].process in killed  # the broken one killed, with the child it forked
    assert {row.paired["servers"] for row in done.rows} == {"forked"}
