"""AlexNet in Keras 3 and PyTorch: parity checks and benchmarks from one spec.

Run ``python bench.py --help`` for the commands. Frameworks are imported only by the commands
that need them, so listing variants or asking for help is instant.
"""

from __future__ import annotations

import os
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


if __name__ == "__main__":
    app()
