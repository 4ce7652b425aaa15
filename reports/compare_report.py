"""``bench.py compare`` in words and tables: the headline, the shift sentence, and the comparison as Markdown or in
the terminal. The figures and verdicts are ``reports.compare``'s; the tables are drawn by ``reports.render``."""

from __future__ import annotations

import math
from collections.abc import Sequence

import pandas as pd
from rich.console import Console
from rich.markup import escape

from reports.cell_summary import DISPLAY_NAMES
from reports.compare import COMPARE_KEYS, MIN_CELLS_FOR_SHIFT, CompareResult
from reports.render import ReportTable, markdown_table, terminal_table

COLUMNS = {
    **{key: key for key in COMPARE_KEYS},
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
FORMATS = {"change": "+.1%", "vs run": "+.1%", "detectable": ".1%", "p": ".2g", "spread": ".1%"}


def style(verdict) -> str | None:
    """A row's colour in the terminal: red for a regression, green for an improvement, yellow when inconclusive."""
    if verdict.outcome.regressed:
        return "red"
    if verdict.outcome.improved:
        return "green"
    return "yellow" if verdict.doubt else None


def shift_sentence(result: CompareResult) -> str:
    """What the whole run did, and how it was judged."""
    if math.isnan(result.shift):
        return (
            f"Fewer than {MIN_CELLS_FOR_SHIFT} cells: a change of the whole run (the machine between two "
            f"invocations) cannot be told from a change of a cell, so only changes beyond the {result.drift:.0%} "
            "drift allowance (--drift) count."
        )
    if abs(result.shift) > result.drift:
        return (
            f"The whole run moved by {result.shift:+.1%} (median over the cells), beyond the {result.drift:.0%} a "
            "run of one build drifts between invocations (--drift): the machine or a change that touches every "
            "cell."
        )
    return (
        f"The whole run moved by {result.shift:+.1%} (median over the cells), within the {result.drift:.0%} a run "
        "of one build drifts between invocations (--drift): each cell is judged against that shift."
    )


def headline(result: CompareResult) -> str:
    """The comparison in one paragraph: the counts, the run's shift, and how to read the verdicts."""
    if result.nothing_to_compare:
        return (
            f"Nothing to compare: no cell is in both sets of results (base has {len(result.removed)}, "
            f"new has {len(result.added)}; listed above)."
        )
    parts = ", ".join(f"{n} {outcome}" for outcome, n in result.counts().items())
    cells, threshold = len(result.cells), result.threshold
    return (
        f"{cells} cells compared ({parts}). {shift_sentence(result)} Regression: more than "
        f"{threshold:.0%} slower, also against the run's shift (vs run), AND p < {result.alpha:g} in a t-test "
        "of the log per-process medians against that shift (each repeat is a process; p Holm-adjusted over the "
        f"{cells} cells). detectable: the smallest change against the run's shift the test would "
        "catch 80% of the time with these processes (spread: SD of the log per-process medians); when it exceeds "
        f"{threshold:.0%}, a cell without a significant change is inconclusive, not unchanged: rerun both "
        "sides with the repeats it names."
    )


def verdict_table(
    title: str, cells: pd.DataFrame, columns: dict[str, str], notes: list[str], formats: dict, empty_text: str
) -> ReportTable:
    """One line per judged cell: ``columns`` of ``cells`` (renamed), coloured by its outcome; the note
    column only where some cell has a note. Shared by ``compare`` and ``ab``."""
    if cells.empty:
        return ReportTable(title, pd.DataFrame(), notes, formats, empty_text=empty_text)
    frame = cells[list(columns)].rename(columns=columns)
    if (frame["note"] == "").all():
        frame = frame.drop(columns="note")
    styles = [style(verdict) for verdict in cells["outcome"]]
    return ReportTable(title, frame.rename(columns=DISPLAY_NAMES), notes, formats, empty_text=empty_text, styles=styles)


def comparison_table(result: CompareResult) -> ReportTable:
    """One line per cell in both results: its figures and verdict, in the words of the headline."""
    empty = "Nothing to compare: no cell is in both sets of results."
    return verdict_table("Comparison", result.cells, COLUMNS, [headline(result)], FORMATS, empty)


def to_markdown(result: CompareResult) -> str:
    """The comparison as Markdown: warnings, the per-cell table, then added and removed cells."""
    parts = [f"> **warning:** {w}" for w in result.warnings]
    parts.append(markdown_table(comparison_table(result), level=2))
    for title, frame in (
        ("Only in the new results (added)", result.added),
        ("Only in the base results (removed)", result.removed),
    ):
        if not frame.empty:
            parts.append(markdown_table(ReportTable(title, frame), level=3))
    return "\n".join(parts)


def render(result: CompareResult, console: Console) -> None:
    """The comparison in the terminal, regressions in red; its warnings are the caller's to print (on stderr)."""
    if result.nothing_to_compare:
        for title, frame in (("base", result.removed), ("new", result.added)):
            console.print(f"{title} has {len(frame)} cells:", highlight=False)
            for line in frame.itertuples(index=False):
                console.print(f"  {_plain(line)}", highlight=False)
        console.print(headline(result), highlight=False)
        return
    console.print(terminal_table(comparison_table(result), title="Comparison: base -> new"))
    for title, frame in (("added", result.added), ("removed", result.removed)):
        for line in frame.itertuples(index=False):
            console.print(f"{title}: {_plain(line)}", highlight=False)
    console.print(headline(result), highlight=False)


def _plain(values: Sequence) -> str:
    """A cell's fields as one line, its names (read from a file) escaped so rich prints them as they are."""
    return escape(" ".join(str(value) for value in values))
