"""The statistics of ``bench.py ab``: base and new measured in alternation, judged pair by pair.

The unit of evidence is the pair: one process of each side. As whole processes (``benchmarks.paired``) they run
back to back and the pair's log ratio, log(new images/s / base images/s), comes from each process's median step
time. Interleaved (``benchmarks.interleave``) they are two step servers loaded side by side taking turns, and the
pair's log ratio is the median over its turns of each turn pair's ratio. What the machine did at that moment moves
both sides alike, and a fresh pair of processes each time makes the offset between two processes part of the
noise the test sees, as it is, instead of a difference it would take for the builds'.

- change: the median of the per-pair ratios, new over base, minus one.
- test and interval: Student's t on the mean per-pair log ratio (a paired t-test), n - 1 degrees of freedom.
- detectable: the smallest change the test catches with 80% probability at its level,
  ``(t[1 - level/2, n-1] + t[0.8, n-1]) * s / sqrt(n)`` on the log scale (``s``: the SD of the log ratios),
  the paired form of ``reports.statistics``' formula. "no change" only when it is within the threshold.
- the sequential rule: pairs are added while cells are undecided (``benchmarks.paired.run_pairs``), and every
  round from ``min_pairs`` to ``max_pairs`` is a look. A cell's share of ``alpha`` is ``alpha / cells``
  (Bonferroni over cells), spent as Haybittle and Peto spend it: a small part (``interim_share``, 20%) over the
  interim looks, where only a clear change stops a cell early, and the rest at the cell's final look, where it
  stops (the budget, ``max_pairs``, or "no change"). By the union bound the chance that a comparison of a build
  with itself calls any cell a regression or an improvement, at any look, is at most ``alpha`` (5% by default).
  Spending it all evenly over the looks (Bonferroni over looks) made the final test, which decides nearly every
  cell, 7 times stricter (eight cells, nine looks) and its detectable change about a third larger. An interim
  look stops a cell as "no change" only when its final verdict would be "no change" there: a stop can never
  choose the moment a test first looks significant. A cell that stops at the budget or at ``max_pairs`` while
  still undecided stays "inconclusive: need about N pairs".

Verdicts and exit codes are ``reports.compare``'s: regression when the cell lost more than the threshold AND the
test is significant; improved likewise; a cell that works in base and fails in new is broken.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats

from benchmarks.results import ResultRow
from reports.compare import COMPARE_KEYS, Doubt, JudgedCells, Outcome, Verdict
from reports.findings import busy_machine_findings
from reports.load import frame_from_rows
from reports.statistics import MAX_REPEATS, POWER

DEFAULT_MIN_PAIRS = 3  # two degrees of freedom: the fewest a t interval over pairs can be built from
DEFAULT_MAX_PAIRS = 10


@dataclass(frozen=True)
class SequentialRule:
    """How many looks a comparison may take, and the level of each: see the module docstring."""

    alpha: float = 0.05
    cells: int = 1
    min_pairs: int = DEFAULT_MIN_PAIRS
    max_pairs: int = DEFAULT_MAX_PAIRS
    every: int = 1  # pairs added between looks (interleaved steps add several pairs a look)
    interim_share: float = 0.2  # of a cell's alpha, spent over the looks before its last

    def __post_init__(self) -> None:
        if self.min_pairs < 2:
            raise ValueError(f"--min-pairs must be at least 2 (one degree of freedom), got {self.min_pairs}")
        if self.max_pairs < self.min_pairs:
            raise ValueError(f"--max-pairs ({self.max_pairs}) must be at least --min-pairs ({self.min_pairs})")
        if self.every < 1:
            raise ValueError(f"pairs between looks must be at least 1, got {self.every}")
        if not 0 <= self.interim_share < 1:
            raise ValueError(f"the interim share of alpha must be in [0, 1), got {self.interim_share}")

    @property
    def looks(self) -> int:
        """Looks at ``min_pairs``, every ``every`` pairs after it, and at ``max_pairs``."""
        return -(-(self.max_pairs - self.min_pairs) // self.every) + 1

    @property
    def final_level(self) -> float:
        """The two-sided level of one cell's test at its final look."""
        if self.looks == 1:
            return self.alpha / max(self.cells, 1)
        return self.alpha * (1 - self.interim_share) / max(self.cells, 1)

    @property
    def interim_level(self) -> float:
        """The two-sided level of one cell's test at each look before its final one."""
        if self.looks == 1:
            return 0.0
        return self.alpha * self.interim_share / (max(self.cells, 1) * (self.looks - 1))

    def text(self) -> str:
        looks = f"{self.looks} look{'s' if self.looks != 1 else ''} ({self.min_pairs} to {self.max_pairs} pairs"
        every = f", every {self.every}" if self.every > 1 else ""
        interim = f"{self.interim_level:.2g} before a cell's last look, " if self.looks > 1 else ""
        return (
            f"{looks}{every}) x {self.cells} cell{'s' if self.cells != 1 else ''}, each test at {interim}"
            f"{self.final_level:.2g} at its last: at most {self.alpha:.0%} chance that an A/A comparison flags any cell"
        )


@dataclass(frozen=True)
class PairedTest:
    """One cell's pairs: the change, its interval, the test and what it could detect."""

    pairs: int
    change: float  # median per-pair ratio, new over base, minus one
    low: float  # the t interval of the mean ratio, as changes
    high: float
    p_value: float
    detectable: float
    spread: float  # SD of the per-pair log ratios


def _quantiles(level: float, df: int) -> tuple[float, float]:
    return float(stats.t.ppf(1 - level / 2, df)), float(stats.t.ppf(POWER, df))


def detectable_log(spread: float, pairs: int, level: float) -> float:
    """The smallest log change a paired t-test at ``level`` catches with 80% probability with ``pairs`` pairs."""
    crit, power = _quantiles(level, pairs - 1)
    return (crit + power) * spread / math.sqrt(pairs)


def paired_test(log_ratios: Sequence[float], level: float) -> PairedTest:
    """The paired t-test of ``log_ratios`` (log new/base throughput per pair) at two-sided ``level``."""
    ratios = np.asarray(log_ratios, dtype=float)
    n = ratios.size
    change = float(np.expm1(np.median(ratios))) if n else math.nan
    if n < 2:
        return PairedTest(n, change, math.nan, math.nan, math.nan, math.nan, math.nan)
    mean, spread = float(ratios.mean()), float(ratios.std(ddof=1))
    crit, _ = _quantiles(level, n - 1)
    half = crit * spread / math.sqrt(n)
    detectable = math.expm1(detectable_log(spread, n, level))
    if spread == 0:
        p = 1.0 if mean == 0 else 0.0
    else:
        p = float(2 * stats.t.sf(abs(mean) / (spread / math.sqrt(n)), n - 1))
    return PairedTest(n, change, math.expm1(mean - half), math.expm1(mean + half), p, detectable, spread)


def pairs_needed(spread: float, threshold: float, level: float) -> int | None:
    """The fewest pairs whose detectable change, with this spread, is within ``threshold``; None when unknown."""
    if math.isnan(spread) or threshold <= 0:
        return None
    target = math.log1p(threshold)
    if detectable_log(spread, MAX_REPEATS, level) > target:
        return MAX_REPEATS
    low, high = 2, MAX_REPEATS  # the detectable change falls as pairs are added: bisect for the first within it
    while low < high:
        middle = (low + high) // 2
        low, high = (low, middle) if detectable_log(spread, middle, level) <= target else (middle + 1, high)
    return low


def verdict(test: PairedTest, threshold: float, rule: SequentialRule, final: bool = True) -> Verdict:
    """A cell's verdict from its pairs (``reports.compare``'s outcomes and words).

    ``final``: at the cell's last look, at the rule's final level. Before it (``final=False``) a cell is decided
    only by a change significant at the interim level, or when its final verdict here would be "no change"; else it
    is inconclusive and gets more pairs. ``test`` is taken at the final level (its interval and detectable change).
    """
    if test.pairs < rule.min_pairs or math.isnan(test.p_value):
        return Verdict(Outcome.INCONCLUSIVE, Doubt.TOO_FEW_PAIRS, repeats=rule.min_pairs)
    beyond = abs(test.change) > threshold
    if beyond and test.p_value < (rule.final_level if final else rule.interim_level):
        return Verdict(Outcome.REGRESSION if test.change < 0 else Outcome.IMPROVED)
    if test.detectable <= threshold and not (beyond and test.p_value < rule.final_level):
        return Verdict(Outcome.NO_CHANGE)  # what the last look would say too
    if not final:
        return Verdict(Outcome.INCONCLUSIVE, Doubt.NEEDS_PAIRS)
    needed = pairs_needed(test.spread, threshold, rule.final_level)
    if needed is None or needed >= MAX_REPEATS:
        return Verdict(Outcome.INCONCLUSIVE, Doubt.TOO_NOISY, repeats=MAX_REPEATS)
    return Verdict(Outcome.INCONCLUSIVE, Doubt.NEEDS_PAIRS, repeats=needed)


def _median_time(times: object, batch: float, images_per_s: float) -> float:
    """A process's median step time: from its steps, else from its row's own images/s."""
    if isinstance(times, list) and times:
        return float(np.median(times))
    return batch / images_per_s if images_per_s and not math.isnan(images_per_s) else math.nan


def turn_medians(times: object, turn_steps: object) -> np.ndarray | None:
    """Each turn's median step time, from a row's steps in turn order; None for a row without turns."""
    try:
        steps = int(turn_steps)
    except (TypeError, ValueError):  # None, or NaN where a frame mixes rows with and without turns
        return None
    if not isinstance(times, list) or steps < 1:
        return None
    turns = len(times) // steps
    if turns < 1:
        return None
    return np.median(np.asarray(times[: turns * steps], dtype=float).reshape(turns, steps), axis=1)


def pair_log_ratio(base: pd.Series, new: pd.Series) -> float:
    """One pair's log(new images/s / base images/s).

    Interleaved, a pair is two step servers that took turns: the median over the pair's turns of log(base turn /
    new turn), each turn its median step time; the median keeps one turn that a spike hit from moving the pair.
    As whole processes: from each process's median step time.
    """
    base_turns, new_turns = turn_medians(base["step_times_s"], base["turn_steps"]), None
    if base_turns is not None:
        new_turns = turn_medians(new["step_times_s"], new["turn_steps"])
    if base_turns is None or new_turns is None:
        return float(np.log(base["time"] / new["time"]))
    turns = min(len(base_turns), len(new_turns))
    return float(np.median(np.log(base_turns[:turns] / new_turns[:turns])))


def pair_frame(rows: Sequence[ResultRow]) -> pd.DataFrame:
    """One line per (cell, pair) with both sides' status and median step time, from the rows of ``bench.py ab``."""
    rows = [row for row in rows if row.paired]
    if not rows:
        return pd.DataFrame()
    frame = frame_from_rows(list(rows))
    frame["cell_key"] = [row.paired.get("cell_key", row.key) for row in rows]
    frame["pairing"] = [row.paired.get("mode", "processes") for row in rows]
    frame["turn_steps"] = [row.paired.get("turn_steps") for row in rows]
    frame["time"] = [
        _median_time(t, b, r)
        for t, b, r in zip(frame["step_times_s"], frame["batch_size"], frame["images_per_s"], strict=True)
    ]
    return frame


@dataclass
class PairedResult(JudgedCells):
    """Per-cell figures and verdicts of a paired comparison, and what makes it doubtful."""

    cells: pd.DataFrame
    rule: SequentialRule
    threshold: float = 0.05
    warnings: list[str] = field(default_factory=list)
    wall_s: float = math.nan
    stopped: str = ""
    modes: tuple[str, ...] = ()  # how the pairs were taken: "interleaved-steps", "processes"

    @property
    def open_keys(self) -> set[str]:
        """Cells that another pair could still decide."""
        if self.cells.empty:
            return set()
        return {
            key
            for key, v in zip(self.cells["cell_key"], self.cells["outcome"], strict=True)
            if v.outcome is Outcome.INCONCLUSIVE
        }

    def counts(self) -> dict[str, int]:
        outcomes = [v.outcome.value for v in self.cells.get("outcome", [])]
        return pd.Series(outcomes, dtype=object).value_counts().to_dict()

    def summary(self) -> dict:
        """The comparison as plain data (``bench.py ab --summary FILE``): per cell and as a whole."""
        keep = [*COMPARE_KEYS, "pairs", "base_images_per_s", "new_images_per_s", "change", "low", "high",
                "p_value", "detectable", "spread", "verdict"]  # fmt: skip
        cells = [] if self.cells.empty else self.cells[keep].to_dict(orient="records")
        for cell in cells:
            for name, value in cell.items():
                if isinstance(value, float) and math.isnan(value):
                    cell[name] = None
                elif isinstance(value, np.generic):
                    cell[name] = value.item()
        return {
            "threshold": self.threshold,
            "alpha": self.rule.alpha,
            "interim_level": self.rule.interim_level,
            "final_level": self.rule.final_level,
            "min_pairs": self.rule.min_pairs,
            "max_pairs": self.rule.max_pairs,
            "wall_s": None if math.isnan(self.wall_s) else self.wall_s,
            "stopped": self.stopped,
            "modes": list(self.modes),
            "regression": self.has_regressions,
            "counts": self.counts(),
            "warnings": self.warnings,
            "cells": cells,
        }


def _failed_verdict(base_ok: pd.Series, new_ok: pd.Series) -> Verdict | None:
    """A cell whose new side fails where its base works is broken; the reverse fixed; both failing, failed."""
    if (base_ok & ~new_ok).any():
        return Verdict(Outcome.BROKEN)
    if not (base_ok & new_ok).any():
        if (~base_ok & new_ok).any():
            return Verdict(Outcome.FIXED)
        return Verdict(Outcome.FAILED_IN_BOTH)
    return None


def judge_pairs(rows: Sequence[ResultRow], threshold: float, rule: SequentialRule, final: bool = True) -> PairedResult:
    """Every cell of a paired comparison's rows, judged by its complete pairs (see the module docstring).

    ``final``: each cell at its last look (the comparison's verdicts); else at an interim look (``still_open``).
    """
    frame = pair_frame(rows)
    if frame.empty:
        return PairedResult(pd.DataFrame(), rule, threshold)
    warnings = [
        f"{side}: {line.removeprefix('WARNING: ')}"
        for side in ("base", "new")
        for line in busy_machine_findings(frame[frame["side"] == side])
    ]
    lines = []
    for key, group in frame.groupby("cell_key", sort=False):
        sides = {side: part.set_index("pair") for side, part in group.groupby("side")}
        if set(sides) != {"base", "new"}:
            continue  # a pair cut off before its second side: nothing to pair yet
        base, new = sides["base"], sides["new"]
        both = base.index.intersection(new.index)
        base, new = base.loc[both], new.loc[both]
        base_ok = (base["status"] == "ok") & base["time"].notna()
        new_ok = (new["status"] == "ok") & new["time"].notna()
        complete = base_ok & new_ok
        log_ratios = [pair_log_ratio(base.loc[pair], new.loc[pair]) for pair in base.index[complete]]
        test = paired_test(log_ratios, rule.final_level)
        judged = _failed_verdict(base_ok, new_ok) or verdict(test, threshold, rule, final)
        first = group.iloc[0]
        batch = float(first["batch_size"])
        lines.append(
            {
                **{name: first[name] for name in COMPARE_KEYS},
                "cell_key": key,
                "pairs": test.pairs,
                "base_images_per_s": batch / float(np.median(base.loc[base_ok, "time"])) if base_ok.any() else math.nan,
                "new_images_per_s": batch / float(np.median(new.loc[new_ok, "time"])) if new_ok.any() else math.nan,
                "change": test.change,
                "low": test.low,
                "high": test.high,
                "p_value": test.p_value,
                "detectable": test.detectable,
                "spread": test.spread,
                "outcome": judged,
                "verdict": judged.text(),
                "note": "" if complete.all() else f"{int((~complete).sum())} pair(s) with a failed side",
                "pairing": "/".join(sorted(set(group["pairing"]))),
            }
        )
    cells = pd.DataFrame(lines)
    if not cells.empty:
        rank = cells["outcome"].map(lambda v: v.outcome.rank)
        cells = cells.iloc[rank.argsort(kind="stable")].reset_index(drop=True)
    modes = tuple(sorted({row.paired.get("mode", "processes") for row in rows if row.paired}))
    return PairedResult(cells, rule, threshold, warnings, modes=modes)


def still_open(rows: Sequence[ResultRow], threshold: float, rule: SequentialRule) -> set[str]:
    """The keys of the cells another pair could decide (``benchmarks.paired.run_pairs`` asks after each round)."""
    return judge_pairs(rows, threshold, rule, final=False).open_keys
