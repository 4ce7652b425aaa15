"""Harness overhead: the runner's timed loop against a bare loop of the same step, same process.

Rounds alternate the two loops (harness, bare, harness, bare, ...) so that drifts in machine load
hit both alike. The harness adds a clock read, a list append and a device synchronisation per
step; on these models that must stay within 2% of the bare loop's time.
"""

from __future__ import annotations

import time

import numpy as np

from benchmarks import frameworks
from benchmarks.cell import CellConfig
from benchmarks.measure.timing import summarize, time_steps

TOLERANCE = 0.02


def bare_loop(step, sync, count: int) -> float:
    """Seconds for ``count`` steps with a single synchronisation at the end."""
    sync()
    start = time.perf_counter()
    for _ in range(count):
        step()
    sync()
    return time.perf_counter() - start


def measure_overhead(config: CellConfig, rounds: int = 7) -> dict:
    cell = frameworks.get(config.framework).prepare(config)
    time_steps(cell.step, cell.sync, config.warmup)
    harness_walls, bare_walls, medians = [], [], []
    for _ in range(rounds):
        start = time.perf_counter()
        steps = time_steps(cell.step, cell.sync, config.steps)
        harness_walls.append(time.perf_counter() - start)
        medians.append(summarize(steps, cell.images_per_step)["images_per_s"])
        bare_walls.append(bare_loop(cell.step, cell.sync, config.steps))
    ratios = np.asarray(harness_walls) / np.asarray(bare_walls) - 1
    images = config.steps * cell.images_per_step
    return {
        "overhead": float(np.median(ratios)),
        "overhead_per_round": ratios.tolist(),
        "overhead_iqr": float(np.subtract(*np.percentile(ratios, [75, 25]))),
        "harness_images_per_s": images / float(np.median(harness_walls)),
        "harness_median_images_per_s": float(np.median(medians)),
        "bare_images_per_s": images / float(np.median(bare_walls)),
        "tolerance": TOLERANCE,
        "within_tolerance": bool(np.median(ratios) <= TOLERANCE),
    }


def selfcheck_cells(names: list[str], variant: str, batch_size: int, steps: int) -> list[CellConfig]:
    """One cell per framework and mode, each framework in its default split formulation."""
    from benchmarks.cell import MODES

    return [
        CellConfig(name, variant, mode, batch_size, frameworks.default_split_impl(name, variant), steps=steps, warmup=2)
        for name in names
        for mode in MODES
    ]
