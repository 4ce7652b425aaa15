"""AlexNet in Keras 3 and PyTorch: parity checks and benchmarks from one spec.

Run ``python bench.py --help`` for the commands. Frameworks are imported only by the commands
that need them, so listing variants or asking for help is instant.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

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
    keras_backend: Annotated[
        str, typer.Option(help="Keras 3 backend the Keras model runs on: tensorflow, jax or torch.")
    ] = "tensorflow",
) -> None:
    """Prove Keras and PyTorch build the same network: shapes, parameters and logits, layer by layer.

    PyTorch's weights are copied into the Keras model, one random batch runs through both in
    inference mode, and every layer's output is compared. Exit code 0 only when all match.
    """
    from benchmarks.cell import KERAS_BACKENDS, missing_keras_backend

    backends = list(KERAS_BACKENDS.values())
    if keras_backend not in backends:
        raise fail(f"unknown Keras backend {keras_backend!r}; choose from {', '.join(backends)}")
    if reason := missing_keras_backend(keras_backend):
        raise fail(reason)
    os.environ["KERAS_BACKEND"] = keras_backend  # read once, when Keras is first imported (below)
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
            if keras_backend != "tensorflow":
                console.print(f"Keras on the {keras_backend} backend:", highlight=False)
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
        list[str] | None,
        typer.Option(
            "--framework",
            "-f",
            help="torch, keras (on TensorFlow), keras-jax or keras-torch (the same Keras model on Keras' JAX or "
            "PyTorch backend; one device). Repeatable. Default: torch and keras.",
        ),
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
    report_dir: Annotated[
        Path | None,
        typer.Option("--report", help="Folder for the report written at the end. Default: next to --results."),
    ] = None,
    no_report: Annotated[bool, typer.Option("--no-report", help="Do not write the report at the end.")] = False,
    best: Annotated[
        bool, typer.Option("--best", help="Try each fast path against each baseline and report the fastest.")
    ] = False,
    precision: Annotated[str, typer.Option(help="fp32, or bf16 (PyTorch autocast, Keras mixed_bfloat16).")] = "fp32",
    compile_model: Annotated[
        bool, typer.Option("--compile", help="torch.compile for PyTorch, XLA (jit_compile) for Keras.")
    ] = False,
    channels_last: Annotated[
        bool, typer.Option("--channels-last", help="PyTorch channels_last memory format.")
    ] = False,
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
        precision=precision,
        compiled=compile_model,
        channels_last=channels_last,
        best=best,
    )
    try:
        cells = plan(options)
        check_writable(results)
        existing = read_results(results)
    except (SweepError, SpecError, ResultsFileError) as error:
        raise fail(str(error)) from None
    for warning in existing.warnings:
        err_console.print(f"[yellow]warning:[/] {warning}", highlight=False)
    if best and not gpus and not simulate_devices:
        from benchmarks.fast_paths import native_bf16

        if not native_bf16():
            console.print(
                "note: bf16 not tried: this CPU has no native bf16 (AVX512-BF16/AMX); emulated bf16 is far "
                "slower than fp32. Ask for it with --precision bf16.",
                highlight=False,
            )
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
            progress.update(task, description=escape(f"cell {index + 1}/{len(todo)}: {cell.label()}"))

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
    frame = rows_to_frame(list(latest.values()))
    render_throughput(frame, console)
    if best:
        from reports.best import render_best

        render_best(frame, console)
    failed = [row for row in latest.values() if row["status"] != "ok"]
    console.print(f"{len(latest)} cells, {len(failed)} failed; rows in {results}")
    if not no_report:
        write_and_announce_report([results], report_dir or results.parent / "report")
    if failed:
        raise typer.Exit(1)


@app.command()
def train(
    framework: Annotated[
        list[str] | None, typer.Option("--framework", "-f", help="torch or keras (repeatable). Default: both.")
    ] = None,
    variant: Annotated[
        list[str] | None,
        typer.Option("--variant", "-v", help="Variant (repeatable). Default: cifar100-single and cifar100-split."),
    ] = None,
    dataset: Annotated[
        str, typer.Option(help="digits (bundled, offline) or cifar100 (the official archive).")
    ] = "digits",
    epochs: Annotated[int, typer.Option(min=1, help="Passes over the training set.")] = 4,
    batch_size: Annotated[int, typer.Option("--batch-size", "-b", min=1, help="Images per SGD step.")] = 32,
    learning_rate: Annotated[
        float, typer.Option(min=0.0, help="Base learning rate; divided by 10 at 75% of the epochs.")
    ] = 0.01,
    warmup_epochs: Annotated[
        float, typer.Option(min=0.0, help="Epochs over which the rate rises linearly to its base value (0: none).")
    ] = 1.0,
    split_impl: Annotated[
        str | None, typer.Option(help="grouped or towers for split variants. Default: per framework, as in run.")
    ] = None,
    init: Annotated[
        str, typer.Option(help="Initial weights: torch-default or paper (N(0, 0.01), unit biases).")
    ] = "torch-default",
    seed: Annotated[int, typer.Option(help="Seed for weights, data split and batch order.")] = 0,
    deterministic: Annotated[
        bool, typer.Option("--deterministic", help="Deterministic kernels in both frameworks (slower).")
    ] = False,
    check_repro: Annotated[
        bool,
        typer.Option(
            "--check-repro", help="Run each job twice (deterministic) and check the per-step losses are identical."
        ),
    ] = False,
    target_top1: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="Top-1 accuracy whose time-to-reach is reported.")
    ] = 0.9,
    max_train_images: Annotated[
        int | None, typer.Option(min=1, help="Use only this many training images per epoch (quick checks).")
    ] = None,
    data_dir: Annotated[
        Path | None, typer.Option(help="Where the data set is (searched before the Keras and torchvision caches).")
    ] = None,
    download: Annotated[
        bool, typer.Option("--download", help="Download CIFAR-100 from its official source if it is not found.")
    ] = False,
    results: Annotated[Path, typer.Option(help="JSON Lines file the rows are appended to.")] = Path(
        "results/results.jsonl"
    ),
    timeout: Annotated[float, typer.Option(help="Seconds before a training worker is killed.")] = 7200.0,
    check_parity: Annotated[
        bool,
        typer.Option(
            "--check-parity",
            help="Instead of training to the end: both frameworks take the same first steps (deterministic, "
            "shared dropout masks); exit 1 when their losses or weights part by more than fp32 rounding.",
        ),
    ] = False,
    parity_steps: Annotated[int, typer.Option(min=1, help="Steps per framework for --check-parity.")] = 50,
) -> None:
    """Train both frameworks from the same weights on the same batches; compare their accuracy.

    Each framework trains in its own process: same initial weights (drawn once in NumPy), same
    images in the same order, same schedule and update rule (the paper's SGD: momentum 0.9, coupled
    weight decay 5e-4). Rows (mode "accuracy", with the per-epoch curve) go to --results.
    --check-parity trains only the first --parity-steps steps, with shared dropout masks, and
    compares the two frameworks' losses and weights step for step.
    """
    from benchmarks.accuracy import make_accuracy_row, new_run_id, train_command
    from benchmarks.cell import FRAMEWORKS
    from benchmarks.environment import machine_environment
    from benchmarks.matrix import DEFAULT_SPLIT_IMPL
    from benchmarks.results import ResultsFileError, append_row, check_writable, read_results
    from benchmarks.runner import run_process, worker_environment
    from benchmarks.training import TrainConfig
    from implementations.initial_weights import SCHEMES

    frameworks = framework or list(FRAMEWORKS)
    variants = variant or ["cifar100-single", "cifar100-split"]
    checks = [
        ([f for f in frameworks if f not in FRAMEWORKS], f"unknown framework; valid: {', '.join(FRAMEWORKS)}"),
        ([dataset] if dataset not in ("digits", "cifar100") else [], "unknown dataset; valid: digits, cifar100"),
        (
            [split_impl] if split_impl not in (None, *SPLIT_IMPLS) else [],
            f"unknown split implementation; valid: {', '.join(SPLIT_IMPLS)}",
        ),
        ([init] if init not in SCHEMES else [], f"unknown initialisation; valid: {', '.join(SCHEMES)}"),
    ]
    for wrong, message in checks:
        if wrong:
            raise fail(f"{', '.join(map(repr, wrong))}: {message}")
    try:
        archs = [get_variant(name) for name in variants]
        check_writable(results)
        read_results(results)
    except (SpecError, ResultsFileError) as error:
        raise fail(str(error)) from None

    if check_parity:
        from benchmarks.train_parity import run_check

        impls = {
            arch.name: {
                name: split_impl or (DEFAULT_SPLIT_IMPL[name] if arch.is_split else "grouped") for name in FRAMEWORKS
            }
            for arch in archs
        }
        fields = dict(dataset=dataset, epochs=epochs, batch_size=batch_size, learning_rate=learning_rate)
        fields |= dict(warmup_epochs=warmup_epochs, init=init, seed=seed, max_train_images=max_train_images)
        fields |= dict(data_dir=str(data_dir) if data_dir else None, download=download)
        raise typer.Exit(run_check([a.name for a in archs], impls, parity_steps, console, timeout_s=timeout, **fields))

    jobs = []
    for arch in archs:
        for name in frameworks:
            impl = split_impl or (DEFAULT_SPLIT_IMPL[name] if arch.is_split else "grouped")
            jobs.append(
                TrainConfig(
                    framework=name,
                    variant=arch.name,
                    split_impl=impl,
                    dataset=dataset,
                    epochs=epochs,
                    batch_size=batch_size,
                    learning_rate=learning_rate,
                    warmup_epochs=warmup_epochs,
                    init=init,
                    seed=seed,
                    deterministic=deterministic or check_repro,
                    target_top1=target_top1,
                    max_train_images=max_train_images,
                    data_dir=str(data_dir) if data_dir else None,
                    download=download,
                )
            )
    runs = 2 if check_repro else 1
    run_id, rows = new_run_id(), []
    with _progress() as progress:
        task = progress.add_task("starting", total=len(jobs) * runs)
        try:
            machine = machine_environment()
            for config in jobs:
                for attempt in range(runs):
                    progress.update(
                        task,
                        description=f"training {config.framework} {config.variant} on {dataset}"
                        + (f" (run {attempt + 1} of 2)" if check_repro else ""),
                    )
                    started = time.time()
                    result = run_process(train_command(config), worker_environment(), timeout)
                    row = make_accuracy_row(config, result, machine, run_id, started)
                    append_row(results, row)
                    rows.append(row)
                    progress.advance(task)
                    progress.console.print(_accuracy_line(row), highlight=False)
        except KeyboardInterrupt:
            progress.stop()
            raise fail(f"interrupted; every finished run is saved in {results}", code=130) from None

    from reports.accuracy_summary import loss_gaps, render_accuracy, repro_verdicts

    render_accuracy(rows, console)
    for line in loss_gaps(rows):
        console.print(line, highlight=False)
    verdicts = repro_verdicts(rows) if check_repro else []
    for ok, line in verdicts:
        console.print(("[green]reproducible[/] " if ok else "[red]NOT reproducible[/] ") + line, highlight=False)
    if any(row["status"] != "ok" for row in rows) or any(not ok for ok, _ in verdicts):
        raise typer.Exit(1)


def _accuracy_line(row: dict) -> str:
    cell = row["cell"]
    label = f"{cell['framework']} {cell['variant']} on {cell['dataset']}"
    if row["status"] != "ok":
        return f"[red]{row['status']:<6}[/] {label}: {escape(str(row['error']))}"
    m = row["metrics"]
    return (
        f"[green]ok[/]     {label}: top-1 {m['top1']:.1%}, top-5 {m['top5']:.1%}, "
        f"{m['train_images_per_s']:,.0f} img/s, {m['train_seconds']:.0f} s training"
    )


@app.command()
def selfcheck(
    framework: Annotated[
        list[str] | None, typer.Option("--framework", "-f", help="torch or keras (repeatable).")
    ] = None,
    variant: Annotated[str, typer.Option("--variant", "-v", help="Variant to time.")] = "cifar100-split",
    batch_size: Annotated[int, typer.Option("--batch-size", "-b", min=1, help="Images per step.")] = 16,
    steps: Annotated[int, typer.Option(min=1, help="Steps per round (seven rounds of each loop, alternating).")] = 5,
) -> None:
    """Check the harness costs under 2%: runner's timed loop vs a bare loop, same model, same process."""
    from benchmarks.cell import FRAMEWORKS, MODES, CellConfig
    from benchmarks.matrix import DEFAULT_SPLIT_IMPL
    from benchmarks.runner import run_process, worker_command, worker_environment

    frameworks = framework or list(FRAMEWORKS)
    wrong = [name for name in frameworks if name not in FRAMEWORKS]
    if wrong:
        raise fail(f"unknown framework {', '.join(map(repr, wrong))}; valid: {', '.join(FRAMEWORKS)}")
    try:
        arch = get_variant(variant)
    except SpecError as error:
        raise fail(str(error)) from None
    from rich.table import Table

    table = Table(title="Harness overhead (median over rounds; positive = the runner is slower)", title_justify="left")
    for header in ("framework", "mode", "runner img/s", "bare loop img/s", "overhead", "IQR over rounds", "verdict"):
        table.add_column(header, justify="left" if header in ("framework", "mode", "verdict") else "right")
    failed = False
    for name in frameworks:
        for mode in MODES:
            impl = DEFAULT_SPLIT_IMPL[name] if arch.is_split else "grouped"
            cell = CellConfig(name, variant, mode, batch_size, impl, steps=steps, warmup=2)
            with console.status(f"timing {name} {mode}"):
                result = run_process([*worker_command(cell), "--selfcheck"], worker_environment(cell), 1800)
            if result["status"] != "ok":
                table.add_row(name, mode, "", "", "", "", f"[red]{result['status']}: {result.get('error')}[/]")
                failed = True
                continue
            m = result["metrics"]
            ok = m["within_tolerance"]
            failed |= not ok
            table.add_row(
                name,
                mode,
                f"{m['harness_images_per_s']:,.1f}",
                f"{m['bare_images_per_s']:,.1f}",
                f"{m['overhead']:+.2%}",
                f"{m['overhead_iqr']:.2%}",
                "[green]within 2%[/]" if ok else "[red]over 2%[/]",
            )
    console.print(table)
    if failed:
        raise typer.Exit(1)


@app.command()
def report(
    results: Annotated[
        list[Path] | None,
        typer.Argument(help="Results files (JSON Lines) or pytest-benchmark JSON. Default: results/results.jsonl."),
    ] = None,
    out: Annotated[
        Path, typer.Option("--out", help="Folder for report.md, report.html, results.csv/parquet and PNGs.")
    ] = Path("results/report"),
) -> None:
    """Write the comparison report: Markdown, self-contained HTML with plots, CSV/Parquet, PNGs."""
    paths = results or [Path("results/results.jsonl")]
    missing = [str(path) for path in paths if not path.is_file()]
    if missing:
        raise fail(f"no results file at {', '.join(missing)}; run `python bench.py run` first or name a file")
    write_and_announce_report(paths, out)


def write_and_announce_report(paths: list[Path], out: Path) -> None:
    from benchmarks.results import ResultsFileError
    from reports.build import write_report

    try:
        files = write_report(paths, out)
    except ResultsFileError as error:
        raise fail(str(error)) from None
    except OSError as error:
        raise fail(f"cannot write the report to {out}: {error.strerror or error}") from None
    for warning in files.warnings:
        err_console.print(f"[yellow]warning:[/] {warning}", highlight=False)
    for note in files.notes:
        console.print(f"note: {note}", highlight=False)
    written = [files.markdown, files.html, files.csv, *([files.parquet] if files.parquet else [])]
    console.print(f"report: {', '.join(str(path) for path in written)} (+{len(files.plots)} plots)", highlight=False)


@app.command("compare")
def compare_results(
    base: Annotated[Path, typer.Argument(help="Results file of the baseline.")],
    new: Annotated[Path, typer.Argument(help="Results file to judge against it.")],
    threshold: Annotated[str, typer.Option(help="Slowdown that counts as a regression, e.g. 5% or 0.05.")] = "5%",
    markdown: Annotated[
        bool, typer.Option("--markdown", help="Print Markdown (for a PR comment) instead of a table.")
    ] = False,
) -> None:
    """Per cell, the change in images/s with a Mann-Whitney U test over per-step times.

    Exits 1 when a significant slowdown exceeds the threshold (or a cell that worked now fails).
    """
    from benchmarks.results import ResultsFileError
    from reports.compare import compare, parse_threshold

    missing = [str(path) for path in (base, new) if not path.is_file()]
    if missing:
        raise fail(f"no results file at {', '.join(missing)}")
    try:
        result = compare([base], [new], threshold=parse_threshold(threshold))
    except (ResultsFileError, ValueError) as error:
        raise fail(str(error)) from None
    if markdown:
        print(result.to_markdown())
    else:
        result.render(console)
    raise typer.Exit(1 if result.has_regressions else 0)


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

    label = escape(CellConfig.from_dict(row["cell"]).label())  # "[compiled]" is text, not a style
    if row["status"] == "ok":
        metrics = row["metrics"]
        return (
            f"[green]ok[/]     {label}: {metrics['images_per_s']:,.1f} img/s "
            f"(median step {metrics['median_step_s'] * 1e3:,.1f} ms, first step {metrics['first_step_s']:.2f} s)"
        )
    return f"[red]{row['status']:<6}[/] {label}: {escape(str(row['error']))}"


if __name__ == "__main__":
    app()
