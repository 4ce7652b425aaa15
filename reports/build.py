"""One call that turns results files into a report directory: Markdown, HTML, CSV, Parquet and plots."""

from __future__ import annotations

import importlib.util
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from benchmarks.results import ResultsFileError
from reports.best import best_table
from reports.cell_summary import CELL_KEYS, DISPLAY_NAMES, summarize_cells
from reports.findings import build_findings
from reports.load import LoadedFrame, flat_frame, load_results
from reports.plots import Plot, make_plots
from reports.render import Report, ReportTable, Section, render_html, render_markdown
from reports.tables import (
    accuracy_curves,
    accuracy_tables,
    backends_table,
    cells_table,
    flops_table,
    formulation_tables,
    framework_table,
    layer_shapes_table,
    memory_table,
    scaling_table,
    variants_table,
)


@dataclass
class ReportFiles:
    """What ``write_report`` wrote, and what the reader should know (warnings, skipped outputs)."""

    out_dir: Path
    markdown: Path
    html: Path
    csv: Path
    parquet: Path | None
    plots: list[Path] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def failures_table(frame: pd.DataFrame) -> ReportTable:
    """Every row that did not finish, with its status and error, so nothing fails quietly."""
    empty = "No failed cells."
    if frame.empty:
        return ReportTable("Failed cells", pd.DataFrame(), empty_text=empty)
    failed = frame[frame["status"] != "ok"]
    columns = [key for key in CELL_KEYS if key != "fast_path"] + ["repeat", "status", "error"]
    table = failed[columns].copy()
    table["error"] = [str(e)[:200] if isinstance(e, str) else None for e in table["error"]]
    table["where"] = [f"{Path(s).name}:{line}" for s, line in zip(failed["source"], failed["line"], strict=True)]
    table = table.rename(columns=DISPLAY_NAMES)
    return ReportTable("Failed cells", table, ["figures of failed cells are missing, not zero."], empty_text=empty)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower() or "env"


def environment_plots(frame: pd.DataFrame, summary: pd.DataFrame, scaling: pd.DataFrame) -> list[Plot]:
    """Plots per environment (one set when there is one environment): machines never share a plot."""
    if frame.empty:
        return make_plots(summary, scaling, pd.DataFrame())
    environments = list(dict.fromkeys(frame["environment"]))
    plots = []
    for environment in environments:
        suffix = "" if len(environments) == 1 else f"-{_slug(environment)}"
        part = summary[summary["environment"] == environment] if not summary.empty else summary
        part_scaling = scaling[scaling["environment"] == environment] if not scaling.empty else scaling
        runs = frame[(frame["environment"] == environment) & (frame["mode"] == "accuracy")]
        for plot in make_plots(part, part_scaling, accuracy_curves(runs), suffix):
            if suffix:
                plot.title = f"{plot.title} [{environment}]"
            plots.append(plot)
    return plots


def build_report(loaded: LoadedFrame, title: str = "AlexNet: Keras vs PyTorch") -> tuple[Report, list[Plot]]:
    """The report's sections from loaded results (no files written)."""
    frame = loaded.frame
    summary = summarize_cells(frame)
    scaling = scaling_table(summary)
    all_plots = environment_plots(frame, summary, scaling.frame)
    plots: dict[str, list[Plot]] = {}
    for plot in all_plots:
        plots.setdefault(plot.kind, []).append(plot)
    failed = int((frame["status"] != "ok").sum()) if not frame.empty else 0
    overview = (
        f"{len(frame)} result rows ({failed} failed) from {frame['source'].nunique() if len(frame) else 0} file(s)."
    )
    backends = backends_table(summary)
    throughput = Section(
        "Throughput",
        [overview, framework_table(summary), *([backends] if backends else []), *plots.get("throughput", [])],
    )
    sections = [
        throughput,
        Section("Memory", [memory_table(summary), *plots.get("memory_vs_batch", [])]),
        Section("All cells", [cells_table(summary), failures_table(frame)]),
        Section("Formulations and data sets", formulation_tables(summary)),
        Section("Batch size", plots.get("throughput_vs_batch", [])),
        Section("Scaling", [scaling, *plots.get("scaling", [])]),
        Section("Achieved FLOP/s", [flops_table(summary)]),
        Section("Fast paths", [best_table(frame) or "No cell was measured in two configurations (see run --best)."]),
        Section(
            "Accuracy",
            [
                *(accuracy_tables(frame) or ["No accuracy runs in these results."]),
                *[plot for plot in plots.get("accuracy", []) if plot.png],
            ],
        ),
        Section("Architecture", [variants_table(), layer_shapes_table()]),
    ]
    for section in sections:
        if not section.items:
            section.items.append("No such results in these files.")
    generated = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    findings = build_findings(frame, summary)
    return Report(title, loaded.environments, loaded.warnings, sections, generated, findings), all_plots


def _write_parquet(frame: pd.DataFrame, path: Path) -> str | None:
    """Write Parquet, or say why not (no Parquet engine installed)."""
    if importlib.util.find_spec("pyarrow") is None and importlib.util.find_spec("fastparquet") is None:
        return "results.parquet not written: neither pyarrow nor fastparquet is installed (results.csv has the same)"
    frame.to_parquet(path, index=False)
    return None


REPORT_FILES = ("report.md", "report.html", "results.csv", "results.parquet")


def check_report_inputs(result_paths: list[Path], out_dir: Path) -> None:
    """Refuse a report folder where the report would write over one of its own inputs (a results file named
    results.csv beside the report destroyed both), before anything is read, run or written."""
    outputs = {(out_dir / name).resolve() for name in REPORT_FILES}
    for path in map(Path, result_paths):
        resolved = path.resolve()
        if resolved in outputs or (resolved.parent == out_dir.resolve() and resolved.suffix == ".png"):
            raise ResultsFileError(
                f"the report would write {out_dir / resolved.name} over its input {path}; "
                "give the report another folder, or the results another name"
            )


def write_report(result_paths: list[Path], out_dir: Path) -> ReportFiles:
    """Load results, build every table and plot, and write report.md, report.html, results.csv,
    results.parquet and the PNGs into ``out_dir`` (created if needed). A plot not drawn this time has its PNG
    from an earlier report removed, so the folder shows this report only."""
    check_report_inputs(result_paths, out_dir)
    loaded = load_results([Path(p) for p in result_paths])
    report, plots = build_report(loaded)
    out_dir.mkdir(parents=True, exist_ok=True)
    files = ReportFiles(
        out_dir,
        out_dir / "report.md",
        out_dir / "report.html",
        out_dir / "results.csv",
        None,
        warnings=list(loaded.warnings),
    )
    for plot in plots:
        if plot.png:
            (out_dir / plot.name).write_bytes(plot.png)
            files.plots.append(out_dir / plot.name)
        else:
            files.notes.append(f"plot {plot.name} skipped: {plot.skipped_because}")
            (out_dir / plot.name).unlink(missing_ok=True)  # an earlier report's, which this one does not have
    files.markdown.write_text(render_markdown(report), encoding="utf-8")
    files.html.write_text(render_html(report), encoding="utf-8")
    flat = flat_frame(loaded.frame)
    flat.to_csv(files.csv, index=False)
    note = _write_parquet(flat, out_dir / "results.parquet")
    if note:
        files.notes.append(note)
    else:
        files.parquet = out_dir / "results.parquet"
    return files
