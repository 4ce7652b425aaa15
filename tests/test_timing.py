"""Timing by budget: stop at the target precision, at the budget, never under the minimum count."""

from __future__ import annotations

import itertools
import math
from types import SimpleNamespace

import numpy as np
import pytest

import benchmarks.measure.timing
from benchmarks.measure.timing import StopAgreement, median_interval_ranks, median_precision, time_by_budget


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


# --- ranks agree on every stop ---------------------------------------------------------------------


def rank_agreement(others_stop_at: int, calls: list[tuple[int, bool]], steps: list, cost_s: float, now=None):
    """A StopAgreement for this rank and one other rank that wants to stop from step ``others_stop_at`` on;
    records (step, this rank's wish) per call and, with the fake clock ``now``, takes ``cost_s`` of it."""

    def all_want_to_stop(wants: bool) -> bool:
        calls.append((len(steps), wants))
        if now is not None:
            now.t += cost_s
        return wants and len(steps) >= others_stop_at

    return StopAgreement(2, all_want_to_stop)


@pytest.fixture
def counted_clock(monkeypatch):
    """A fake clock and a step that advances it by 0.1 s and counts itself."""
    now, steps = SimpleNamespace(t=0.0), []
    monkeypatch.setattr(benchmarks.measure.timing, "time", SimpleNamespace(perf_counter=lambda: now.t))

    def step() -> None:
        steps.append(1)
        now.t += 0.1

    return now, steps, step


def test_a_rank_that_wants_to_stop_waits_for_the_others(counted_clock):
    now, steps, step = counted_clock
    calls: list[tuple[int, bool]] = []
    agreement = rank_agreement(12, calls, steps, cost_s=0.0)
    times, record = time_by_budget(step, lambda: None, 8, budget_s=30, target=0.02, agreement=agreement)
    assert len(times) == record["steps_taken"] == 12  # it wanted to stop at 8, the other rank at 12
    assert record["stopped_by"] == "target precision" and record["stop_agreed_across_ranks"] == 2
    assert calls == [(n, True) for n in range(8, 13)]  # once per step from the minimum on, never before


def test_the_agreement_is_outside_every_step_time(counted_clock):
    now, steps, step = counted_clock
    agreement = rank_agreement(10, [], steps, cost_s=5.0, now=now)  # a slow collective, 5 s a call
    times, record = time_by_budget(step, lambda: None, 8, budget_s=1e6, target=0.02, agreement=agreement)
    assert times == pytest.approx([0.1] * 10)


def test_a_rank_that_wants_more_steps_keeps_the_others_until_its_budget(counted_clock):
    now, steps, step = counted_clock
    calls: list[tuple[int, bool]] = []
    agreement = rank_agreement(0, calls, steps, cost_s=0.0)  # the other rank wants to stop at once

    def noisy() -> None:
        step()
        now.t += 0.05 * (len(steps) % 3)  # never within the target

    times, record = time_by_budget(noisy, lambda: None, 4, budget_s=2.0, target=0.001, agreement=agreement)
    assert record["stopped_by"] == "time budget" and calls[-1] == (len(times), True)
    assert not any(wants for _, wants in calls[:-1])


def test_one_process_records_no_agreement(clock):
    times, record = time_by_budget(clock(itertools.cycle([0.1])), lambda: None, 6, budget_s=30, target=0.02)
    assert "stop_agreed_across_ranks" not in record
