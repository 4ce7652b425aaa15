"""``bench.py ab`` in words and tables: the headline, and the paired comparison as Markdown or in the terminal. The
figures and verdicts are ``reports.paired``'s; the tables are drawn by ``reports.render``."""

from __future__ import annotations

import math

from rich.console import Console
from rich.markup import escape

from reports.compare import COMPARE_KEYS
from reports.compare_report import verdict_table
from reports.paired import PairedResult
from reports.render import ReportTable, markdown_table, terminal_table

COLUMNS = {
    **{key: key for key in COMPARE_KEYS},
    "pairs": "pairs",
    "base_images_per_s": "base img/s",
    "new_images_per_s": "new img/s",
    "change": "change",
    "interval": "interval",
    "detectable": "detectable",
    "p_value": "p",
    "spread": "pair spread",
    "verdict": "verdict",
    "note": "note",
}
FORMATS = {"change": "+.1%", "detectable": ".1%", "p": ".2g", "pair spread": ".1%"}
STOPPED = {
    "decided": "every cell was decided",
    "budget": "the time budget was spent (--budget)",
    "max pairs": "the cells reached --max-pairs",
}


def _interval(low: float, high: float) -> str:
    return "" if math.isnan(low) or math.isnan(high) else f"[{low:+.1%}, {high:+.1%}]"


PAIR_WORDS = {
    "interleaved-steps": "a pair is a new worker process of base and one of new, loaded side by side and taking "
    "turns of steps (its ratio: the median over its turns)",
    "processes": "a pair is one process of base and one of new, run back to back",
}


def _pair_words(modes: tuple[str, ...]) -> str:
    words = " and ".join(PAIR_WORDS[mode] for mode in modes if mode in PAIR_WORDS) or PAIR_WORDS["processes"]
    return f"{'Where interleaved, ' if len(modes) > 1 else ''}{words[0].upper()}{words[1:]}, in alternating order"


def headline(result: PairedResult) -> str:
    """The comparison in one paragraph: the counts, when it stopped, and how to read it."""
    if result.cells.empty:
        return "Nothing to compare: no cell has a pair of rows (base and new) yet."
    parts = ", ".join(f"{n} {outcome}" for outcome, n in result.counts().items())
    stopped = f" It stopped adding pairs when {STOPPED[result.stopped]}." if result.stopped in STOPPED else ""
    took = f" {result.wall_s:.0f} s in all." if not math.isnan(result.wall_s) else ""
    return (
        f"{len(result.cells)} cells compared pair by pair ({parts}).{stopped}{took} "
        f"{_pair_words(result.modes)}; change: the median of the per-pair ratios "
        f"(new over base); interval: the paired t interval of the mean ratio at the level of a cell's last "
        f"look. Regression: more than {result.threshold:.0%} slower AND significant; detectable: the smallest "
        f"change the pairs would catch 80% of the time; above {result.threshold:.0%} a cell without a "
        f"significant change is inconclusive, not unchanged. Sequential rule: {result.rule.text()}."
    )


def paired_table(result: PairedResult) -> ReportTable:
    cells = result.cells
    if not cells.empty:
        cells = cells.assign(interval=[_interval(lo, hi) for lo, hi in zip(cells["low"], cells["high"], strict=True)])
    empty = "Nothing to compare: no cell has a pair of rows yet."
    return verdict_table("Paired comparison", cells, COLUMNS, [headline(result)], FORMATS, empty)


def to_markdown(result: PairedResult) -> str:
    parts = [f"> **warning:** {w}" for w in result.warnings]
    parts.append(markdown_table(paired_table(result), level=2))
    return "\n".join(parts)


def render(result: PairedResult, console: Console) -> None:
    for warning in result.warnings:
        console.print(f"[yellow]warning:[/] {escape(warning)}", highlight=False)
    console.print(terminal_table(paired_table(result), title="Paired comparison: base -> new"))
    console.print(headline(result), highlight=False)
