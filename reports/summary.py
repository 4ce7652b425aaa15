"""Results rows as a tidy pandas table, and the throughput summary ``bench.py run`` prints.

The table is ``reports.load``'s (one line per row, failed cells with missing figures), restricted
to throughput cells; the full reports are built by ``reports.build``.
"""

from __future__ import annotations

import pandas as pd
from rich.console import Console

from reports.cell_summary import spread_note, summarize_cells, throughput_rows
from reports.load import frame_from_rows
from reports.render import ReportTable, terminal_table


def rows_to_frame(rows: list[dict]) -> pd.DataFrame:
    """One line per throughput row: its configuration, status and figures (missing stays missing)."""
    return throughput_rows(frame_from_rows(rows))


def _cell_text(group: pd.DataFrame) -> str:
    ok = group[group["status"] == "ok"]
    if ok.empty:
        return group["status"].iloc[0]
    median = ok["images_per_s"].median()
    spread = (ok["images_per_s_q75"] - ok["images_per_s_q25"]).median() / 2
    return f"{median:,.1f} ± {spread:,.1f}"


def throughput_table(frame: pd.DataFrame) -> ReportTable:
    """images/s (median ± half the IQR) per cell, the frameworks side by side.

    Split variants name the formulation each framework ran (grouped or towers); fast paths
    other than plain fp32 are named too.
    """
    keys = ["variant", "mode", "batch_size", "device_setup"]
    frameworks = sorted(frame["framework"].unique())
    lines = []
    for (variant, mode, batch, setup), group in frame.groupby(keys, sort=False):
        line = {"variant": variant, "mode": mode, "batch": str(batch), "devices": setup}
        for framework in frameworks:
            parts = []
            mine = group[group["framework"] == framework]
            for (impl, fast), part in mine.groupby(["split_impl", "fast_path"], sort=False):
                names = [impl] if "split" in variant else []
                names += [fast] if fast != "fp32" else []
                parts.append(_cell_text(part) + (f" ({'+'.join(names)})" if names else ""))
            line[framework] = "\n".join(parts)
        lines.append(line)
    title = "Throughput, images/s (median ± half IQR of per-step rates)"
    return ReportTable(title, pd.DataFrame(lines), [spread_note(summarize_cells(frame))])


def render_throughput(frame: pd.DataFrame, console: Console) -> None:
    """The throughput table in the terminal, and the run-to-run spread it saw."""
    if frame.empty:
        console.print("no throughput results to show")
        return
    table = throughput_table(frame)
    console.print(terminal_table(table, right=["batch", *frame["framework"].unique()]))
    console.print(table.notes[0], highlight=False)


def render_sweep(rows: list, console: Console, best: bool = False) -> None:
    """What ``bench.py run`` shows at the end: the throughput table, the --best table when asked, the findings."""
    from reports.best import render_best
    from reports.findings import build_findings, render_findings

    frame = rows_to_frame(rows)
    render_throughput(frame, console)
    if best:
        render_best(frame, console)
    render_findings(build_findings(frame), console)
