"""Timing a step function honestly: each step bracketed by device synchronisation, every sample kept.

``time_by_budget`` decides how many steps to take the way ``timeit.autorange`` and pyperf's
calibration do, from the measurement itself: steps are taken until the median's 95% interval is
within a target relative width, or a time budget runs out, but never fewer than a minimum count.
The interval is distribution-free (order statistics around the median, from the binomial
distribution), so no shape of the step-time distribution is assumed.

The ranks of a data-parallel cell step in lockstep (every step ends in a gradient all-reduce), so they
must also stop together: a rank that left the loop alone would leave the others waiting in their
next all-reduce until a collective's timeout. A ``StopAgreement`` makes one decision out of every
rank's own wish, once per step, after the step's clock is read.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

MAX_STEPS = 500  # a cap on steps per process: beyond it, more processes help more than more steps


def median_interval_ranks(count: int, level: float = 0.95) -> tuple[int, int] | None:
    """0-based ranks (low, high) of sorted samples bracketing the median with coverage >= ``level``.

    The number of samples below the true median is Binomial(count, 1/2); None when ``count`` is
    too small for any pair of ranks to reach ``level`` (fewer than 6 samples at 95%).
    """
    tail = (1 - level) / 2
    cumulative, below = 0.0, -1
    for k in range(count + 1):
        cumulative += math.comb(count, k) / 2**count
        if cumulative > tail:
            break
        below = k
    if below < 0:
        return None
    return below, count - 1 - below


def median_precision(step_times: list[float], level: float = 0.95) -> float:
    """Half-width of the median's distribution-free interval, relative to the median; inf when too few samples."""
    ranks = median_interval_ranks(len(step_times), level)
    if ranks is None:
        return math.inf
    ordered = sorted(step_times)
    median = float(np.median(ordered))
    return (ordered[ranks[1]] - ordered[ranks[0]]) / 2 / median if median > 0 else math.inf


@dataclass(frozen=True)
class StopAgreement:
    """How the ranks of one data-parallel cell stop timing at the same step.

    ``all_want_to_stop`` is a collective every rank calls once per step with its own wish; it returns
    True on every rank, and only then, when every rank wants to stop (a MIN all-reduce of a 0/1 flag).
    So each rank stops for a reason of its own (its target reached or its budget spent) and its record
    stays true; ``max_steps`` ends every rank at the same step anyway.
    """

    ranks: int
    all_want_to_stop: Callable[[bool], bool]


def _stop_reason(precision: float, target: float, elapsed_s: float, budget_s: float) -> str | None:
    """Why this rank wants to stop now, or None while it wants more steps."""
    if precision <= target:
        return "target precision"
    if elapsed_s >= budget_s:
        return "time budget"
    return None


def time_by_budget(
    step: Callable[[], object],
    sync: Callable[[], None],
    min_steps: int,
    budget_s: float,
    target: float,
    max_steps: int = MAX_STEPS,
    agreement: StopAgreement | None = None,
) -> tuple[list[float], dict[str, object]]:
    """Step times until the median is known within ``target`` (relative half-width) or ``budget_s`` is spent.

    Always at least ``min_steps`` and at most ``max_steps``. The second value records the budget,
    the target, what was reached and why timing stopped, so every row says how it was measured.
    With an ``agreement`` (several ranks) timing stops only when every rank wants to stop; the
    agreement runs after a step's clock is read and before the next step's, so no step's time includes it.
    """
    times: list[float] = []
    sync()
    started = time.perf_counter()
    precision, reason = math.inf, None
    while len(times) < max_steps:
        start = time.perf_counter()
        step()
        sync()
        end = time.perf_counter()
        times.append(end - start)
        if len(times) < min_steps:
            continue
        precision = median_precision(times)
        reason = _stop_reason(precision, target, end - started, budget_s)
        stop = reason is not None
        if agreement is not None:
            stop = agreement.all_want_to_stop(stop)  # a collective: every rank calls it at this step
        if stop:
            break
    else:
        reason = "max steps"
    agreed = {"stop_agreed_across_ranks": agreement.ranks} if agreement is not None else {}
    return times, {
        "time_budget_s": budget_s,
        "target_precision": target,
        "min_steps": min_steps,
        "steps_taken": len(times),
        "median_precision": precision if math.isfinite(precision) else None,
        "stopped_by": reason,
        "timed_s": time.perf_counter() - started,
        **agreed,
    }


def time_steps(step: Callable[[], object], sync: Callable[[], None], count: int) -> list[float]:
    """Seconds per step for ``count`` steps; ``sync`` waits for the device before each clock read."""
    times = []
    sync()
    for _ in range(count):
        start = time.perf_counter()
        step()
        sync()
        times.append(time.perf_counter() - start)
    return times


def summarize(step_times: list[float], images_per_step: int) -> dict[str, float]:
    """Median and interquartile range of per-step times, and images/s at the median."""
    samples = np.asarray(step_times, dtype=float)
    q25, median, q75 = np.percentile(samples, [25, 50, 75])
    return {
        "steps": int(samples.size),
        "median_step_s": float(median),
        "iqr_step_s": float(q75 - q25),
        "mean_step_s": float(samples.mean()),
        "min_step_s": float(samples.min()),
        "max_step_s": float(samples.max()),
        "images_per_s": images_per_step / float(median),
        # Throughput at the quartiles of step time: the IQR of images/s, for error bars.
        "images_per_s_q25": images_per_step / float(q75),
        "images_per_s_q75": images_per_step / float(q25),
    }
