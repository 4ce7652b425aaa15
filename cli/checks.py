"""The commands that check rather than measure: ``variants``, ``parity``, ``check-model`` and ``selfcheck``."""

import os
from typing import Annotated

import typer
from rich.markup import escape

from cli.common import console, default_frameworks, err_console, fail, quiet_frameworks
from cli.options import BatchSize, Frameworks, Opt, Rtol, Seconds, Seed, SplitImpls, Variant, Variants
from implementations.keras_backend import DEFAULT_KERAS_BACKEND
from implementations.spec import SpecError
from implementations.variants import BUILDABLE_VARIANTS, SPLIT_IMPLS, get_variant

ParityVariants = Variants(f"Variant to check (repeatable). Default: {', '.join(BUILDABLE_VARIANTS)}.")
ParitySplitImpls = SplitImpls("Split formulation: grouped or towers (repeatable). Default: both.")
ParityBatch = BatchSize("Random images per check.")
ParitySeed = Seed("Seed for weights and inputs.")
KerasBackend = Opt(str, "--keras-backend", help="Keras 3 backend the Keras model runs on: tensorflow, jax or torch.")
Target = Annotated[
    str, typer.Argument(help="Your model's factory: path/to/port.py:FUNCTION or package.module:FUNCTION.")
]
Against = Opt(str, "--against", help="Variant to check against.")
PortSeed = Seed("Seed for the copied weights and the inputs.")
PortTimeout = Seconds(
    "--timeout",
    "Seconds the whole check may take (importing your module, building both models, comparing them); past it the "
    "check is stopped, exit code 2.",
)
PORT_TIMEOUT_S = 600.0  # an ImageNet-sized Keras model built and run twice on a 2-core CPU takes about a minute
SelfcheckFrameworks = Frameworks("torch or keras (repeatable).")
SelfcheckVariant = Variant("Variant to time.")
SelfcheckBatch = BatchSize("Images per step.", "-b")
Steps = Opt(int, "--steps", min=1, help="Steps per round (at least seven rounds of each loop, alternating).")
TimeBudget = Opt(
    float, "--time-budget", min=0.0, help="Seconds per framework and mode for more rounds while undecided."
)


def variants() -> None:
    """List the variants: input shape, classes, parameters and forward FLOPs, computed from the spec."""
    from implementations.variants import every_variant
    from reports.parity_table import render_variants, variants_frame

    render_variants(variants_frame(every_variant()), console)


def parity(
    variants: ParityVariants = None,
    split_impls: ParitySplitImpls = None,
    rtol: Rtol = 1e-4,
    batch_size: ParityBatch = 2,
    seed: ParitySeed = 0,
    keras_backend: KerasBackend = DEFAULT_KERAS_BACKEND,
) -> None:
    """Prove Keras and PyTorch build the same network: shapes, parameters and logits, layer by layer.

    PyTorch's weights are copied into the Keras model, one random batch runs through both in
    inference mode, and every layer's output is compared. Exit code 0 only when all match.
    """
    from benchmarks import frameworks

    keras_frameworks = {f.keras_backend: f for f in map(frameworks.get, frameworks.names()) if f.keras_backend}
    if keras_backend not in keras_frameworks:
        raise fail(f"unknown Keras backend {keras_backend!r}; choose from {', '.join(keras_frameworks)}")
    if reason := keras_frameworks[keras_backend].missing():
        raise fail(reason)
    os.environ["KERAS_BACKEND"] = keras_backend  # read once, when Keras is first imported (below)
    impls = split_impls or list(SPLIT_IMPLS)
    wrong = [impl for impl in impls if impl not in SPLIT_IMPLS]
    if wrong:
        raise fail(f"unknown split implementation {wrong[0]!r}; choose from {', '.join(SPLIT_IMPLS)}")
    try:
        architectures = [get_variant(name) for name in variants or BUILDABLE_VARIANTS]
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
            if keras_backend != DEFAULT_KERAS_BACKEND:
                console.print(f"Keras on the {keras_backend} backend:", highlight=False)
            render_parity(report, console)
            if not report.ok:
                failed.append(f"{arch.name} ({impl}): {report.failures[0]}")
    if failed:
        for line in failed:
            err_console.print(f"[red]parity failed:[/] {escape(line)}", highlight=False)
        raise typer.Exit(1)
    console.print("[green]All parity checks passed.[/]")


def check_model(
    target: Target,
    against: Against = "imagenet-split",
    rtol: Rtol = 1e-4,
    seed: PortSeed = 0,
    timeout: PortTimeout = PORT_TIMEOUT_S,
) -> None:
    """Check your own AlexNet port (a PyTorch nn.Module or a Keras model) against a variant of the spec.

    Prints each layer's shape and parameters against the spec, copies the suite's weights into
    your model in layer order, compares every layer's output with the suite's model of the same
    framework, and names the first layer that differs with its likely cause. Exit code 0 on a
    match, 1 on a difference, 2 when the model cannot be loaded or run, or gives no verdict within
    --timeout (it runs in a child process of its own).
    """
    from implementations.check_model import CheckModelError, check_target

    try:
        get_variant(against)
        check_target(target)
    except (SpecError, CheckModelError) as error:
        raise fail(str(error)) from None
    quiet_frameworks()
    from benchmarks.check_model_worker import check_in_child
    from reports.check_model_table import render_check

    try:
        result = check_in_child(target, against, seed, rtol, timeout if timeout is not None else PORT_TIMEOUT_S)
    except CheckModelError as error:
        raise fail(str(error)) from None
    render_check(result, console)
    raise typer.Exit(0 if result.ok else 1)


def selfcheck(
    frameworks: SelfcheckFrameworks = None,
    variant: SelfcheckVariant = "cifar100-split",
    batch_size: SelfcheckBatch = 16,
    steps: Steps = 5,
    time_budget: TimeBudget = 60.0,
) -> None:
    """Check the harness costs under 2%: runner's timed loop vs a bare loop, same model, same process.

    The verdict needs the 95% interval of the median overhead to lie on one side of 2%; rounds too
    noisy for that are "inconclusive" (exit 0): rerun on a quieter machine or with more --time-budget.
    """
    from benchmarks import frameworks as registry
    from benchmarks.measure.selfcheck import selfcheck_cells
    from benchmarks.runner import run_selfcheck
    from reports.console import render_selfcheck

    names = default_frameworks(frameworks, list(registry.default_names()))
    wrong = [name for name in names if name not in registry.names()]
    if wrong:
        raise fail(f"unknown framework {', '.join(map(repr, wrong))}; valid: {', '.join(registry.names())}")
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
