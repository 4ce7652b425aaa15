"""Timing by budget: stop at the target precision, at the budget, never under the minimum count."""

from __future__ import annotations

import itertools
import math
from types import SimpleNamespace

import numpy as np
import pytest

import benchmarks.measure.timing
from benchmarks.measure.timing import median_interval_ranks, median_precision, time_by_budget


@pytest.fixture
def clock(monkeypatch):
    """A fake clock the steps advance, so step times are exactly what a test says."""
    now = SimpleNamespace(t=0.0)
    monkeypatch.setattr(benchmarks.measure.timing, "time", SimpleNamespace(perf_counter=lambda: now.t))

    def stepper(durations):
        it = iter(durations)

        def step() -> None:
            now.t += next(it)

        return step

    return stepper


def test_median_interval_ranks_cover_95_percent():
    assert median_interval_ranks(5) is None  # 2/32 = 6.25% > 5%: no pair of ranks reaches 95%
    assert median_interval_ranks(6) == (0, 5)
    low, high = median_interval_ranks(100)
    coverage = sum(math.comb(100, k) for k in range(low + 1, high + 1)) / 2**100
    assert coverage >= 0.95 and (low, high) == (39, 60)


def test_quiet_steps_stop_at_the_target_after_the_minimum(clock):
    durations = itertools.cycle([0.100, 0.101, 0.099])
    times, record = time_by_budget(clock(durations), lambda: None, 8, budget_s=30, target=0.02)
    assert record["stopped_by"] == "target precision" and len(times) == record["steps_taken"] == 8
    assert record["median_precision"] == pytest.approx(0.01, abs=1e-6)


def test_noisy_steps_stop_at_the_budget_and_record_what_they_reached(clock):
    rng = np.random.default_rng(0)
    durations = (0.01 * float(np.exp(rng.normal(0, 0.5))) for _ in itertools.count())
    times, record = time_by_budget(clock(durations), lambda: None, 5, budget_s=1.0, target=0.001)
    assert record["stopped_by"] == "time budget" and record["median_precision"] > 0.001
    assert 1.0 <= record["timed_s"] < 1.1 and 50 < len(times) < 150
    assert median_precision(times) == pytest.approx(record["median_precision"])
    assert record["time_budget_s"] == 1.0 and record["target_precision"] == 0.001


def test_more_noise_takes_more_steps_to_reach_the_target(clock):
    rng = np.random.default_rng(1)
    counts = []
    for spread in (0.02, 0.08):
        durations = (0.01 * float(np.exp(rng.normal(0, spread))) for _ in itertools.count())
        counts.append(len(time_by_budget(clock(durations), lambda: None, 5, budget_s=100, target=0.01)[0]))
    assert counts[1] > 4 * counts[0]


def test_the_minimum_count_holds_even_past_the_budget(clock):
    times, record = time_by_budget(clock(itertools.cycle([0.5, 0.7])), lambda: None, 7, budget_s=0.0, target=0.01)
    assert len(times) == 7 and record["stopped_by"] == "time budget"
