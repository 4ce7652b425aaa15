"""What the commands print while they work: a progress bar, one line per finished job, the selfcheck table.

Rendering only: the commands run the work (``benchmarks.request.run_request``) and pass these callbacks in.

Every user-supplied string that reaches rich goes through ``escape``: a variant, path or error
containing ``[`` would otherwise be read as markup.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from benchmarks.cell import CellConfig
from benchmarks.results import ResultRow


def job_label(job: object) -> str:
    label = getattr(job, "label", None)
    return label() if callable(label) else f"{job.framework} {job.variant} on {job.dataset}"


@contextmanager
def progress_callbacks(console: Console, noun: str, total: int) -> Iterator[tuple[Callable, Callable]]:
    """(on_start, on_row) for ``benchmarks.request.run_request``: a progress bar, one line per finished job, and a
    start line per job when the output is piped. The bar goes away on any exit, Ctrl-C included."""
    line = cell_line if noun == "cell" else accuracy_line
    with progress(console) as bar:
        task = bar.add_task("starting", total=total)

        def on_start(index: int, job: object) -> None:
            what = escape(f"{noun} {index + 1}/{total}: {job_label(job)}")
            bar.update(task, description=what)
            if not console.is_terminal:
                console.print(f"start  {what}", highlight=False)

        def on_row(row: ResultRow) -> None:
            bar.advance(task)
            bar.console.print(line(row), highlight=False)

        try:
            yield on_start, on_row
        except KeyboardInterrupt:
            bar.stop()
            raise


def follower_header(cells: int, node_rank: int, nodes: int, endpoint: str) -> str:
    """What a node other than the first says before it takes part in the cells."""
    where = escape(endpoint)
    return f"node {node_rank} of {nodes}: taking part in {cells} cells at {where}; node 0 writes the rows"


def part_line(index: int, cells: int, part: object) -> str:
    """How this node's share of one cell ended (``benchmarks.follower.Part``)."""
    return f"cell {escape(f'{index + 1}/{cells} {part.cell.label()}: {part.status} ({part.detail})')}"


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
    precision = (m.get("timing_budget") or {}).get("median_precision")
    within = f" ±{precision:.1%}" if precision is not None else ""
    return (
        f"[green]ok[/]     {label}: {m['images_per_s']:,.1f} img/s (median step "
        f"{m['median_step_s'] * 1e3:,.1f} ms{within} over {m['steps']} steps, first step {m['first_step_s']:.2f} s)"
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
    """The harness-overhead table; False when a check failed or measured over the limit.

    A check whose interval straddles the limit is "inconclusive": said, but not a failure.
    """
    table = Table(title="Harness overhead (median over rounds; positive = the runner is slower)", title_justify="left")
    headers = ("framework", "mode", "runner img/s", "bare loop img/s", "overhead", "95% interval", "rounds", "verdict")
    for header in headers:
        table.add_column(header, justify="left" if header in ("framework", "mode", "verdict") else "right")
    passed, undecided = True, 0
    for cell, result in results:
        if result["status"] != "ok":
            error = escape(f"{result['status']}: {result.get('error')}")
            table.add_row(cell.framework, cell.mode, "", "", "", "", "", f"[red]{error}[/]")
            passed = False
            continue
        m = result["metrics"]
        decided = m.get("verdict", "within" if m["within_tolerance"] else "over")
        passed &= decided != "over"
        undecided += decided == "inconclusive"
        low, high = m.get("overhead_low"), m.get("overhead_high")
        table.add_row(
            cell.framework,
            cell.mode,
            f"{m['harness_images_per_s']:,.1f}",
            f"{m['bare_images_per_s']:,.1f}",
            f"{m['overhead']:+.2%}",
            f"{low:+.2%} to {high:+.2%}" if low is not None and high is not None else "—",
            str(m.get("rounds", "")),
            {"within": "[green]within 2%[/]", "over": "[red]over 2%[/]"}.get(decided, "[yellow]inconclusive[/]"),
        )
    console.print(table)
    if undecided:
        console.print(
            f"[yellow]inconclusive:[/] {undecided} check(s) too noisy to decide against 2% within the time budget "
            "(the interval straddles the limit); not a failure. Rerun on a quieter machine or with a larger "
            "--time-budget.",
            highlight=False,
        )
    return passed
