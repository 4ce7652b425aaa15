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

Verdicts: "regression" when the cell lost more than ``threshold`` of its base throughput, and
of the run's shift, AND the adjusted p < ``alpha``; "improved" likewise for a gain; otherwise
"no change" only when the detectable change is within ``threshold``, else "inconclusive: need
about N repeats" (N processes per side, from the same spread). With one process on each side
the run-to-run spread is unknown and the verdict is inconclusive. A cell that succeeded in the
base and fails in the new results is "broken", which counts as a regression.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from reports.load import load_results
from reports.render import format_value, markdown_table
from reports.statistics import MAX_REPEATS, cell_median, holm, process_test, repeats_needed
from reports.tables import ReportTable, summarize_cells, throughput_rows

COMPARE_KEYS = ["framework", "variant", "split_impl", "fast_path", "mode", "batch_size", "device_setup"]
REGRESSED = ("regression", "regression (whole run)", "broken")
MIN_CELLS_FOR_SHIFT = 4  # cells with a change on both sides before their median is taken as the run's shift
# How far a whole run of one build moves between two invocations: up to 24% (median over 8 cells) in
# four A/A pairs of ``run --quick`` run minutes apart on a shared 2-core cloud VM, 30% an hour apart
# (README, "How far two runs of one build differ"). Users set their own machine's with --drift.
DEFAULT_DRIFT = 0.25
VERDICT_STYLE = {
    "regression": "red",
    "regression (whole run)": "red",
    "broken": "red",
    "improved": "green",
    "improved (whole run)": "green",
    "fixed": "green",
}


@dataclass
class ComparisonResult:
    """Per-cell verdicts, cells present on one side only, and what makes the comparison doubtful."""

    cells: pd.DataFrame
    added: pd.DataFrame
    removed: pd.DataFrame
    warnings: list[str] = field(default_factory=list)
    threshold: float = 0.05
    alpha: float = 0.05
    drift: float = DEFAULT_DRIFT
    shift: float = math.nan  # the whole run's change (median over cells); NaN with too few cells

    @property
    def has_regressions(self) -> bool:
        return not self.regressions.empty

    @property
    def regressions(self) -> pd.DataFrame:
        return self.cells[self.cells["verdict"].isin(REGRESSED)] if not self.cells.empty else self.cells

    @property
    def nothing_to_compare(self) -> bool:
        """No cell is in both sets of results."""
        return self.cells.empty

    def counts(self) -> dict[str, int]:
        """Cells per verdict ("inconclusive: need about N repeats" counted as inconclusive), added, removed."""
        verdicts = self.cells["verdict"].str.split(":").str[0] if not self.cells.empty else pd.Series(dtype=str)
        return {**verdicts.value_counts().to_dict(), "added": len(self.added), "removed": len(self.removed)}

    def headline(self) -> str:
        if self.nothing_to_compare:
            return (
                f"Nothing to compare: no cell is in both sets of results (base has {len(self.removed)}, "
                f"new has {len(self.added)}; listed above)."
            )
        parts = ", ".join(f"{n} {verdict}" for verdict, n in self.counts().items())
        return (
            f"{len(self.cells)} cells compared ({parts}). {self.shift_sentence()} Regression: more than "
            f"{self.threshold:.0%} slower, also against the run's shift (vs run), AND p < {self.alpha:g} in a t-test "
            "of the log per-process medians against that shift (each repeat is a process; p Holm-adjusted over the "
            f"{len(self.cells)} cells). detectable: the smallest change against the run's shift the test would "
            "catch 80% of the time with these processes (spread: SD of the log per-process medians); when it exceeds "
            f"{self.threshold:.0%}, a cell without a significant change is inconclusive, not unchanged: rerun both "
            "sides with the repeats it names."
        )

    def shift_sentence(self) -> str:
        """What the whole run did, and how it was judged."""
        if math.isnan(self.shift):
            return (
                f"Fewer than {MIN_CELLS_FOR_SHIFT} cells: a change of the whole run (the machine between two "
                f"invocations) cannot be told from a change of a cell, so only changes beyond the {self.drift:.0%} "
                "drift allowance (--drift) count."
            )
        if abs(self.shift) > self.drift:
            return (
                f"The whole run moved by {self.shift:+.1%} (median over the cells), beyond the {self.drift:.0%} a "
                "run of one build drifts between invocations (--drift): the machine or a change that touches every "
                "cell."
            )
        return (
            f"The whole run moved by {self.shift:+.1%} (median over the cells), within the {self.drift:.0%} a run "
            "of one build drifts between invocations (--drift): each cell is judged against that shift."
        )

    def table(self) -> ReportTable:
        columns = {
            **{k: k for k in COMPARE_KEYS},
            "base_images_per_s": "base img/s",
            "new_images_per_s": "new img/s",
            "change": "change",
            "vs_run": "vs run",
            "detectable": "detectable",
            "p_value": "p",
            "base_processes": "procs base",
            "new_processes": "procs new",
            "spread": "spread",
            "verdict": "verdict",
            "note": "note",
        }
        frame = self.cells[list(columns)].rename(columns=columns) if not self.cells.empty else pd.DataFrame()
        if not frame.empty and (frame["note"] == "").all():
            frame = frame.drop(columns="note")
        frame = frame.rename(
            columns={"batch_size": "batch", "device_setup": "devices", "split_impl": "impl", "fast_path": "fast path"}
        )
        return ReportTable(
            "Comparison",
            frame,
            [self.headline()],
            {"change": "+.1%", "vs run": "+.1%", "detectable": ".1%", "p": ".2g", "spread": ".1%"},
            empty_text="Nothing to compare: no cell is in both sets of results.",
        )

    def to_markdown(self) -> str:
        """The comparison as Markdown: warnings, the per-cell table, then added and removed cells."""
        parts = [f"> **warning:** {w}" for w in self.warnings]
        parts.append(markdown_table(self.table(), level=2))
        for title, frame in (
            ("Only in the new results (added)", self.added),
            ("Only in the base results (removed)", self.removed),
        ):
            if not frame.empty:
                parts.append(markdown_table(ReportTable(title, frame), level=3))
        return "\n".join(parts)

    def render(self, console: Console) -> None:
        """The comparison in the terminal, regressions in red."""
        for warning in self.warnings:
            console.print(f"[yellow]warning:[/] {escape(warning)}", highlight=False)
        if self.nothing_to_compare:
            for title, frame in (("base", self.removed), ("new", self.added)):
                console.print(f"{title} has {len(frame)} cells:", highlight=False)
                for line in frame.itertuples(index=False):
                    console.print(f"  {_plain(line)}", highlight=False)
            console.print(self.headline(), highlight=False)
            return
        table = self.table()
        rich_table = Table(title="Comparison: base -> new", title_justify="left")
        for column in table.frame.columns:
            rich_table.add_column(
                str(column),
                justify="left"
                if column in (*COMPARE_KEYS, "impl", "fast path", "devices", "verdict", "note")
                else "right",
            )
        for row in table.frame.itertuples(index=False):
            cells = [
                escape(format_value(v, table.formats.get(c))) for c, v in zip(table.frame.columns, row, strict=True)
            ]
            verdict = row[table.frame.columns.get_loc("verdict")]
            style = VERDICT_STYLE.get(verdict, "yellow" if verdict.startswith("inconclusive") else None)
            rich_table.add_row(*cells, style=style)
        console.print(rich_table)
        for title, frame in (("added", self.added), ("removed", self.removed)):
            for line in frame.itertuples(index=False):
                console.print(f"{title}: {_plain(line)}", highlight=False)
        console.print(self.headline(), highlight=False)


def _plain(values: Sequence) -> str:
    """A cell's fields as one line, its names (read from a file) escaped so rich prints them as they are."""
    return escape(" ".join(str(value) for value in values))


def parse_threshold(text: str, what: str = "threshold") -> float:
    """'5%' or '0.05' as the fraction 0.05; a bare number of 1 or more is refused as ambiguous."""
    stripped = text.strip()
    try:
        value = float(stripped.removesuffix("%")) / (100 if stripped.endswith("%") else 1)
    except ValueError:
        raise ValueError(f"{what} {text!r} is not a number; write it as 5% or 0.05") from None
    if not 0 <= value < 1:
        raise ValueError(f"{what} {text!r} must be a fraction below 1; write it as 5% or 0.05")
    return value


MIN_REPEATS = 3  # processes per side for a first estimate of the run-to-run spread


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
        verdict = {(True, False): "broken", (False, True): "fixed"}.get((base_ok, new_ok), "failed in both")
        line["note"] = f"base {base['status']}, new {new['status']}"
        return {**line, "verdict": verdict}
    line["change"] = line["new_images_per_s"] / line["base_images_per_s"] - 1
    line["vs_run"] = (1 + line["change"]) / (1 + shift) - 1
    if not base_processes or not new_processes:
        return {**line, "verdict": "untested", "note": "no per-step samples on one side"}
    test = process_test(base_processes, new_processes, alpha / max(cells, 1), math.log1p(shift))
    line.update(p_value=test.p_value, detectable=test.detectable, spread=test.spread)
    if math.isnan(test.p_value):
        line["note"] = "one process per side: steps within a process are not independent samples of a rerun"
        return {**line, "verdict": f"inconclusive: need at least {MIN_REPEATS} repeats"}
    return {**line, "verdict": _verdict(line, test.p_value, threshold, alpha, cells, floor)}


def _verdict(line: dict, p_value: float, threshold: float, alpha: float, cells: int, floor: float = 0.0) -> str:
    significant = p_value < alpha
    bar = max(threshold, floor)
    if line["change"] < -bar and line["vs_run"] < -threshold and significant:
        return "regression"
    if line["change"] > bar and line["vs_run"] > threshold and significant:
        return "improved"
    if significant and abs(line["change"]) > threshold and abs(line["vs_run"]) > threshold:
        if floor > 0:
            more = f"compare {MIN_CELLS_FOR_SHIFT}+ cells"
            return f"inconclusive: within the {floor:.0%} drift between invocations ({more})"
        # e.g. slower than its base but faster than the whole run: each reading says the opposite
        return f"inconclusive: {line['change']:+.0%} against base, {line['vs_run']:+.0%} against the run"
    if line["detectable"] > threshold:
        needed = repeats_needed(line["spread"], threshold, alpha / max(cells, 1))
        if needed is None or needed >= MAX_REPEATS:
            return f"inconclusive: need over {MAX_REPEATS} repeats (too noisy here)"
        return f"inconclusive: need about {needed} repeats"
    return "no change"


def _settle(lines: list[dict], threshold: float, alpha: float, floor: float) -> None:
    """Holm-adjust the cells' p-values as one family and decide the verdicts that rest on them."""
    tested = [i for i, line in enumerate(lines) if not math.isnan(line["p_value"])]
    adjusted = holm([lines[i]["p_value"] for i in tested])
    for i, p in zip(tested, adjusted, strict=True):
        lines[i]["p_value"] = p
        lines[i]["verdict"] = _verdict(lines[i], p, threshold, alpha, len(lines), floor)


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
    for line in lines:
        if line["verdict"] in ("regression", "improved", "broken", "fixed") or math.isnan(line["change"]):
            continue
        if shift < 0 and line["change"] < -threshold:
            line["verdict"] = "regression (whole run)"
        elif shift > 0 and line["change"] > threshold:
            line["verdict"] = "improved (whole run)"


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
) -> ComparisonResult:
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
    base_cells, new_cells = _indexed(base.frame), _indexed(new.frame)
    empty_keys = pd.DataFrame(columns=COMPARE_KEYS)
    if base_cells.empty or new_cells.empty:
        added = new_cells[COMPARE_KEYS].reset_index(drop=True) if not new_cells.empty else empty_keys
        removed = base_cells[COMPARE_KEYS].reset_index(drop=True) if not base_cells.empty else empty_keys
        return ComparisonResult(pd.DataFrame(), added, removed, warnings, threshold, alpha, drift)
    common = [key for key in base_cells.index if key in new_cells.index]
    added = new_cells.loc[[k for k in new_cells.index if k not in base_cells.index], COMPARE_KEYS]
    removed = base_cells.loc[[k for k in base_cells.index if k not in new_cells.index], COMPARE_KEYS]
    if not common:
        added, removed = added.reset_index(drop=True), removed.reset_index(drop=True)
        return ComparisonResult(pd.DataFrame(), added, removed, warnings, threshold, alpha, drift)
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
    order = {
        "broken": 0,
        "regression": 1,
        "regression (whole run)": 1,
        "failed in both": 2,
        "untested": 3,
        "improved": 4,
        "improved (whole run)": 4,
        "fixed": 5,
    }
    cells = pd.DataFrame(lines)
    rank = cells["verdict"].map(lambda v: order.get(v, 7 if v.startswith("inconclusive") else 9))
    cells = cells.iloc[rank.argsort(kind="stable")].reset_index(drop=True)
    return ComparisonResult(
        cells, added.reset_index(drop=True), removed.reset_index(drop=True), warnings, threshold, alpha, drift, shift
    )
