"""Options more than one command takes, declared once: the flags, the type and the checks live here; a command
whose help says something of its own passes its words in (``Frameworks("torch or keras ...")``).

Each command's parameter is named as the field of its request it fills, so a request is built from the parsed
options by keyword (``SweepRequest(**options)``); the flag keeps the name users type (``--framework``).
"""

import inspect
import math
from collections.abc import Callable
from dataclasses import MISSING, fields
from pathlib import Path
from typing import Annotated, Any

import typer


def positive_seconds(value: float | None) -> float | None:
    if value is not None and (not math.isfinite(value) or value <= 0):
        raise typer.BadParameter(f"must be a positive number of seconds, got {value:g}")
    return value


def memory_cap(value: float | None) -> float | None:
    # A worker needs about 0.5 GB just to import a framework; a smaller cap could never run a cell.
    if value is not None and (not math.isfinite(value) or value < 0.5):
        raise typer.BadParameter(f"must be at least 0.5 (GB) and finite, got {value:g}")
    return value


def finite(value: Any) -> Any:
    """nan and inf parse as floats, and pass a range check (nan compares false with every bound): refuse them."""
    if isinstance(value, float) and not math.isfinite(value):
        raise typer.BadParameter(f"must be a finite number, got {value:g}")
    return value


def Opt(kind: Any, *flags: str, **option: Any) -> Any:  # noqa: N802 - read as a type in a signature
    """An option of type ``kind`` with its flags, help and checks: what a command's parameter is annotated with.

    Every float option refuses nan and inf (in its own callback where it has one): no command carries one into a row.
    """
    if float in (kind, *getattr(kind, "__args__", ())) and "callback" not in option:  # a callback checks its own
        option["callback"] = finite
    return Annotated[kind, typer.Option(*flags, **option)]


def Frameworks(help: str) -> Any:  # noqa: N802
    return Opt(list[str] | None, "--framework", "-f", help=help)


def Variants(help: str) -> Any:  # noqa: N802
    return Opt(list[str] | None, "--variant", "-v", help=help)


def Variant(help: str) -> Any:  # noqa: N802
    return Opt(str, "--variant", "-v", help=help)


def BatchSize(help: str, *flags: str) -> Any:  # noqa: N802
    return Opt(int, "--batch-size", *flags, min=1, help=help)


def SplitImpls(help: str) -> Any:  # noqa: N802
    return Opt(list[str] | None, "--split-impl", help=help)


def Seed(help: str) -> Any:  # noqa: N802
    return Opt(int, "--seed", help=help)


def Seconds(flag: str, help: str) -> Any:  # noqa: N802
    """A time limit: a positive, finite number of seconds (or none given)."""
    return Opt(float | None, flag, help=help, callback=positive_seconds)


ResultsFile = Opt(Path, "--results", help="JSON Lines file the rows are appended to.")
Rtol = Opt(float, "--rtol", help="Tolerance on |diff| relative to the largest activation.")


def command(request: type, options: dict[str, Any]) -> Callable:
    """Give a command the parameters ``options`` (a field of ``request`` -> its annotated option), in that order and
    with the defaults of those fields: typer reads the signature, and the command receives the values by keyword,
    ready to build ``request(**values)``. A repeatable option defaults to None (its field to an empty list)."""
    defaults = {field.name: None if field.default is MISSING else field.default for field in fields(request)}

    def give(function: Callable) -> Callable:
        keyword = inspect.Parameter.KEYWORD_ONLY
        parameters = [
            inspect.Parameter(name, keyword, default=defaults[name], annotation=kind) for name, kind in options.items()
        ]
        function.__signature__ = inspect.Signature(parameters, return_annotation=None)
        function.__annotations__ = {**options, "return": None}
        return function

    return give
