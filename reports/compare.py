"""Regression check: the same cells in two sets of results, judged process by process.

Cells are matched on framework, variant, split formulation, fast path, mode, batch size and
device setup. Each repeat of a cell is its own worker process, and the steps inside one process
are not independent samples of a rerun, so the unit of evidence is a process (see
``reports.statistics``):

- change: the cell's images/s from the median of its per-process median step times, new over base;
- p: Student's t-test on the log per-process medians, Holm-adjusted over the cells compared, so
  that an A/A comparison of many cells stays below ``alpha`` as a whole;
- detectable: the smallest change the test would have caught with 80% probability, from the
  pooled spread of the per-process medians and the number of processes on each side, at the
  Bonferroni level ``alpha / cells`` (Holm's strictest step).

Two invocations of the same build on a shared machine also differ as a whole: every cell of one
run can be 10-20% slower than every cell of the next (the machine's other tenants, its clock,
its memory placement), which processes of one run cannot show. So, with ``MIN_CELLS_FOR_SHIFT``
cells or more, compare takes the median change over the cells as the whole run's shift and
tests each cell against it ("vs run"): a cell that moved with the run did not change, a cell that
moved differently did. The shift itself is judged against ``drift``, how far a whole run of one
build moves between invocations here (``DEFAULT_DRIFT``, measured on shared CPUs; lower it on a
dedicated machine): beyond it, every cell that lost more than ``threshold`` is a "regression
(whole run)". With fewer cells the shift cannot be told from a change, and only changes beyond
``drift`` count.

Verdicts (:class:`Verdict`, an outcome with the figures that explain it): "regression" when the
cell lost more than ``threshold`` of its base throughput, and of the run's shift, AND the adjusted
p < ``alpha``; "improved" likewise for a gain; otherwise "no change" only when the detectable
change is within ``threshold``, else "inconclusive: need about N repeats" (N processes per side,
from the same spread). With one process on each side the run-to-run spread is unknown and the
verdict is inconclusive. A cell that succeeded in the base and fails in the new results is
"broken", which counts as a regression.

This module computes; ``reports.compare_report`` writes the words and renders the tables.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

import numpy as np
import pandas as pd

from reports.cell_summary import summarize_cells, throughput_rows
from reports.findings import busy_machine_findings
from reports.load import load_results
from reports.statistics import MAX_REPEATS, cell_median, holm, process_test, repeats_needed

COMPARE_KEYS = ["framework", "variant", "split_impl", "fast_path", "mode", "batch_size", "device_setup"]
MIN_CELLS_FOR_SHIFT = 4  # cells with a change on both sides before their median is taken as the run's shift
# How far a whole run of one build moves between two invocations: up to 24% (median over 8 cells) in
# four A/A pairs of ``run --quick`` run minutes apart on a shared 2-core cloud VM, 30% an hour apart
# (README, "How far two runs of one build differ"). Users set their own machine's with --drift.
DEFAULT_DRIFT = 0.25
MIN_REPEATS = 3  # processes per side for a first estimate of the run-to-run spread


class Outcome(Enum):
    """What became of a cell, in the order a comparison lists them (regressions first)."""

    BROKEN = "broken"
    REGRESSION = "regression"
    REGRESSION_WHOLE_RUN = "regression (whole run)"
    FAILED_IN_BOTH = "failed in both"
    NOT_MEASURED = "not measured"  # a row ran (status ok) but has no time above zero on one side or both
    UNTESTED = "untested"
    IMPROVED = "improved"
    IMPROVED_WHOLE_RUN = "improved (whole run)"
    FIXED = "fixed"
    INCONCLUSIVE = "inconclusive"
    NO_CHANGE = "no change"

    @property
    def regressed(self) -> bool:
        return self in (Outcome.BROKEN, Outcome.REGRESSION, Outcome.REGRESSION_WHOLE_RUN)

    @property
    def improved(self) -> bool:
        return self in (Outcome.FIXED, Outcome.IMPROVED, Outcome.IMPROVED_WHOLE_RUN)

    @property
    def rank(self) -> int:
        """Where the cell sorts: broken, regressions, failures, untested, improvements, inconclusive, no change."""
        return RANKS[self]


RANKS = {Outcome.BROKEN: 0, Outcome.REGRESSION: 1, Outcome.REGRESSION_WHOLE_RUN: 1, Outcome.FAILED_IN_BOTH: 2}
RANKS |= {
    Outcome.NOT_MEASURED: 3,
    Outcome.UNTESTED: 3,
    Outcome.IMPROVED: 4,
    Outcome.IMPROVED_WHOLE_RUN: 4,
    Outcome.FIXED: 5,
}
RANKS |= {Outcome.INCONCLUSIVE: 7, Outcome.NO_CHANGE: 9}


class Doubt(Enum):
    """Why an inconclusive cell could not be judged."""

    ONE_PROCESS = "one process per side"  # the run-to-run spread was not measured
    NEEDS_REPEATS = "needs repeats"  # the test could not see a change of the threshold's size
    TOO_NOISY = "too noisy"  # ... and would need more than MAX_REPEATS processes
    WITHIN_DRIFT = "within drift"  # too few cells to know the run's shift, and a change a whole run can make
    OPPOSED = "opposed"  # it changed one way against its base, the other way against the run
    TOO_FEW_PAIRS = "too few pairs"  # bench.py ab: fewer pairs than the first look (reports.paired)
    NEEDS_PAIRS = "needs pairs"  # bench.py ab: the pairs could not see a change of the threshold's size


@dataclass(frozen=True)
class Verdict:
    """A cell's outcome, and for an inconclusive one why, with the figure that says so."""

    outcome: Outcome
    doubt: Doubt | None = None
    # NEEDS_REPEATS: about how many processes per side (NEEDS_PAIRS: pairs); ONE_PROCESS, TOO_NOISY, TOO_FEW_PAIRS:
    # the bound
    repeats: int | None = None
    drift: float = math.nan  # WITHIN_DRIFT: the allowance
    change: float = math.nan  # OPPOSED: against the base ...
    vs_run: float = math.nan  # ... and against the run

    def text(self) -> str:
        """The verdict in words, as tables print it (e.g. "inconclusive: need about 12 repeats")."""
        reason = {
            Doubt.ONE_PROCESS: f"need at least {self.repeats} repeats",
            Doubt.NEEDS_REPEATS: f"need about {self.repeats} repeats",
            Doubt.TOO_NOISY: f"need over {self.repeats} repeats (too noisy here)",
            Doubt.WITHIN_DRIFT: f"within the {self.drift:.0%} drift between invocations (compare "
            f"{MIN_CELLS_FOR_SHIFT}+ cells)",
            Doubt.OPPOSED: f"{self.change:+.0%} against base, {self.vs_run:+.0%} against the run",
            Doubt.TOO_FEW_PAIRS: f"need at least {self.repeats} pairs",
            Doubt.NEEDS_PAIRS: f"need about {self.repeats} pairs",
        }.get(self.doubt)
        return f"{self.outcome.value}: {reason}" if reason else self.outcome.value


class JudgedCells:
    """What ``compare`` and ``ab`` both answer from their per-cell verdicts (``cells["outcome"]``)."""

    cells: pd.DataFrame

    @property
    def regressions(self) -> pd.DataFrame:
        if self.cells.empty:
            return self.cells
        return self.cells[[verdict.outcome.regressed for verdict in self.cells["outcome"]]]

    @property
    def has_regressions(self) -> bool:
        return not self.regressions.empty


@dataclass
class CompareResult(JudgedCells):
    """Per-cell figures and verdicts, cells present on one side only, and what makes the comparison doubtful.

    ``cells`` has one line per cell in both: its keys, the figures of ``judge``, ``outcome`` (a Verdict) and
    ``verdict`` (its words).
    """

    cells: pd.DataFrame
    added: pd.DataFrame
    removed: pd.DataFrame
    warnings: list[str] = field(default_factory=list)
    threshold: float = 0.05
    alpha: float = 0.05
    drift: float = DEFAULT_DRIFT
    shift: float = math.nan  # the whole run's change (median over cells); NaN with too few cells

    @property
    def nothing_to_compare(self) -> bool:
        """No cell is in both sets of results."""
        return self.cells.empty

    def counts(self) -> dict[str, int]:
        """Cells per outcome (every inconclusive one counted as "inconclusive"), added, removed."""
        outcomes = [verdict.outcome.value for verdict in self.cells.get("outcome", [])]
        return {**pd.Series(outcomes, dtype=object).value_counts().to_dict(), "added": len(self.added),
                "removed": len(self.removed)}  # fmt: skip


def parse_threshold(text: str, what: str = "threshold") -> float:
    """'5%' or '0.05' as the fraction 0.05; a bare number of 1 or more is refused as ambiguous."""
    stripped = text.strip()
    try:
        value = float(stripped.removesuffix("%")) / (100 if stripped.endswith("%") else 1)
    except ValueError:
        raise ValueError(f"{what} {text!r} is not a number; write it as 5% or 0.05") from None
    if not math.isfinite(value):
        raise ValueError(f"{what} {text!r} is not a finite number; write it as 5% or 0.05")
    if value < 0:
        raise ValueError(f"{what} {text!r} is negative; a {what} is a size of change, 0 or more, e.g. 5%")
    if value >= 1:
        raise ValueError(f"{what} {text!r} must be a fraction below 1; write it as 5% or 0.05")
    return value


def _cell_rate(cell: pd.Series, processes: list[list[float]]) -> float:
    """Images/s from the median of per-process medians; the rows' own figure without samples."""
    median = cell_median(processes)
    return cell["batch_size"] / median if processes and median > 0 else cell["images_per_s"]


def judge(
    base: pd.Series,
    new: pd.Series,
    threshold: float,
    alpha: float,
    base_processes: list[list[float]] | None = None,
    new_processes: list[list[float]] | None = None,
    cells: int = 1,
    shift: float = 0.0,
    floor: float = 0.0,
) -> dict:
    """Change, unadjusted p, detectable change and a provisional verdict of one cell (see the module docstring).

    ``cells`` is the size of the family: the detectable change is computed at ``alpha / cells``.
    ``shift`` is the whole run's change the cell is tested against; ``floor`` a change a verdict
    must also exceed (the drift allowance, when there are too few cells to know the shift).
    ``compare`` then applies Holm's adjustment over all cells and settles the verdicts.
    The line carries the Verdict as ``outcome`` and its words as ``verdict``.
    """
    base_processes = base_processes if base_processes is not None else [base["samples"]] * bool(base["samples"])
    new_processes = new_processes if new_processes is not None else [new["samples"]] * bool(new["samples"])
    base_ok, new_ok = not math.isnan(base["images_per_s"]), not math.isnan(new["images_per_s"])
    line = {
        "base_images_per_s": _cell_rate(base, base_processes) if base_ok else math.nan,
        "new_images_per_s": _cell_rate(new, new_processes) if new_ok else math.nan,
        "base_processes": len(base_processes),
        "new_processes": len(new_processes),
        "base_steps": sum(len(p) for p in base_processes),
        "new_steps": sum(len(p) for p in new_processes),
        "change": math.nan,
        "vs_run": math.nan,
        "p_value": math.nan,
        "detectable": math.nan,
        "spread": math.nan,
        "note": "",
    }
    if not base_ok or not new_ok:
        return _without_figure(line, base["status"] if not base_ok else "", new["status"] if not new_ok else "")
    line["change"] = line["new_images_per_s"] / line["base_images_per_s"] - 1
    line["vs_run"] = (1 + line["change"]) / (1 + shift) - 1
    if not base_processes or not new_processes:
        return _settled({**line, "note": "no per-step samples on one side"}, Verdict(Outcome.UNTESTED))
    test = process_test(base_processes, new_processes, alpha / max(cells, 1), math.log1p(shift))
    line.update(p_value=test.p_value, detectable=test.detectable, spread=test.spread)
    if math.isnan(test.p_value):
        line["note"] = "one process per side: steps within a process are not independent samples of a rerun"
        return _settled(line, Verdict(Outcome.INCONCLUSIVE, Doubt.ONE_PROCESS, repeats=MIN_REPEATS))
    return _settled(line, _verdict(line, test.p_value, threshold, alpha, cells, floor))


def _without_figure(line: dict, base_status: str, new_status: str) -> dict:
    """A cell with no images/s on a side (whose status is given; "" for a measured side).

    A side without a figure either failed (its status says how) or ran, status ok, without a time above zero: it
    was not measured (``reports.load`` reads a zero time as missing), which is neither a failure nor a regression.
    Only a side that failed where the other ran is broken or fixed.
    """
    failed = {side: status not in ("", "ok") for side, status in (("base", base_status), ("new", new_status))}
    words = {"": "ok", "ok": "ok without a measured time"}
    if failed["base"] and failed["new"]:
        outcome = Outcome.FAILED_IN_BOTH
    elif failed["new"]:
        outcome = Outcome.BROKEN
    elif failed["base"] and not new_status:
        outcome = Outcome.FIXED
    else:
        outcome = Outcome.NOT_MEASURED
    if base_status == new_status == "ok":
        line["note"] = "ok in both, without a measured time"
    else:
        line["note"] = f"base {words.get(base_status, base_status)}, new {words.get(new_status, new_status)}"
    return _settled(line, Verdict(outcome))


def _settled(line: dict, verdict: Verdict) -> dict:
    """The line with its verdict, as data (``outcome``) and as words (``verdict``)."""
    line.update(outcome=verdict, verdict=verdict.text())
    return line


def _verdict(line: dict, p_value: float, threshold: float, alpha: float, cells: int, floor: float = 0.0) -> Verdict:
    significant = p_value < alpha
    bar = max(threshold, floor)
    if line["change"] < -bar and line["vs_run"] < -threshold and significant:
        return Verdict(Outcome.REGRESSION)
    if line["change"] > bar and line["vs_run"] > threshold and significant:
        return Verdict(Outcome.IMPROVED)
    if significant and abs(line["change"]) > threshold and abs(line["vs_run"]) > threshold:
        if floor > 0:
            return Verdict(Outcome.INCONCLUSIVE, Doubt.WITHIN_DRIFT, drift=floor)
        # e.g. slower than its base but faster than the whole run: each reading says the opposite
        return Verdict(Outcome.INCONCLUSIVE, Doubt.OPPOSED, change=line["change"], vs_run=line["vs_run"])
    if line["detectable"] > threshold:
        needed = repeats_needed(line["spread"], threshold, alpha / max(cells, 1))
        if needed is None or needed >= MAX_REPEATS:
            return Verdict(Outcome.INCONCLUSIVE, Doubt.TOO_NOISY, repeats=MAX_REPEATS)
        return Verdict(Outcome.INCONCLUSIVE, Doubt.NEEDS_REPEATS, repeats=needed)
    return Verdict(Outcome.NO_CHANGE)


def _settle(lines: list[dict], threshold: float, alpha: float, floor: float) -> None:
    """Holm-adjust the cells' p-values as one family and decide the verdicts that rest on them."""
    tested = [i for i, line in enumerate(lines) if not math.isnan(line["p_value"])]
    adjusted = holm([lines[i]["p_value"] for i in tested])
    for i, p in zip(tested, adjusted, strict=True):
        lines[i]["p_value"] = p
        _settled(lines[i], _verdict(lines[i], p, threshold, alpha, len(lines), floor))


def run_shift(changes: Sequence[float]) -> float:
    """The whole run's change: the median change over the cells (on the log scale); NaN with too few cells."""
    changes = [change for change in changes if not math.isnan(change)]
    if len(changes) < MIN_CELLS_FOR_SHIFT:
        return math.nan
    return float(np.expm1(np.median(np.log1p(changes))))


def _mark_whole_run(lines: list[dict], shift: float, threshold: float, drift: float) -> None:
    """A shift beyond the drift allowance: every cell that moved with it beyond the threshold says so."""
    if math.isnan(shift) or abs(shift) <= max(drift, threshold):
        return
    judged = (Outcome.REGRESSION, Outcome.IMPROVED, Outcome.BROKEN, Outcome.FIXED)
    for line in lines:
        if line["outcome"].outcome in judged or math.isnan(line["change"]):
            continue
        if shift < 0 and line["change"] < -threshold:
            _settled(line, Verdict(Outcome.REGRESSION_WHOLE_RUN))
        elif shift > 0 and line["change"] > threshold:
            _settled(line, Verdict(Outcome.IMPROVED_WHOLE_RUN))


def _processes(frame: pd.DataFrame) -> dict[tuple, list[list[float]]]:
    """Per cell key, the per-step times of each successful process (repeat) that has them."""
    rows = throughput_rows(frame)
    found: dict[tuple, list[list[float]]] = {}
    for key, group in rows.groupby(COMPARE_KEYS, sort=False, dropna=False):
        ok = group[group["status"] == "ok"]
        found[key] = [list(t) for t in ok["step_times_s"] if isinstance(t, list) and t]
    return found


def _indexed(frame: pd.DataFrame) -> pd.DataFrame:
    """Cells pooled over repeats, indexed by their comparison key."""
    cells = summarize_cells(frame, COMPARE_KEYS)
    return cells.set_index(COMPARE_KEYS, drop=False) if not cells.empty else cells


def _machines(frame: pd.DataFrame) -> list[str]:
    return list(dict.fromkeys(frame["machine_id"])) if not frame.empty else []


def compare(
    base_paths: Sequence[Path],
    new_paths: Sequence[Path],
    threshold: float = 0.05,
    alpha: float = 0.05,
    drift: float = DEFAULT_DRIFT,
) -> CompareResult:
    """Compare the cells of ``new_paths`` against ``base_paths``; see the module docstring for the rule."""
    if not 0 <= threshold < 1:
        raise ValueError(f"threshold must be a fraction in [0, 1), got {threshold}")
    if not 0 <= drift < 1:
        raise ValueError(f"drift must be a fraction in [0, 1), got {drift}")
    base, new = load_results(list(base_paths)), load_results(list(new_paths))
    warnings = [f"base: {w}" for w in base.warnings] + [f"new: {w}" for w in new.warnings]
    base_machines, new_machines = _machines(base.frame), _machines(new.frame)
    if set(base_machines) != set(new_machines):
        warnings.append(
            f"the environments differ: base measured on {', '.join(base_machines) or 'nothing'}, new on "
            f"{', '.join(new_machines) or 'nothing'}; a change may come from the machine, not the code"
        )
    for side, machines in (("base", base_machines), ("new", new_machines)):
        if len(machines) > 1:
            warnings.append(f"{side}: each cell pools the rows of {len(machines)} machines")
    for side, loaded in (("base", base), ("new", new)):
        warnings += [f"{side}: {line.removeprefix('WARNING: ')}" for line in busy_machine_findings(loaded.frame)]
    base_cells, new_cells = _indexed(base.frame), _indexed(new.frame)
    empty_keys = pd.DataFrame(columns=COMPARE_KEYS)
    if base_cells.empty or new_cells.empty:
        added = new_cells[COMPARE_KEYS].reset_index(drop=True) if not new_cells.empty else empty_keys
        removed = base_cells[COMPARE_KEYS].reset_index(drop=True) if not base_cells.empty else empty_keys
        return CompareResult(pd.DataFrame(), added, removed, warnings, threshold, alpha, drift)
    common = [key for key in base_cells.index if key in new_cells.index]
    added = new_cells.loc[[k for k in new_cells.index if k not in base_cells.index], COMPARE_KEYS]
    removed = base_cells.loc[[k for k in base_cells.index if k not in new_cells.index], COMPARE_KEYS]
    if not common:
        added, removed = added.reset_index(drop=True), removed.reset_index(drop=True)
        return CompareResult(pd.DataFrame(), added, removed, warnings, threshold, alpha, drift)
    base_processes, new_processes = _processes(base.frame), _processes(new.frame)

    shift = run_shift(
        [
            _cell_rate(new_cells.loc[key], new_processes.get(key, []))
            / _cell_rate(base_cells.loc[key], base_processes.get(key, []))
            - 1
            for key in common
        ]
    )
    floor = drift if math.isnan(shift) else 0.0
    lines = [
        {
            **dict(zip(COMPARE_KEYS, key, strict=True)),
            **judge(
                base_cells.loc[key],
                new_cells.loc[key],
                threshold,
                alpha,
                base_processes.get(key, []),
                new_processes.get(key, []),
                cells=len(common),
                shift=0.0 if math.isnan(shift) else shift,
                floor=floor,
            ),
        }
        for key in common
    ]
    _settle(lines, threshold, alpha, floor)
    _mark_whole_run(lines, shift, threshold, drift)
    cells = pd.DataFrame(lines)
    rank = cells["outcome"].map(lambda verdict: verdict.outcome.rank)
    cells = cells.iloc[rank.argsort(kind="stable")].reset_index(drop=True)
    return CompareResult(
        cells, added.reset_index(drop=True), removed.reset_index(drop=True), warnings, threshold, alpha, drift, shift
    )
