"""The harness-overhead check: passes a cheap harness, catches a costly one, and admits noise."""

import itertools
import time

import pytest

import benchmarks.worker
from benchmarks.cell import CellConfig, PreparedCell
from benchmarks.selfcheck import measure_overhead, overhead_interval, verdict

CONFIG = CellConfig("torch", "cifar100-single", "infer", 4, steps=10, warmup=1)


def fake_cell(sync_cost_s: float, step_s=lambda: 0.01) -> PreparedCell:
    def sync() -> None:
        if sync_cost_s:  # even sleep(0) gives up the CPU on a busy machine: a free sync does nothing
            time.sleep(sync_cost_s)

    return PreparedCell(step=lambda: time.sleep(step_s()), sync=sync, images_per_step=4, environment={})


@pytest.mark.parametrize("sync_cost_s,expected", [(0.0, "within"), (0.004, "over")])
def test_overhead_is_measured_against_a_bare_loop(monkeypatch, sync_cost_s, expected):
    """A per-step synchronisation that costs 40% of a step is what the check must catch."""
    monkeypatch.setattr(benchmarks.worker, "prepare", lambda config: fake_cell(sync_cost_s))
    result = measure_overhead(CONFIG, budget_s=5.0)
    assert result["verdict"] == expected and result["within_tolerance"] is (expected == "within")
    assert result["overhead_low"] <= result["overhead"] <= result["overhead_high"]
    if expected == "within":
        assert abs(result["overhead"]) < 0.02
    else:
        assert result["overhead"] > 0.2
    assert result["bare_images_per_s"] == pytest.approx(4 / (0.01 + sync_cost_s / 10), rel=0.2)


def test_rounds_too_noisy_to_decide_are_inconclusive_after_the_budget(monkeypatch):
    """Loops alternately 20% slower and faster: the interval straddles 2%, so more rounds, then inconclusive."""
    phases = itertools.cycle([0.012] * 10 + [0.008] * 10 + [0.008] * 10 + [0.012] * 10)
    monkeypatch.setattr(benchmarks.worker, "prepare", lambda config: fake_cell(0.0, lambda: next(phases)))
    result = measure_overhead(CONFIG, rounds=7, budget_s=2.0, max_rounds=12)
    assert result["verdict"] == "inconclusive" and not result["within_tolerance"]
    assert result["rounds"] > 7  # it tried more rounds before giving up
    assert result["overhead_low"] < 0.02 < result["overhead_high"]


def test_verdict_from_the_interval():
    assert verdict(-0.01, 0.015) == "within"
    assert verdict(0.025, 0.05) == "over"
    assert verdict(-0.05, 0.08) == "inconclusive"
    assert overhead_interval([0.01] * 5) == (float("-inf"), float("inf"))  # too few rounds for 95%
