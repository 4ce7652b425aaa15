"""Process-level statistics: what a rerun would give, not what one process's steps say.

The steps inside one worker process are not independent samples of a rerun: thread placement,
memory layout and other tenants shift a whole process. So a cell measured in several processes
(``--repeats``) is summarised by its per-process medians, the way pyperf and asv spawn worker
processes and compare their values.

- Estimate: the median over processes of each process's median step time.
- Interval: a hierarchical (two-level) bootstrap, resampling processes with replacement and then
  each chosen process's steps with replacement; the cell estimate of each resample gives the
  percentiles. With one process it is the plain bootstrap of its steps, which sees no
  between-process spread: such intervals are flagged as steps-only.
- Test of two cells: Student's t-test on the log per-process medians (pooled variance: the same
  machine and cell on both sides), so the unit of evidence is a process.
- Minimum detectable change (MDC): the smallest true change in throughput the test would detect
  with probability ``POWER`` at level ``alpha`` with these processes:
  ``(t[1-alpha/2, df] + t[POWER, df]) * s * sqrt(1/n_base + 1/n_new)`` on the log scale, with ``s``
  the pooled standard deviation of the log per-process medians and ``df = n_base + n_new - 2``
  (the usual normal-approximation power formula with t quantiles).
- Repeats needed: the smallest equal number of processes per side whose MDC, with the same ``s``,
  is within a given change.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

POWER = 0.8  # the conventional 80% chance of detecting a change of the stated size
BOOTSTRAP_RESAMPLES = 2000
MAX_REPEATS = 1000  # "need about N repeats" is capped here: beyond it, the cell is too noisy to judge


def process_medians(processes: Sequence[Sequence[float]]) -> np.ndarray:
    """The median step time of each process that has samples."""
    return np.asarray([float(np.median(p)) for p in processes if len(p)], dtype=float)


def cell_median(processes: Sequence[Sequence[float]]) -> float:
    """The cell's step time: median of per-process medians (one process: its median)."""
    medians = process_medians(processes)
    return float(np.median(medians)) if medians.size else math.nan


def hierarchical_bootstrap(
    processes: Sequence[Sequence[float]], resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0
) -> np.ndarray:
    """``resamples`` bootstrap replicates of ``cell_median``: processes resampled, then their steps."""
    arrays = [np.asarray(p, dtype=float) for p in processes if len(p)]
    if not arrays:
        return np.full(resamples, math.nan)
    rng = np.random.default_rng(seed)
    count = len(arrays)
    # medians[j, b, k]: process j's steps resampled for slot k of replicate b.
    medians = np.stack([np.median(rng.choice(steps, (resamples, count, steps.size)), axis=2) for steps in arrays])
    chosen = rng.integers(0, count, (resamples, count))
    picked = medians[chosen, np.arange(resamples)[:, None], np.arange(count)[None, :]]
    return np.median(picked, axis=1)


def throughput_interval(
    processes: Sequence[Sequence[float]], images_per_step: float, level: float = 0.95, seed: int = 0
) -> tuple[float, float]:
    """(low, high) images/s of a cell at ``level``, from the hierarchical bootstrap."""
    times = hierarchical_bootstrap(processes, seed=seed)
    if np.isnan(times).all():
        return math.nan, math.nan
    tail = (1 - level) / 2 * 100
    slow, fast = np.percentile(times, [100 - tail, tail])
    return images_per_step / float(slow), images_per_step / float(fast)


def ratio_replicates(
    a: Sequence[Sequence[float]], b: Sequence[Sequence[float]], batch_a: float, batch_b: float, seed: int = 0
) -> np.ndarray:
    """Bootstrap replicates of b's throughput over a's, each side resampled hierarchically."""
    median_a = hierarchical_bootstrap(a, seed=seed)
    median_b = hierarchical_bootstrap(b, seed=seed + 1)
    return (batch_b / median_b) / (batch_a / median_a)


def process_spread(processes: Sequence[Sequence[float]]) -> float:
    """Run-to-run spread of a cell: standard deviation of log per-process medians (about a fraction); NaN under 2."""
    medians = process_medians(processes)
    return float(np.std(np.log(medians), ddof=1)) if medians.size >= 2 else math.nan


def _pooled_sd(base: np.ndarray, new: np.ndarray) -> float:
    logs_b, logs_n = np.log(base), np.log(new)
    squares = ((logs_b - logs_b.mean()) ** 2).sum() + ((logs_n - logs_n.mean()) ** 2).sum()
    return float(math.sqrt(squares / (base.size + new.size - 2)))


def _mdc_log(sd: float, n_base: int, n_new: int, alpha: float) -> float:
    df = n_base + n_new - 2
    return float((stats.t.ppf(1 - alpha / 2, df) + stats.t.ppf(POWER, df)) * sd * math.sqrt(1 / n_base + 1 / n_new))


@dataclass(frozen=True)
class ProcessTest:
    """Two cells compared process by process: p-value, detectable change and the spread behind them."""

    p_value: float
    detectable: float  # smallest throughput change (fraction) detectable with POWER; NaN when unknown
    spread: float  # pooled SD of log per-process medians; NaN when not measurable
    n_base: int
    n_new: int

    def repeats_needed(self, change: float, alpha: float) -> int | None:
        """Processes per side for an MDC within ``change``; None when the spread is unknown."""
        return repeats_needed(self.spread, change, alpha)


def repeats_needed(spread: float, change: float, alpha: float) -> int | None:
    """The smallest n (processes per side, at least 2) whose MDC with this spread is within ``change``."""
    if math.isnan(spread) or change <= 0:
        return None
    target = math.log1p(change)
    for n in range(2, MAX_REPEATS + 1):
        if _mdc_log(spread, n, n, alpha) <= target:
            return n
    return MAX_REPEATS


def process_test(
    base: Sequence[Sequence[float]], new: Sequence[Sequence[float]], alpha: float, expected_log_change: float = 0.0
) -> ProcessTest:
    """Student's t-test on log per-process medians and the MDC; see the module docstring.

    The null hypothesis is that the log throughput changed by ``expected_log_change`` (0: not at
    all; ``reports.compare`` passes the shift of the whole run). Needs three processes in all (one
    degree of freedom); with fewer, everything is NaN: one process per side says nothing about how
    much a rerun moves.
    """
    medians_b, medians_n = process_medians(base), process_medians(new)
    n_b, n_n = medians_b.size, medians_n.size
    if n_b < 1 or n_n < 1 or n_b + n_n < 3:
        return ProcessTest(math.nan, math.nan, math.nan, n_b, n_n)
    sd = _pooled_sd(medians_b, medians_n)
    mdc = math.expm1(_mdc_log(sd, n_b, n_n, alpha))
    # Step times: a throughput change of c moves the log times by -c.
    difference = np.log(medians_n).mean() - np.log(medians_b).mean() + expected_log_change
    if sd == 0:
        return ProcessTest(1.0 if difference == 0 else 0.0, 0.0, 0.0, n_b, n_n)
    t = difference / (sd * math.sqrt(1 / n_b + 1 / n_n))
    p = float(2 * stats.t.sf(abs(t), n_b + n_n - 2))
    return ProcessTest(p, mdc, sd, n_b, n_n)


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values (NaN stays NaN): a family of cells keeps its error rate at alpha."""
    indexed = [(p, i) for i, p in enumerate(p_values) if not math.isnan(p)]
    adjusted = [math.nan] * len(p_values)
    running = 0.0
    for rank, (p, i) in enumerate(sorted(indexed)):
        running = max(running, min(1.0, (len(indexed) - rank) * p))
        adjusted[i] = running
    return adjusted
