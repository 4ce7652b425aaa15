"""Reports as Markdown (pipe tables for a terminal or a PR comment) and as one self-contained HTML page, and the
one table model (``ReportTable``) every report table is, rendered alike in Markdown, HTML and the terminal.

Both open with the findings (``reports.findings``), then the environment block. Numbers get a
precision that suits their size; missing figures show as an em dash, never as zero; failed cells
show their status. The HTML page has
inline CSS and embeds its plots as base64 ``data:`` URIs, so it needs no other file or network.
"""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from numbers import Integral, Real

import pandas as pd
from rich.markup import escape
from rich.table import Table

from reports.findings import findings_html, findings_markdown
from reports.plots import Plot

MISSING = "—"
ENVIRONMENT_FIELDS = {
    "machine_id": "machine id",
    "cpu": "CPU",
    "gpus": "GPUs",
    "gpu_driver": "GPU driver",
    "platform": "platform",
    "python": "Python",
    "frameworks": "frameworks",
    "commits": "commit",
    "dates": "measured (UTC)",
    "runs": "runs",
    "rows": "rows",
    "sources": "files",
}


@dataclass
class ReportTable:
    """A titled table with the notes that say how to read it; ``formats`` maps a column to a format spec.

    One table, three renderings: ``markdown_table``, ``html_table`` and ``terminal_table``. ``styles``, one per
    row (or empty), colours a row in the terminal (e.g. "red" for a regression).
    """

    title: str
    frame: pd.DataFrame
    notes: list[str] = field(default_factory=list)
    formats: dict[str, str] = field(default_factory=dict)
    empty_text: str = "No data for this table in these results."
    styles: list[str | None] = field(default_factory=list)


@dataclass
class Section:
    """A heading and its content in order: tables, plots and paragraphs."""

    title: str
    items: list[ReportTable | Plot | str] = field(default_factory=list)


@dataclass
class Report:
    title: str
    environments: pd.DataFrame
    warnings: list[str]
    sections: list[Section]
    generated_at: str = ""
    findings: list[str] = field(default_factory=list)


def format_value(value: object, spec: str | None = None) -> str:
    """A cell as text: missing as an em dash, integers with separators, floats to a sensible precision."""
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return MISSING
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, Integral):
        return format(int(value), spec or ",")
    if isinstance(value, Real):
        number = float(value)
        if spec:
            return format(number, spec)
        size = abs(number)
        if size >= 100 or (number.is_integer() and size >= 10):
            return f"{number:,.0f}"
        if size >= 10:
            return f"{number:.1f}"
        if size >= 1:
            return f"{number:.2f}"
        return "0" if number == 0 else f"{number:.3g}"
    text = str(value)
    return text if text else " "


def _visible(table: ReportTable) -> pd.DataFrame:
    """The frame to show: the environment column only when there are several environments."""
    frame = table.frame
    if "environment" in frame and frame["environment"].nunique(dropna=False) <= 1:
        frame = frame.drop(columns=["environment"])
    return frame


def _is_numeric(series: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series)


def _whole(series: pd.Series) -> bool:
    """A float column whose figures are all whole numbers (an int column with a gap): shown as integers."""
    values = pd.to_numeric(series, errors="coerce").dropna() if _is_numeric(series) else pd.Series([], dtype=float)
    return pd.api.types.is_float_dtype(series) and len(values) > 0 and bool((values % 1 == 0).all())


def _cells(table: ReportTable, frame: pd.DataFrame) -> list[list[str]]:
    specs = [table.formats.get(c) or (",.0f" if _whole(frame[c]) else None) for c in frame.columns]
    return [
        [format_value(value, spec) for spec, value in zip(specs, row, strict=True)]
        for row in frame.itertuples(index=False)
    ]


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def terminal_table(table: ReportTable, title: str | None = None, right: Sequence[str] = ()) -> Table:
    """The table for a terminal (rich): the same cells as Markdown and HTML, numbers (and the ``right`` columns)
    right-aligned, rows in their ``styles``; text from files is escaped so rich prints it as it is."""
    frame = _visible(table)
    out = Table(title=table.title if title is None else title, title_justify="left")
    for column in frame.columns:
        out.add_column(str(column), justify="right" if _is_numeric(frame[column]) or column in right else "left")
    styles = table.styles or [None] * len(frame)
    for row, style in zip(_cells(table, frame), styles, strict=True):
        out.add_row(*map(escape, row), style=style)
    return out


def markdown_table(table: ReportTable, level: int = 3) -> str:
    """A titled pipe table with its notes; numeric columns right-aligned."""
    lines = [f"{'#' * level} {table.title}", ""]
    frame = _visible(table)
    if frame.empty:
        lines.append(f"_{table.empty_text}_")
    else:
        header = [_md_escape(str(c)) for c in frame.columns]
        align = ["---:" if _is_numeric(frame[c]) else "---" for c in frame.columns]
        lines += ["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"]
        lines += ["| " + " | ".join(_md_escape(c) for c in row) + " |" for row in _cells(table, frame)]
    lines += [""] + [f"> {note}" for note in table.notes]
    return "\n".join(lines).rstrip() + "\n"


def environment_markdown(environments: pd.DataFrame) -> str:
    """The environment block: one column per machine."""
    if environments.empty:
        return "## Environment\n\n_No results._\n"
    return markdown_table(environment_table(environments), level=2)


def environment_table(environments: pd.DataFrame) -> ReportTable:
    """Machine, software and commit of each environment, one column per environment."""
    fields = [f for f in ENVIRONMENT_FIELDS if f in environments]
    frame = pd.DataFrame(
        {"": [ENVIRONMENT_FIELDS[f] for f in fields]}
        | {str(row["environment"]): [row[f] for f in fields] for _, row in environments.iterrows()}
    )
    return ReportTable("Environment", frame.astype(object))


def render_markdown(report: Report, image_dir: str = "") -> str:
    """The whole report as Markdown; plots link to PNG files under ``image_dir`` (relative)."""
    parts = [f"# {report.title}", ""]
    if report.generated_at:
        parts += [f"Generated {report.generated_at}.", ""]
    if report.findings:
        parts.append(findings_markdown(report.findings))
    parts.append(environment_markdown(report.environments))
    parts += [f"> **warning:** {w}" for w in report.warnings]
    for section in report.sections:
        parts += ["", f"## {section.title}", ""]
        for item in section.items:
            if isinstance(item, ReportTable):
                parts += [markdown_table(item), ""]
            elif isinstance(item, Plot):
                if item.png:
                    parts += [f"![{item.title}]({image_dir}{item.name})", ""]
                else:
                    parts += [f"_Plot skipped: {item.title}: {item.skipped_because}._", ""]
            else:
                parts += [item, ""]
    return "\n".join(parts).rstrip() + "\n"


CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1400px; padding: 0 1em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 0.3em; font-size: 0.85em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.5em; }
th { background: #f0f0f0; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
td.missing { color: #999; text-align: center; }
td.bad { color: #b00; font-weight: bold; }
.note { color: #555; font-size: 0.85em; margin: 0.2em 0; }
.warning { background: #fff4e5; border-left: 4px solid #e69500; padding: 0.4em 0.8em; }
.skipped { color: #777; font-style: italic; }
img { max-width: 100%; }
"""

BAD_WORDS = ("failed", "oom", "crashed", "killed", "timeout", "missing", "regression", "no one-device")


def html_table(table: ReportTable, level: int = 3) -> str:
    frame = _visible(table)
    out = [f"<h{level}>{html.escape(table.title)}</h{level}>"]
    if frame.empty:
        out.append(f'<p class="skipped">{html.escape(table.empty_text)}</p>')
    else:
        numeric = [_is_numeric(frame[c]) for c in frame.columns]
        out.append("<table><thead><tr>" + "".join(f"<th>{html.escape(str(c))}</th>" for c in frame.columns))
        out.append("</tr></thead><tbody>")
        for row in _cells(table, frame):
            cells = []
            for text, is_number in zip(row, numeric, strict=True):
                kind = "missing" if text == MISSING else "num" if is_number else ""
                if not is_number and any(word in text.lower() for word in BAD_WORDS):
                    kind = "bad"
                cells.append(
                    f'<td class="{kind}">{html.escape(text)}</td>' if kind else f"<td>{html.escape(text)}</td>"
                )
            out.append("<tr>" + "".join(cells) + "</tr>")
        out.append("</tbody></table>")
    out += [f'<p class="note">{html.escape(note)}</p>' for note in table.notes]
    return "\n".join(out)


def html_plot(plot: Plot) -> str:
    if not plot.png:
        return f'<p class="skipped">Plot skipped: {html.escape(plot.title)}: {html.escape(plot.skipped_because)}.</p>'
    data = base64.b64encode(plot.png).decode("ascii")
    title = html.escape(plot.title)
    return f'<figure><img src="data:image/png;base64,{data}" alt="{title}"><figcaption>{title}</figcaption></figure>'


def render_html(report: Report) -> str:
    """The whole report as one HTML page with inline CSS and embedded plots."""
    body = [f"<h1>{html.escape(report.title)}</h1>"]
    if report.generated_at:
        body.append(f"<p>Generated {html.escape(report.generated_at)}.</p>")
    if report.findings:
        body.append(findings_html(report.findings))
    if report.environments.empty:
        body.append("<h2>Environment</h2><p>No results.</p>")
    else:
        body.append(html_table(environment_table(report.environments), level=2))
    body += [f'<p class="warning"><b>warning:</b> {html.escape(w)}</p>' for w in report.warnings]
    for section in report.sections:
        body.append(f"<h2>{html.escape(section.title)}</h2>")
        for item in section.items:
            if isinstance(item, ReportTable):
                body.append(html_table(item))
            elif isinstance(item, Plot):
                body.append(html_plot(item))
            else:
                body.append(f"<p>{html.escape(item)}</p>")
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{html.escape(report.title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n"
        + "\n".join(body)
        + "\n</body>\n</html>\n"
    )
