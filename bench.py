"""AlexNet in Keras 3 and PyTorch: parity checks and benchmarks from one spec.

Run ``python bench.py --help`` for the commands. Each command parses its options, calls one
function of the suite and renders what it returns. Frameworks are imported only by the commands
that need them, so listing variants or asking for help is instant.
"""

from __future__ import annotations

import math
import os
import signal
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from benchmarks import frameworks
from implementations.spec import SpecError
from implementations.variants import BUILDABLE_VARIANTS, SPLIT_IMPLS, get_variant

app = typer.Typer(
    help="AlexNet (Krizhevsky et al. 2012) in Keras 3 and PyTorch: prove they are the same network, then measure them.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
# Tables are wide; when output goes to a file or pipe, do not wrap them at 80 columns.
console = Console(width=None if Console().is_terminal else 160)
err_console = Console(stderr=True, soft_wrap=True)
RESULTS = Path("results/results.jsonl")


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print one line for a user mistake and return the exit to raise (no traceback)."""
    err_console.print(f"[red]error:[/] {escape(message)}", highlight=False)
    return typer.Exit(code)


def warn(message: str) -> None:
    err_console.print(f"[yellow]warning:[/] {escape(message)}", highlight=False)


def default_frameworks(given: list[str] | None, candidates: list[str]) -> list[str]:
    """The frameworks the user named; else those of ``candidates`` this installation has, one line for each left out."""
    if given:
        return given
    found, left_out = frameworks.installed(candidates)
    for line in left_out:
        err_console.print(f"note: {escape(line)}", highlight=False)
    if not found:
        raise fail(f"none of {', '.join(candidates)} is installed; see the lines above")
    return found


def positive_seconds(value: float | None) -> float | None:
    if value is not None and (not math.isfinite(value) or value <= 0):
        raise typer.BadParameter(f"must be a positive number of seconds, got {value:g}")
    return value


def memory_cap(value: float | None) -> float | None:
    # A worker needs about 0.5 GB just to import a framework; a smaller cap could never run a cell.
    if value is not None and (not math.isfinite(value) or value < 0.5):
        raise typer.BadParameter(f"must be at least 0.5 (GB) and finite, got {value:g}")
    return value


def quiet_frameworks() -> None:
    """Keep TensorFlow's start-up chatter out of the tables."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")


@app.command()
def variants() -> None:
    """List the variants: input shape, classes, parameters and forward FLOPs, computed from the spec."""
    from implementations.variants import every_variant
    from reports.parity_table import render_variants, variants_frame

    render_variants(variants_frame(every_variant()), console)


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
    keras_frameworks = {f.keras_backend: f for f in map(frameworks.get, frameworks.names()) if f.keras_backend}
    if keras_backend not in keras_frameworks:
        raise fail(f"unknown Keras backend {keras_backend!r}; choose from {', '.join(keras_frameworks)}")
    if reason := keras_frameworks[keras_backend].missing():
        raise fail(reason)
    os.environ["KERAS_BACKEND"] = keras_backend  # read once, when Keras is first imported (below)
    impls = split_impl or list(SPLIT_IMPLS)
    wrong = [impl for impl in impls if impl not in SPLIT_IMPLS]
    if wrong:
        raise fail(f"unknown split implementation {wrong[0]!r}; choose from {', '.join(SPLIT_IMPLS)}")
    try:
        architectures = [get_variant(name) for name in variant or BUILDABLE_VARIANTS]
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
            err_console.print(f"[red]parity failed:[/] {escape(line)}", highlight=False)
        raise typer.Exit(1)
    console.print("[green]All parity checks passed.[/]")


@app.command("check-model")
def check_model_command(
    target: Annotated[
        str, typer.Argument(help="Your model's factory: path/to/port.py:FUNCTION or package.module:FUNCTION.")
    ],
    against: Annotated[str, typer.Option("--against", help="Variant to check against.")] = "imagenet-split",
    rtol: Annotated[float, typer.Option(help="Tolerance on |diff| relative to the largest activation.")] = 1e-4,
    seed: Annotated[int, typer.Option(help="Seed for the copied weights and the inputs.")] = 0,
) -> None:
    """Check your own AlexNet port (a PyTorch nn.Module or a Keras model) against a variant of the spec.

    Prints each layer's shape and parameters against the spec, copies the suite's weights into
    your model in layer order, compares every layer's output with the suite's model of the same
    framework, and names the first layer that differs with its likely cause. Exit code 0 on a
    match, 1 on a difference, 2 when the model cannot be loaded or run.
    """
    try:
        arch = get_variant(against)
    except SpecError as error:
        raise fail(str(error)) from None
    quiet_frameworks()
    from implementations.check_model import CheckModelError, check_model
    from reports.check_model_table import render_check

    try:
        result = check_model(target, arch, seed=seed, rtol=rtol)
    except CheckModelError as error:
        raise fail(str(error)) from None
    render_check(result, console)
    raise typer.Exit(0 if result.ok else 1)


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
        int | None,
        typer.Option(
            help="Timed steps per process: the minimum under --time-budget, the exact count with --time-budget 0. "
            "Default: 5 on CPU, 20 on GPU."
        ),
    ] = None,
    time_budget: Annotated[
        float | None,
        typer.Option(
            help="Seconds of timed steps per process: steps go on until the median is within --target-precision "
            "or this is spent. 0: exactly --steps. Default: 5, 1.5 with --quick."
        ),
    ] = None,
    target_precision: Annotated[
        float | None,
        typer.Option(help="Stop timing once the median's 95% interval is within this fraction. Default: 0.02."),
    ] = None,
    warmup: Annotated[
        int | None,
        typer.Option(
            help="Warm-up steps (the first is compile/tracing, reported apart). Default: 3, 10 on GPU, 2 with --quick."
        ),
    ] = None,
    repeats: Annotated[
        int | None,
        typer.Option(
            help="Processes per cell (each repeat a fresh process; compare judges per-process medians). Default: 3; "
            "1 for a first look that compare cannot judge."
        ),
    ] = None,
    gpus: Annotated[
        int | None,
        typer.Option(help="GPUs to use: 0 = CPU. Default: all visible. With 2 or more, 1 GPU runs too, for scaling."),
    ] = None,
    simulate_devices: Annotated[
        int,
        typer.Option(
            help="Run the multi-device code paths on N logical devices: on the CPU, or with --gpus 1 on one GPU "
            "(both towers, or N data-parallel ranks, share it; results labelled simulated)."
        ),
    ] = 0,
    quick: Annotated[
        bool, typer.Option("--quick", help="A small sweep for a first look: CIFAR-100 variants, batch 16, 5 steps.")
    ] = False,
    results: Annotated[Path, typer.Option(help="JSON Lines file the rows are appended to.")] = RESULTS,
    resume: Annotated[
        bool, typer.Option("--resume", help="Skip cells that already have a successful row in --results.")
    ] = False,
    cell_timeout: Annotated[
        float | None,
        typer.Option(
            help="Seconds before a cell's worker is killed and recorded as a timeout. Default: 900 on CPU, 2400 on "
            "GPU (TensorFlow JIT-compiles its kernels from PTX on GPUs newer than its build: minutes for one step).",
            callback=positive_seconds,
        ),
    ] = None,
    memory_limit_gb: Annotated[
        float | None,
        typer.Option(
            "--memory-limit-gb",
            help="Cap each worker's memory (at least 0.5); a cell that needs more is recorded as out of memory.",
            callback=memory_cap,
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
    math_mode: Annotated[
        str | None,
        typer.Option(
            help="fp32 cells on GPUs: tf32 (TensorFloat-32 tensor cores, TensorFlow's and JAX's default) or fp32 "
            "(strict, torch's matmul default). Set the same way in every framework. Default: tf32 on GPU; CPUs: fp32."
        ),
    ] = None,
    compile_model: Annotated[
        bool, typer.Option("--compile", help="torch.compile for PyTorch, XLA (jit_compile) for Keras.")
    ] = False,
    channels_last: Annotated[
        bool, typer.Option("--channels-last", help="PyTorch channels_last memory format.")
    ] = False,
    xeon_launch: Annotated[
        bool,
        typer.Option(
            "--xeon-launch",
            help="PyTorch on CPUs: start each worker through torch.backends.xeon.run_cpu (cores pinned, one OpenMP "
            "thread per physical core, tcmalloc or jemalloc preloaded when installed where it looks).",
        ),
    ] = False,
    shard: Annotated[
        str | None,
        typer.Option(help="i/n: run only the i-th of n equal shares of the cells, so n machines cover the sweep."),
    ] = None,
    nodes: Annotated[
        int | None,
        typer.Option(
            help="Machines running one cell data-parallel, one bench.py run each. Default: SLURM_NNODES, else 1."
        ),
    ] = None,
    rendezvous: Annotated[
        str | None,
        typer.Option(help="HOST:PORT of the first node (--nodes). Default under SLURM: the job's first host, 29500."),
    ] = None,
    node_rank: Annotated[
        int | None, typer.Option(help="This node's rank, 0 on the first (--nodes). Default: SLURM_PROCID.")
    ] = None,
    rdzv_id: Annotated[
        str | None, typer.Option(help="Rendezvous id shared by the nodes of one run. Default: the SLURM job id.")
    ] = None,
    join_timeout: Annotated[
        float,
        typer.Option(
            help="Seconds the nodes wait for each other per cell before it is a timeout.", callback=positive_seconds
        ),
    ] = 300.0,
) -> None:
    """Measure training and inference throughput and memory, each cell in its own process.

    Every finished cell is appended to --results at once (JSON Lines); a failed cell becomes a row
    with its status and the sweep goes on. Ctrl-C or SIGTERM keeps every finished row.
    """
    from benchmarks.host import Host
    from benchmarks.matrix import SweepError, SweepOptions, model_parallel_note, plan
    from benchmarks.multinode import MultiNodeError, check_port_free, node_setup
    from benchmarks.results import ResultsFileError, check_writable_folder
    from benchmarks.shard import ShardError, parse_shard, take_shard
    from benchmarks.sweep import open_sweep

    try:
        share = parse_shard(shard) if shard is not None else None
        setup = node_setup(os.environ, nodes, rendezvous, node_rank, rdzv_id, join_timeout)
    except (ShardError, MultiNodeError) as error:
        raise fail(str(error)) from None
    if setup.nodes > 1 and resume:
        raise fail("--resume is for one machine: every node of a multi-node run must run the same cells")
    host = Host.detect()
    if gpus is None:
        gpus = len(host.gpus)
    elif gpus > len(host.gpus):
        seen = f"found {len(host.gpus)}" + (f" ({', '.join(host.gpus)})" if host.gpus else f": {host.gpu_probe}")
        raise fail(f"asked for {gpus} GPUs but {seen}")
    options = SweepOptions(
        frameworks=default_frameworks(
            framework,
            [name for name in frameworks.default_names() if setup.nodes == 1 or frameworks.get(name).multi_node],
        ),
        variants=variant or [],
        modes=mode or [],
        batch_sizes=batch_size or [],
        split_impls=split_impl or [],
        steps=steps,
        warmup=warmup,
        repeats=repeats,
        time_budget_s=time_budget,
        target_precision=target_precision,
        gpus=gpus,
        simulate_devices=simulate_devices,
        quick=quick,
        seed=seed,
        precision=precision,
        math_mode=math_mode,
        compiled=compile_model,
        channels_last=channels_last,
        xeon_launch=xeon_launch,
        best=best,
        native_bf16=host.native_bf16,
        nodes=setup.nodes,
    )
    report_to = None if no_report else (report_dir or results.parent / "report")
    try:
        cells = setup.place(take_shard(plan(options), share) if share else plan(options))
        if not setup.first:
            from reports.console import take_part

            raise typer.Exit(take_part(cells, setup, cell_timeout, console))
        check_port_free(setup)
        sweep = open_sweep(cells, results, resume)
        if report_to is not None:
            check_writable_folder(report_to, "the report")
    except (SweepError, SpecError, ResultsFileError, MultiNodeError) as error:
        raise fail(str(error)) from None
    for warning in sweep.warnings:
        warn(warning)
    if note := model_parallel_note(options):
        console.print(f"note: {note}", highlight=False)
    if best and not gpus and not simulate_devices and not host.native_bf16:
        console.print(
            "note: bf16 not tried: this CPU has no native bf16 (AVX512-BF16/AMX); emulated bf16 is far "
            "slower than fp32. Ask for it with --precision bf16.",
            highlight=False,
        )
    if resume:
        console.print(f"resuming: {sweep.skipped} of {len(sweep.jobs)} cells already done in {escape(str(results))}")
    from benchmarks.matrix import default_cell_timeout

    timeout = cell_timeout if cell_timeout is not None else default_cell_timeout(gpus)
    execute_with_progress(sweep, "cell", timeout, memory_limit_gb, gpu_uuids=host.gpu_uuids)

    from benchmarks.sweep import latest_rows
    from reports.summary import render_throughput, rows_to_frame

    rows = latest_rows(sweep)

    frame = rows_to_frame(rows)
    render_throughput(frame, console)
    if best:
        from reports.best import render_best

        render_best(frame, console)
    from reports.findings import build_findings, render_findings

    render_findings(build_findings(frame), console)
    failed = [row for row in rows if not row.ok]
    console.print(f"{len(rows)} cells, {len(failed)} failed; rows in {escape(str(results))}")
    if report_to is not None:
        write_and_announce_report([results], report_to)
    if failed:
        raise typer.Exit(1)


def execute_with_progress(sweep, noun: str, timeout_s: float, memory_limit_gb: float | None = None, **options) -> list:
    """Run a sweep with a progress display; a results file in use, or Ctrl-C, ends it in one line."""
    from benchmarks.results import ResultsFileError
    from reports.console import run_with_progress

    limit = int(memory_limit_gb * 2**30) if memory_limit_gb else None
    try:
        return run_with_progress(sweep, console, noun, timeout_s=timeout_s, memory_limit_bytes=limit, **options)
    except ResultsFileError as error:
        raise fail(str(error)) from None
    except KeyboardInterrupt:
        raise fail(f"interrupted; every finished {noun} is saved in {sweep.results}", code=130) from None


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
    results: Annotated[Path, typer.Option(help="JSON Lines file the rows are appended to.")] = RESULTS,
    timeout: Annotated[
        float, typer.Option(help="Seconds before a training worker is killed.", callback=positive_seconds)
    ] = 7200.0,
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
    from benchmarks.accuracy.datasets import DatasetError
    from benchmarks.accuracy.plan import TrainingPlan, TrainingPlanError, check_data, training_jobs
    from benchmarks.accuracy.training import TrainConfig
    from benchmarks.results import ResultsFileError
    from benchmarks.sweep import open_sweep

    data_dir = data_dir.expanduser().resolve() if data_dir else None  # workers run from the project root
    template = TrainConfig(
        framework="",
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
    trainable = [name for name in frameworks.default_names() if frameworks.get(name).trains]
    framework = default_frameworks(framework, trainable)
    plan = TrainingPlan(tuple(framework), tuple(variant or ()), split_impl, repeats=2 if check_repro else 1)
    try:
        jobs = training_jobs(plan, template)
        check_data(dataset, data_dir, download)
        if check_parity:
            from benchmarks.accuracy.parity import TooFewSteps, run_check

            impls: dict[str, dict[str, str]] = {}
            for job in jobs:
                impls.setdefault(job.variant, {})[job.framework] = job.split_impl
            if any(set(sides) != {"torch", "keras"} for sides in impls.values()):
                raise fail("--check-parity trains torch and keras side by side: give both with -f, or neither")
            fields = dict(dataset=dataset, epochs=epochs, batch_size=batch_size, learning_rate=learning_rate)
            fields |= dict(warmup_epochs=warmup_epochs, init=init, seed=seed, max_train_images=max_train_images)
            fields |= dict(data_dir=template.data_dir, download=download)
            try:
                code = run_check(list(impls), impls, parity_steps, console, timeout_s=timeout, **fields)
            except TooFewSteps as error:
                raise fail(str(error)) from None
            except KeyboardInterrupt:
                raise fail("interrupted; the parity check writes nothing, so nothing is lost", code=130) from None
            raise typer.Exit(code)
        sweep = open_sweep(jobs, results)
    except (TrainingPlanError, DatasetError, ResultsFileError) as error:
        raise fail(str(error)) from None
    for warning in sweep.warnings:
        warn(warning)
    rows = [row.to_dict() for row in execute_with_progress(sweep, "training run", timeout)]

    from reports.accuracy_summary import loss_gaps, render_accuracy, repro_verdicts

    render_accuracy(rows, console)
    for line in loss_gaps(rows):
        console.print(line, highlight=False)
    verdicts = repro_verdicts(rows) if check_repro else []
    for ok, line in verdicts:
        console.print(("[green]reproducible[/] " if ok else "[red]NOT reproducible[/] ") + line, highlight=False)
    if any(row["status"] != "ok" for row in rows) or any(not ok for ok, _ in verdicts):
        raise typer.Exit(1)


@app.command()
def selfcheck(
    framework: Annotated[
        list[str] | None, typer.Option("--framework", "-f", help="torch or keras (repeatable).")
    ] = None,
    variant: Annotated[str, typer.Option("--variant", "-v", help="Variant to time.")] = "cifar100-split",
    batch_size: Annotated[int, typer.Option("--batch-size", "-b", min=1, help="Images per step.")] = 16,
    steps: Annotated[
        int, typer.Option(min=1, help="Steps per round (at least seven rounds of each loop, alternating).")
    ] = 5,
    time_budget: Annotated[
        float, typer.Option(min=0.0, help="Seconds per framework and mode for more rounds while undecided.")
    ] = 60.0,
) -> None:
    """Check the harness costs under 2%: runner's timed loop vs a bare loop, same model, same process.

    The verdict needs the 95% interval of the median overhead to lie on one side of 2%; rounds too
    noisy for that are "inconclusive" (exit 0): rerun on a quieter machine or with more --time-budget.
    """
    from benchmarks.measure.selfcheck import selfcheck_cells
    from benchmarks.runner import run_selfcheck
    from reports.console import render_selfcheck

    names = default_frameworks(framework, list(frameworks.default_names()))
    wrong = [name for name in names if name not in frameworks.names()]
    if wrong:
        raise fail(f"unknown framework {', '.join(map(repr, wrong))}; valid: {', '.join(frameworks.names())}")
    try:
        cells = selfcheck_cells(names, variant, batch_size, steps, time_budget)
    except SpecError as error:
        raise fail(str(error)) from None
    results = []
    for cell in cells:
        with console.status(escape(f"timing {cell.framework} {cell.mode}")):
            results.append((cell, run_selfcheck(cell)))
    if not render_selfcheck(results, console):
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
    paths = results or [RESULTS]
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
        warn(warning)
    for note in files.notes:
        console.print(f"note: {escape(note)}", highlight=False)
    written = [files.markdown, files.html, files.csv, *([files.parquet] if files.parquet else [])]
    listed = escape(", ".join(str(path) for path in written))
    console.print(f"report: {listed} (+{len(files.plots)} plots)", highlight=False)


@app.command("compare")
def compare_results(
    base: Annotated[Path, typer.Argument(help="Results file of the baseline.")],
    new: Annotated[Path, typer.Argument(help="Results file to judge against it.")],
    threshold: Annotated[str, typer.Option(help="Slowdown that counts as a regression, e.g. 5% or 0.05.")] = "5%",
    drift: Annotated[
        str,
        typer.Option(
            help="How far a whole run of one build moves between invocations on this machine (every cell alike); "
            "a whole-run change within it is not called a regression. Default: 25%, what shared CPUs showed; "
            "lower it on a dedicated machine."
        ),
    ] = "25%",
    markdown: Annotated[
        bool, typer.Option("--markdown", help="Print Markdown (for a PR comment) instead of a table.")
    ] = False,
) -> None:
    """Per cell, the change in images/s, a test over per-process medians and the smallest change it could see.

    Exits 1 when a significant slowdown exceeds the threshold (or a cell that worked now fails). A
    cell whose detectable change is above the threshold is "inconclusive: need about N repeats".
    Each cell is judged against the whole run's shift (the median change over the cells); the
    shift itself counts only beyond --drift.
    """
    from benchmarks.results import ResultsFileError
    from reports.compare import compare, parse_threshold

    missing = [str(path) for path in (base, new) if not path.is_file()]
    if missing:
        raise fail(f"no results file at {', '.join(missing)}")
    try:
        result = compare([base], [new], threshold=parse_threshold(threshold), drift=parse_threshold(drift, "drift"))
    except (ResultsFileError, ValueError) as error:
        raise fail(str(error)) from None
    if markdown:
        print(result.to_markdown())
    else:
        result.render(console)
    if result.nothing_to_compare:
        raise fail(f"nothing to compare: {base} and {new} have no cell in common")
    raise typer.Exit(1 if result.has_regressions else 0)


def _terminate(signum: int, frame: object) -> None:
    """SIGTERM (``timeout``, CI cancellation, ``docker stop``) stops a sweep the way Ctrl-C does."""
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> None:
    """The command line: one line on stderr and exit code 2 for a usage mistake, never a traceback."""
    signal.signal(signal.SIGTERM, _terminate)
    for problem in frameworks.PLUGIN_PROBLEMS:
        warn(problem)
    try:
        code = app(args=argv, standalone_mode=False)
    except typer.TyperException as error:  # typer's usage errors: a bad option, a bad value
        code = getattr(error, "exit_code", 2)
        if type(error).__name__ != "NoArgsIsHelpError":  # that one has printed the help already
            context = getattr(error, "ctx", None)
            command = context.command_path if context else "bench.py"
            err_console.print(
                f"[red]error:[/] {escape(error.format_message())} (see {escape(command)} --help)", highlight=False
            )
    except (typer.Abort, KeyboardInterrupt):
        err_console.print("[red]error:[/] interrupted", highlight=False)
        code = 130
    sys.exit(code or 0)


if __name__ == "__main__":
    main()
