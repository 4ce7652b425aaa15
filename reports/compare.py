"""Regression check: the same cells in two sets of results, with a significance test per cell.

Cells are matched on framework, variant, split formulation, mode, batch size and device setup
(repeats and seeds are pooled). For each, the change in median images/s, and a two-sided
Mann-Whitney U test (``scipy.stats.mannwhitneyu``) of the per-step times, pooled over repeats:
two-sided because a cell may get faster as well as slower, the direction coming from the median.
A cell regressed when it lost more than ``threshold`` of its base throughput AND p < ``alpha``;
it improved when it gained more than ``threshold`` AND p < ``alpha``; otherwise "no change". A
cell that succeeded in the base and fails in the new results is "broken", which counts as a
regression.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from rich.console import Console
from rich.table import Table
from scipy.stats import mannwhitneyu

from reports.load import load_results
from reports.render import format_value, markdown_table
from reports.tables import ReportTable, summarize_cells

COMPARE_KEYS = ["framework", "variant", "split_impl", "fast_path", "mode", "batch_size", "device_setup"]
REGRESSED = ("regression", "broken")
VERDICT_STYLE = {"regression": "red", "broken": "red", "improved": "green", "fixed": "green"}


@dataclass
class ComparisonResult:
    """Per-cell verdicts, cells present on one side only, and what makes the comparison doubtful."""

    cells: pd.DataFrame
    added: pd.DataFrame
    removed: pd.DataFrame
    warnings: list[str] = field(default_factory=list)
    threshold: float = 0.05
    alpha: float = 0.05

    @property
    def has_regressions(self) -> bool:
        return bool(not self.cells.empty and self.cells["verdict"].isin(REGRESSED).any())

    @property
    def regressions(self) -> pd.DataFrame:
        return self.cells[self.cells["verdict"].isin(REGRESSED)] if not self.cells.empty else self.cells

    def counts(self) -> dict[str, int]:
        counts = self.cells["verdict"].value_counts().to_dict() if not self.cells.empty else {}
        return {**counts, "added": len(self.added), "removed": len(self.removed)}

    def headline(self) -> str:
        parts = ", ".join(f"{n} {verdict}" for verdict, n in self.counts().items())
        return (
            f"{len(self.cells)} cells compared ({parts}). Regression: more than {self.threshold:.0%} slower AND "
            f"p < {self.alpha:g} in a two-sided Mann-Whitney U test of the per-step times (pooled over repeats)."
        )

    def table(self) -> ReportTable:
        columns = {
            **{k: k for k in COMPARE_KEYS},
            "base_images_per_s": "base img/s",
            "new_images_per_s": "new img/s",
            "change": "change",
            "p_value": "p",
            "base_steps": "steps base",
            "new_steps": "steps new",
            "verdict": "verdict",
            "note": "note",
        }
        frame = self.cells[list(columns)].rename(columns=columns) if not self.cells.empty else pd.DataFrame()
        frame = frame.rename(
            columns={"batch_size": "batch", "device_setup": "devices", "split_impl": "impl", "fast_path": "fast path"}
        )
        return ReportTable(
            "Comparison",
            frame,
            [self.headline()],
            {"change": "+.1%", "p": ".2g"},
            empty_text="No cell is in both sets of results.",
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
            console.print(f"[yellow]warning:[/] {warning}", highlight=False)
        table = self.table()
        rich_table = Table(title="Comparison: base -> new", title_justify="left")
        for column in table.frame.columns:
            rich_table.add_column(
                str(column),
                justify="right" if column in ("batch", "base img/s", "new img/s", "change", "p") else "left",
            )
        for row in table.frame.itertuples(index=False):
            cells = [format_value(v, table.formats.get(c)) for c, v in zip(table.frame.columns, row, strict=True)]
            style = VERDICT_STYLE.get(row[table.frame.columns.get_loc("verdict")])
            rich_table.add_row(*cells, style=style)
        console.print(rich_table)
        for title, frame in (("added", self.added), ("removed", self.removed)):
            for line in frame.itertuples(index=False):
                console.print(f"{title}: {' '.join(str(v) for v in line)}", highlight=False)
        console.print(self.headline(), highlight=False)


def parse_threshold(text: str) -> float:
    """'5%' or '0.05' as the fraction 0.05; a bare number of 1 or more is refused as ambiguous."""
    stripped = text.strip()
    try:
        value = float(stripped.removesuffix("%")) / (100 if stripped.endswith("%") else 1)
    except ValueError:
        raise ValueError(f"threshold {text!r} is not a number; write it as 5% or 0.05") from None
    if not 0 <= value < 1:
        raise ValueError(f"threshold {text!r} must be a fraction below 1; write it as 5% or 0.05")
    return value


def _min_p(n_base: int, n_new: int) -> float:
    """The smallest two-sided p the exact Mann-Whitney U test can give with these sample sizes."""
    return 2 / math.comb(n_base + n_new, n_base) if n_base and n_new else 1.0


def judge(base: pd.Series, new: pd.Series, threshold: float, alpha: float) -> dict:
    """Change, p-value and verdict of one cell."""
    base_ok, new_ok = not math.isnan(base["images_per_s"]), not math.isnan(new["images_per_s"])
    line = {
        "base_images_per_s": base["images_per_s"],
        "new_images_per_s": new["images_per_s"],
        "base_steps": len(base["samples"]),
        "new_steps": len(new["samples"]),
        "change": math.nan,
        "p_value": math.nan,
        "note": "",
    }
    if not base_ok or not new_ok:
        verdict = {(True, False): "broken", (False, True): "fixed"}.get((base_ok, new_ok), "failed in both")
        line["note"] = f"base {base['status']}, new {new['status']}"
        return {**line, "verdict": verdict}
    line["change"] = new["images_per_s"] / base["images_per_s"] - 1
    if not base["samples"] or not new["samples"]:
        return {**line, "verdict": "untested", "note": "no per-step samples on one side"}
    line["p_value"] = float(mannwhitneyu(base["samples"], new["samples"], alternative="two-sided").pvalue)
    significant = line["p_value"] < alpha
    if line["change"] < -threshold and significant:
        verdict = "regression"
    elif line["change"] > threshold and significant:
        verdict = "improved"
    else:
        verdict = "no change"
    if _min_p(line["base_steps"], line["new_steps"]) >= alpha:
        line["note"] = f"too few steps for p < {alpha:g}; measure more steps"
    return {**line, "verdict": verdict}


def _indexed(frame: pd.DataFrame) -> pd.DataFrame:
    """Cells pooled over repeats, indexed by their comparison key."""
    cells = summarize_cells(frame, COMPARE_KEYS)
    return cells.set_index(COMPARE_KEYS, drop=False) if not cells.empty else cells


def _machines(frame: pd.DataFrame) -> list[str]:
    return list(dict.fromkeys(frame["machine_id"])) if not frame.empty else []


def compare(
    base_paths: Sequence[Path], new_paths: Sequence[Path], threshold: float = 0.05, alpha: float = 0.05
) -> ComparisonResult:
    """Compare the cells of ``new_paths`` against ``base_paths``; see the module docstring for the rule."""
    if not 0 <= threshold < 1:
        raise ValueError(f"threshold must be a fraction in [0, 1), got {threshold}")
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
        return ComparisonResult(pd.DataFrame(), added, removed, warnings, threshold, alpha)
    common = [key for key in base_cells.index if key in new_cells.index]
    lines = [
        {
            **dict(zip(COMPARE_KEYS, key, strict=True)),
            **judge(base_cells.loc[key], new_cells.loc[key], threshold, alpha),
        }
        for key in common
    ]
    added = new_cells.loc[[k for k in new_cells.index if k not in base_cells.index], COMPARE_KEYS]
    removed = base_cells.loc[[k for k in base_cells.index if k not in new_cells.index], COMPARE_KEYS]
    order = {"broken": 0, "regression": 1, "failed in both": 2, "untested": 3, "improved": 4, "fixed": 5}
    cells = pd.DataFrame(lines)
    cells = cells.sort_values("verdict", key=lambda v: v.map(order).fillna(9), kind="stable").reset_index(drop=True)
    return ComparisonResult(
        cells, added.reset_index(drop=True), removed.reset_index(drop=True), warnings, threshold, alpha
    )
