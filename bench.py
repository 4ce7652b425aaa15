"""AlexNet in Keras 3 and PyTorch: parity checks and benchmarks from one spec.

Run ``python bench.py --help`` for the commands. Frameworks are imported only by the commands
that need them, so listing variants or asking for help is instant.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from implementations.spec import SpecError
from implementations.variants import BUILDABLE_VARIANTS, SPLIT_IMPLS, VARIANTS, get_variant

app = typer.Typer(
    help="AlexNet (Krizhevsky et al. 2012) in Keras 3 and PyTorch: prove they are the same network, then measure them.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
# Tables are wide; when output goes to a file or pipe, do not wrap them at 80 columns.
console = Console(width=None if Console().is_terminal else 160)
err_console = Console(stderr=True)


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print one line for a user mistake and return the exit to raise (no traceback)."""
    err_console.print(f"[red]error:[/] {message}", highlight=False)
    return typer.Exit(code)


def quiet_frameworks() -> None:
    """Keep TensorFlow's start-up chatter out of the tables."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")


@app.command()
def variants() -> None:
    """List the variants: input shape, classes, parameters and forward FLOPs, computed from the spec."""
    from reports.parity_table import render_variants, variants_frame

    architectures: dict = {}
    for name in VARIANTS:
        try:
            architectures[name] = get_variant(name)
        except SpecError as error:
            architectures[name] = str(error)
    render_variants(variants_frame(architectures), console)


@app.command()
def parity(
    variant: Annotated[
        list[str] | None,
        typer.Option(
            "--variant", "-v", help=f"Variant to check (repeatable). Default: {', '.join(BUILDABLE_VARIANTS)}."
        ),
    ] = None,
    split_impl: Annotated[
        list[str] | None,
        typer.Option("--split-impl", help="Split formulation: grouped or towers (repeatable). Default: both."),
    ] = None,
    rtol: Annotated[float, typer.Option(help="Tolerance on |diff| relative to the largest activation.")] = 1e-4,
    batch_size: Annotated[int, typer.Option(min=1, help="Random images per check.")] = 2,
    seed: Annotated[int, typer.Option(help="Seed for weights and inputs.")] = 0,
) -> None:
    """Prove Keras and PyTorch build the same network: shapes, parameters and logits, layer by layer.

    PyTorch's weights are copied into the Keras model, one random batch runs through both in
    inference mode, and every layer's output is compared. Exit code 0 only when all match.
    """
    names = variant or list(BUILDABLE_VARIANTS)
    impls = split_impl or list(SPLIT_IMPLS)
    for impl in impls:
        if impl not in SPLIT_IMPLS:
            raise fail(f"unknown split implementation {impl!r}; choose from {', '.join(SPLIT_IMPLS)}")
    try:
        architectures = [get_variant(name) for name in names]
    except SpecError as error:
        raise fail(str(error)) from None

    quiet_frameworks()
    from implementations.parity import check_parity
    from reports.parity_table import render_parity

    failed = []
    for arch in architectures:
        # A single-tower network has no towered layer, so both formulations are the same model.
        for impl in impls if arch.is_split else impls[:1]:
            report = check_parity(arch, impl, rtol=rtol, batch_size=batch_size, seed=seed)
            render_parity(report, console)
            if not report.ok:
                failed.append(f"{arch.name} ({impl}): {report.failures[0]}")
    if failed:
        for line in failed:
            err_console.print(f"[red]parity failed:[/] {line}", highlight=False)
        raise typer.Exit(1)
    console.print("[green]All parity checks passed.[/]")


@app.command()
def run(
    framework: Annotated[
        list[str] | None, typer.Option("--framework", "-f", help="torch or keras (repeatable). Default: both.")
    ] = None,
    variant: Annotated[
        list[str] | None,
        typer.Option(
            "--variant",
            "-v",
            help="Variant (repeatable). Default: the four paper variants; --quick: the CIFAR-100 two.",
        ),
    ] = None,
    mode: Annotated[
        list[str] | None, typer.Option("--mode", "-m", help="train or infer (repeatable). Default: both.")
    ] = None,
    batch_size: Annotated[
        list[int] | None,
        typer.Option(
            "--batch-size",
            "-b",
            help="Global batch per step (repeatable). Default: 32 on CPU, 128 on GPU, 16 with --quick.",
        ),
    ] = None,
    split_impl: Annotated[
        list[str] | None,
        typer.Option(
            "--split-impl",
            help="grouped or towers for split variants (repeatable). "
            "Default: the faster per framework on CPU (torch grouped, keras towers).",
        ),
    ] = None,
    steps: Annotated[
        int | None, typer.Option(help="Timed steps per cell. Default: 10 on CPU, 50 on GPU, 5 with --quick.")
    ] = None,
    warmup: Annotated[
        int | None,
        typer.Option(
            help="Warm-up steps (the first is compile/tracing, reported apart). Default: 3, 10 on GPU, 2 with --quick."
        ),
    ] = None,
    repeats: Annotated[int, typer.Option(help="Repeats of each cell, each in a fresh process.")] = 1,
    gpus: Annotated[
        int | None,
        typer.Option(help="GPUs to use: 0 = CPU. Default: all visible. With 2 or more, 1 GPU runs too, for scaling."),
    ] = None,
    simulate_devices: Annotated[
        int, typer.Option(help="Run the multi-device code paths on N logical CPU devices (results labelled simulated).")
    ] = 0,
    quick: Annotated[
        bool, typer.Option("--quick", help="A small sweep for a first look: CIFAR-100 variants, batch 16, 5 steps.")
    ] = False,
    results: Annotated[Path, typer.Option(help="JSON Lines file the rows are appended to.")] = Path(
        "results/results.jsonl"
    ),
    resume: Annotated[
        bool, typer.Option("--resume", help="Skip cells that already have a successful row in --results.")
    ] = False,
    cell_timeout: Annotated[
        float, typer.Option(help="Seconds before a cell's worker is killed and recorded as a timeout.")
    ] = 900.0,
    memory_limit_gb: Annotated[
        float | None,
        typer.Option(
            "--memory-limit-gb", help="Cap each worker's memory; a cell that needs more is recorded as out of memory."
        ),
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed for weights and synthetic data.")] = 0,
) -> None:
    """Measure training and inference throughput and memory, each cell in its own process.

    Every finished cell is appended to --results at once (JSON Lines); a failed cell becomes a row
    with its status and the sweep goes on. Ctrl-C keeps every finished row.
    """
    from benchmarks.environment import machine_environment
    from benchmarks.matrix import SweepError, SweepOptions, plan
    from benchmarks.memory import nvml_gpus
    from benchmarks.results import ResultsFileError, check_writable, done_keys, read_results

    found, why_none = nvml_gpus()
    if gpus is None:
        gpus = len(found)
    elif gpus > len(found):
        seen = f"found {len(found)}" + (f" ({', '.join(found)})" if found else f": {why_none or 'no GPU'}")
        raise fail(f"asked for {gpus} GPUs but {seen}")
    options = SweepOptions(
        frameworks=framework or [],
        variants=variant or [],
        modes=mode or [],
        batch_sizes=batch_size or [],
        split_impls=split_impl or [],
        steps=steps,
        warmup=warmup,
        repeats=repeats,
        gpus=gpus,
        simulate_devices=simulate_devices,
        quick=quick,
        seed=seed,
    )
    try:
        cells = plan(options)
        check_writable(results)
        existing = read_results(results)
    except (SweepError, SpecError, ResultsFileError) as error:
        raise fail(str(error)) from None
    for warning in existing.warnings:
        err_console.print(f"[yellow]warning:[/] {warning}", highlight=False)
    skipped = done_keys(existing.rows) if resume else set()
    todo = [cell for cell in cells if cell.key() not in skipped]
    if resume:
        console.print(f"resuming: {len(cells) - len(todo)} of {len(cells)} cells already done in {results}")

    from benchmarks.runner import run_sweep
    from reports.summary import render_throughput, rows_to_frame

    memory_limit = int(memory_limit_gb * 2**30) if memory_limit_gb else None
    with _progress() as progress:
        task = progress.add_task("starting", total=len(todo))

        def on_start(index: int, cell) -> None:
            progress.update(task, description=f"cell {index + 1}/{len(todo)}: {cell.label()}")

        def on_row(row: dict) -> None:
            progress.advance(task)
            progress.console.print(_row_line(row), highlight=False)

        try:
            machine = machine_environment()
            run_sweep(
                todo,
                results,
                machine,
                timeout_s=cell_timeout,
                memory_limit_bytes=memory_limit,
                on_start=on_start,
                on_row=on_row,
            )
        except KeyboardInterrupt:
            progress.stop()
            raise fail(f"interrupted; every finished cell is saved in {results}", code=130) from None

    keys = {cell.key() for cell in cells}
    rows = [row for row in read_results(results).rows if row.get("key") in keys]
    latest = {row["key"]: row for row in rows}  # a cell run again supersedes its older rows
    render_throughput(rows_to_frame(list(latest.values())), console)
    failed = [row for row in latest.values() if row["status"] != "ok"]
    console.print(f"{len(latest)} cells, {len(failed)} failed; rows in {results}")
    if failed:
        raise typer.Exit(1)


def _progress():
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    return Progress(
        SpinnerColumn(),
        MofNCompleteColumn(),
        BarColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.description}"),
        console=console,
        transient=True,
    )


def _row_line(row: dict) -> str:
    from benchmarks.cell import CellConfig

    label = CellConfig.from_dict(row["cell"]).label()
    if row["status"] == "ok":
        metrics = row["metrics"]
        return (
            f"[green]ok[/]     {label}: {metrics['images_per_s']:,.1f} img/s "
            f"(median step {metrics['median_step_s'] * 1e3:,.1f} ms, first step {metrics['first_step_s']:.2f} s)"
        )
    return f"[red]{row['status']:<6}[/] {label}: {row['error']}"


if __name__ == "__main__":
    app()
