"""The harness-overhead check: passes a cheap harness, catches a costly one, and admits noise.

Steps and synchronisations advance a fake clock, so the verdicts do not depend on how busy the
machine running the tests is.
"""

import itertools
from types import SimpleNamespace

import pytest

import benchmarks.measure.selfcheck
import benchmarks.measure.timing
from benchmarks import frameworks
from benchmarks.cell import CellConfig, PreparedCell
from benchmarks.measure.selfcheck import measure_overhead, overhead_interval, verdict

CONFIG = CellConfig("torch", "cifar100-single", "infer", 4, steps=10, warmup=1)


@pytest.fixture
def fake_cell(monkeypatch):
    """Install a cell whose step takes the next of ``step_s`` seconds and whose sync costs ``sync_cost_s``."""
    now = SimpleNamespace(t=0.0)
    clock = SimpleNamespace(perf_counter=lambda: now.t)
    monkeypatch.setattr(benchmarks.measure.selfcheck, "time", clock)
    monkeypatch.setattr(benchmarks.measure.timing, "time", clock)

    def install(sync_cost_s: float, step_s=None) -> None:
        step_s = step_s if step_s is not None else itertools.repeat(0.01)

        def step() -> None:
            now.t += next(step_s)

        def sync() -> None:
            now.t += sync_cost_s

        cell = PreparedCell(step=step, sync=sync, images_per_step=4, environment={})
        monkeypatch.setattr(frameworks.get("torch"), "prepare", lambda config: cell)

    return install


@pytest.mark.parametrize("sync_cost_s,expected", [(0.0, "within"), (0.004, "over")])
def test_overhead_is_measured_against_a_bare_loop(fake_cell, sync_cost_s, expected):
    """A per-step synchronisation that costs 40% of a step is what the check must catch."""
    fake_cell(sync_cost_s)
    result = measure_overhead(CONFIG, budget_s=5.0)
    assert result["verdict"] == expected and result["within_tolerance"] is (expected == "within")
    assert result["rounds"] == 7  # decided at the minimum: no extra rounds
    # Harness: a sync before and after each of 10 steps; bare loop: one sync after them.
    assert result["overhead"] == pytest.approx((0.1 + 11 * sync_cost_s) / (0.1 + sync_cost_s) - 1)
    assert result["bare_images_per_s"] == pytest.approx(40 / (0.1 + sync_cost_s))


def test_rounds_too_noisy_to_decide_are_inconclusive_after_the_budget(fake_cell):
    """Loops alternately 20% slower and faster: the interval straddles 2%, so more rounds, then inconclusive."""
    fake_cell(0.0, itertools.cycle([0.012] * 10 + [0.008] * 10 + [0.008] * 10 + [0.012] * 10))
    result = measure_overhead(CONFIG, rounds=7, budget_s=2.0, max_rounds=12)
    assert result["verdict"] == "inconclusive" and not result["within_tolerance"]
    assert result["rounds"] > 7  # it tried more rounds before giving up
    assert result["overhead_low"] < 0.02 < result["overhead_high"]


def test_verdict_from_the_interval():
    assert verdict(-0.01, 0.015) == "within"
    assert verdict(0.025, 0.05) == "over"
    assert verdict(-0.05, 0.08) == "inconclusive"
    assert overhead_interval([0.01] * 5) == (float("-inf"), float("inf"))  # too few rounds for 95%


def test_a_time_budget_of_zero_runs_the_minimum_rounds_only(fake_cell):
    """``selfcheck --time-budget 0``: undecided after the first rounds, it stops there (it once ran 60 s more)."""
    from dataclasses import replace

    fake_cell(0.0, itertools.cycle([0.012] * 10 + [0.008] * 10 + [0.008] * 10 + [0.012] * 10))
    result = measure_overhead(replace(CONFIG, time_budget_s=0.0), rounds=7, max_rounds=12)
    assert result["rounds"] == 7 and result["verdict"] == "inconclusive"
