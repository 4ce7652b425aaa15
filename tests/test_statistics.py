"""Process-level statistics: intervals that see the spread between processes, the t-test, Holm, MDC."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import mannwhitneyu

from reports.statistics import (
    cell_median,
    hierarchical_bootstrap,
    holm,
    process_spread,
    process_test,
    repeats_needed,
    throughput_interval,
)


def fake_processes(seed: int, between: float, count: int = 5, steps: int = 30, within: float = 0.03) -> list:
    """Per-step seconds of ``count`` processes whose medians differ by a log-normal ``between``."""
    rng = np.random.default_rng(seed)
    return [list(0.1 * math.exp(rng.normal(0, between)) * np.exp(rng.normal(0, within, steps))) for _ in range(count)]


def width(processes: list) -> float:
    low, high = throughput_interval(processes, images_per_step=32)
    return high / low - 1


def test_process_level_intervals_widen_with_between_process_spread_where_pooled_steps_do_not() -> None:
    quiet, noisy = fake_processes(1, between=0.0), fake_processes(1, between=0.08)
    pooled_noisy = [sum(noisy, [])]  # every step as if from one process
    assert width(noisy) > 4 * width(quiet)
    assert width(noisy) > 0.08  # about the spread between processes, which a rerun would see
    assert width(pooled_noisy) < 0.25 * width(noisy)  # pooled steps hide most of it


def test_one_process_is_the_bootstrap_of_its_steps() -> None:
    (steps,) = fake_processes(2, between=0.0, count=1)
    replicates = hierarchical_bootstrap([steps], resamples=500)
    assert cell_median([steps]) == pytest.approx(float(np.median(steps)))
    assert min(steps) <= replicates.min() and replicates.max() <= max(steps)
    assert math.isnan(process_spread([steps]))


def test_the_t_test_works_on_process_medians() -> None:
    base = fake_processes(3, between=0.03)
    slower = [[t * 1.25 for t in p] for p in fake_processes(4, between=0.03)]
    assert process_test(base, slower, 0.05).p_value < 0.001
    test = process_test(base, fake_processes(5, between=0.03), 0.05)
    assert test.n_base == test.n_new == 5 and 0.01 < test.spread < 0.06
    assert math.isnan(process_test(base[:1], base[1:2], 0.05).p_value)  # one process per side: no spread


def test_a_and_a_pairs_are_false_alarms_about_alpha_of_the_time_where_pooled_steps_are_not() -> None:
    pairs = [(fake_processes(100 + i, between=0.03), fake_processes(300 + i, between=0.03)) for i in range(60)]
    by_process = sum(process_test(a, b, 0.05).p_value < 0.05 for a, b in pairs)
    by_step = sum(mannwhitneyu(sum(a, []), sum(b, [])).pvalue < 0.05 for a, b in pairs)
    assert by_process <= 0.1 * len(pairs)  # 5% expected
    assert by_step >= 0.4 * len(pairs)


def test_detectable_change_follows_the_spread_and_the_repeats() -> None:
    noisy, quiet = fake_processes(6, between=0.06, count=4), fake_processes(7, between=0.01, count=4)
    mdc_noisy = process_test(noisy, fake_processes(8, between=0.06, count=4), 0.05).detectable
    mdc_quiet = process_test(quiet, fake_processes(9, between=0.01, count=4), 0.05).detectable
    assert mdc_noisy > 3 * mdc_quiet
    # At the spread it was computed for, the returned count just reaches the change and one fewer does not.
    needed = repeats_needed(0.05, 0.05, 0.05)
    assert needed is not None and 10 < needed < 40
    assert repeats_needed(0.05, 0.10, 0.05) < needed < repeats_needed(0.05, 0.05, 0.01)
    assert repeats_needed(math.nan, 0.05, 0.05) is None


def test_holm_adjusts_in_order_and_keeps_missing_values() -> None:
    adjusted = holm([0.01, 0.04, 0.03, math.nan])
    assert adjusted[:3] == pytest.approx([0.03, 0.06, 0.06]) and math.isnan(adjusted[3])
    assert holm([0.02, 0.9]) == pytest.approx([0.04, 0.9])
