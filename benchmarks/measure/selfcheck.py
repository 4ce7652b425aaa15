"""Harness overhead: the runner's timed loop against a bare loop of the same step, same process.

Rounds alternate the two loops (harness, bare, harness, bare, ...) so that drifts in machine load
hit both alike. The harness adds a clock read, a list append and a device synchronisation per
step; on these models that must stay within 2% of the bare loop's time.

The verdict accounts for the rounds' own spread: the median overhead carries a distribution-free
95% interval (order statistics, ``benchmarks.measure.timing.median_interval_ranks``). "within" when the
whole interval is at or below the limit, "over" when it is wholly above, and otherwise more rounds
are run while the time budget lasts; still undecided, the verdict is "inconclusive": the machine
was too noisy to tell, which is not a failure of the harness.
"""

from __future__ import annotations

import time

import numpy as np

from benchmarks import frameworks
from benchmarks.cell import CellConfig
from benchmarks.measure.timing import median_interval_ranks, summarize, time_steps

TOLERANCE = 0.02
MIN_ROUNDS = 7  # the fewest whose order statistics give a 95% interval of the median with room to spare
MAX_ROUNDS = 60
DEFAULT_BUDGET_S = 60.0


def bare_loop(step, sync, count: int) -> float:
    """Seconds for ``count`` steps with a single synchronisation at the end."""
    sync()
    start = time.perf_counter()
    for _ in range(count):
        step()
    sync()
    return time.perf_counter() - start


def overhead_interval(ratios: list[float]) -> tuple[float, float]:
    """The median overhead's 95% distribution-free interval; (-inf, inf) with too few rounds."""
    ranks = median_interval_ranks(len(ratios))
    if ranks is None:
        return -np.inf, np.inf
    ordered = sorted(ratios)
    return ordered[ranks[0]], ordered[ranks[1]]


def verdict(low: float, high: float, tolerance: float = TOLERANCE) -> str:
    """'within', 'over' or 'inconclusive' from where the interval lies against the limit."""
    if high <= tolerance:
        return "within"
    if low > tolerance:
        return "over"
    return "inconclusive"


def measure_overhead(
    config: CellConfig, rounds: int = MIN_ROUNDS, budget_s: float | None = None, max_rounds: int = MAX_ROUNDS
) -> dict:
    """At least ``rounds`` alternating rounds; more, up to ``max_rounds``, while undecided and within budget.

    ``budget_s`` defaults to the cell's ``time_budget_s`` (``selfcheck --time-budget``); 0 runs ``rounds`` rounds only.
    """
    budget = budget_s if budget_s is not None else config.time_budget_s
    cell = frameworks.get(config.framework).prepare(config)
    time_steps(cell.step, cell.sync, config.warmup)
    harness_walls, bare_walls, medians = [], [], []
    started = time.perf_counter()
    while True:
        start = time.perf_counter()
        steps = time_steps(cell.step, cell.sync, config.steps)
        harness_walls.append(time.perf_counter() - start)
        medians.append(summarize(steps, cell.images_per_step)["images_per_s"])
        bare_walls.append(bare_loop(cell.step, cell.sync, config.steps))
        ratios = (np.asarray(harness_walls) / np.asarray(bare_walls) - 1).tolist()
        low, high = overhead_interval(ratios)
        done = len(ratios) >= rounds and verdict(low, high) != "inconclusive"
        if done or len(ratios) >= max_rounds or (len(ratios) >= rounds and time.perf_counter() - started > budget):
            break
    images = config.steps * cell.images_per_step
    decided = verdict(low, high)
    return {
        "overhead": float(np.median(ratios)),
        "overhead_per_round": ratios,
        "overhead_iqr": float(np.subtract(*np.percentile(ratios, [75, 25]))),
        "overhead_low": float(low) if np.isfinite(low) else None,
        "overhead_high": float(high) if np.isfinite(high) else None,
        "rounds": len(ratios),
        "budget_s": budget,
        "harness_images_per_s": images / float(np.median(harness_walls)),
        "harness_median_images_per_s": float(np.median(medians)),
        "bare_images_per_s": images / float(np.median(bare_walls)),
        "tolerance": TOLERANCE,
        "verdict": decided,
        "within_tolerance": decided == "within",
    }


def selfcheck_cells(
    names: list[str], variant: str, batch_size: int, steps: int, time_budget_s: float = DEFAULT_BUDGET_S
) -> list[CellConfig]:
    """One cell per framework and mode, each framework in its default split formulation."""
    from benchmarks.cell import MODES

    return [
        CellConfig(
            name,
            variant,
            mode,
            batch_size,
            frameworks.default_split_impl(name, variant),
            steps=steps,
            warmup=2,
            time_budget_s=time_budget_s,
        )
        for name in names
        for mode in MODES
    ]
