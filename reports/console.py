"""What the commands print while they work: a progress bar, one line per finished job, the selfcheck table.

Every user-supplied string that reaches rich goes through ``escape``: a variant, path or error
containing ``[`` would otherwise be read as markup.
"""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from benchmarks.cell import CellConfig
from benchmarks.results import ResultRow


def progress(console: Console) -> Progress:
    return Progress(
        SpinnerColumn(),
        MofNCompleteColumn(),
        BarColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.description}"),
        console=console,
        transient=True,
    )


def _failure(row: ResultRow, label: str) -> str:
    return f"[red]{escape(row.status):<6}[/] {label}: {escape(str(row.error))}"


def cell_line(row: ResultRow) -> str:
    """One finished throughput cell: its label and images/s, or its status and error."""
    label = escape(CellConfig.from_dict(row.cell).label())  # "[compiled]" is text, not a style
    if not row.ok:
        return _failure(row, label)
    m = row.metrics
    return (
        f"[green]ok[/]     {label}: {m['images_per_s']:,.1f} img/s "
        f"(median step {m['median_step_s'] * 1e3:,.1f} ms, first step {m['first_step_s']:.2f} s)"
    )


def accuracy_line(row: ResultRow) -> str:
    """One finished training run: top-1/top-5 and speed, or its status and error."""
    cell = row.cell
    label = escape(f"{cell['framework']} {cell['variant']} on {cell['dataset']}")
    if not row.ok:
        return _failure(row, label)
    m = row.metrics
    return (
        f"[green]ok[/]     {label}: top-1 {m['top1']:.1%}, top-5 {m['top5']:.1%}, "
        f"{m['train_images_per_s']:,.0f} img/s, {m['train_seconds']:.0f} s training"
    )


def render_selfcheck(results: list[tuple[CellConfig, dict]], console: Console) -> bool:
    """The harness-overhead table; True when every check passed."""
    table = Table(title="Harness overhead (median over rounds; positive = the runner is slower)", title_justify="left")
    for header in ("framework", "mode", "runner img/s", "bare loop img/s", "overhead", "IQR over rounds", "verdict"):
        table.add_column(header, justify="left" if header in ("framework", "mode", "verdict") else "right")
    passed = True
    for cell, result in results:
        if result["status"] != "ok":
            error = escape(f"{result['status']}: {result.get('error')}")
            table.add_row(cell.framework, cell.mode, "", "", "", "", f"[red]{error}[/]")
            passed = False
            continue
        m = result["metrics"]
        passed &= m["within_tolerance"]
        table.add_row(
            cell.framework,
            cell.mode,
            f"{m['harness_images_per_s']:,.1f}",
            f"{m['bare_images_per_s']:,.1f}",
            f"{m['overhead']:+.2%}",
            f"{m['overhead_iqr']:.2%}",
            "[green]within 2%[/]" if m["within_tolerance"] else "[red]over 2%[/]",
        )
    console.print(table)
    return passed
