"""Timing a step function honestly: each step bracketed by device synchronisation, every sample kept."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np


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
