"""Check anyone's own AlexNet port (a PyTorch ``nn.Module`` or a Keras model) against a spec variant.

``check_model("my_port.py:build", arch)`` calls the factory, lists the port's layers in the order
they run, lines them up with the spec's layers by kind, and compares each layer's configuration,
output shape and parameter count with the spec. When every weight layer fits, the suite's initial
weights (``initial_weights``) are copied into the port in layer order, one batch of paper-scale
inputs runs through the port and through the suite's own model of the same framework, and every
layer's output is compared (``implementations.parity``'s measure and tolerance). The report names
the first layer that differs and the likely cause: LRN constants, padding, pooling, grouping or
flatten order.

Ports are read call by call: a PyTorch leaf module called once per tower (an LRN wrapper that
normalises each half of the channels) is listed once per call, and so is a Keras layer called on
each tower. The paper's two-tower split may be written as grouped convolutions (``groups=2``) or as
separate per-tower modules joined along channels (``torch.cat``, Keras ``Concatenate``, the towers
cut out with slices or ``Lambda`` layers): the parts of one spec layer are merged into one port
layer (:func:`merge_towers`), whether the port runs each layer for every tower before the next
(layer-major) or runs each tower through several layers before the next tower (tower-major). The
spec's weights are then split among the parts along the output axis, as the grouped layout is.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

from implementations.keras_port import KerasPortReader
from implementations.parity import DEFAULT_INPUT_SCALE, DEFAULT_RTOL
from implementations.port_check import CheckModelError, CheckReport, PortReader
from implementations.spec import Architecture
from implementations.torch_port import TorchPortReader

# One reader per framework whose ports can be checked (each beside its framework's builder).
READERS: tuple[PortReader, ...] = (TorchPortReader(), KerasPortReader())
__all__ = ["CheckModelError", "CheckReport", "check_model", "load_factory"]


def check_target(target: str) -> tuple[str, str, Path | None]:
    """(where, function, the file or None for a module) of a factory named ``path/to/file.py:function`` or
    ``package.module:function``; a target of the wrong form, or a file that is not there, is refused in one line."""
    where, sep, function = target.rpartition(":")
    if not sep or not where or not function:
        raise CheckModelError(f"{target!r}: expected PATH.py:FUNCTION or MODULE:FUNCTION")
    if not (where.endswith(".py") or "/" in where or "\\" in where):
        return where, function, None
    path = Path(where)
    try:
        is_folder, is_file = path.is_dir(), path.is_file()
    except OSError as error:  # a name too long for the file system
        raise CheckModelError(f"{where}: {error.strerror or error}") from None
    if is_folder:
        raise CheckModelError(f"{where} is a directory; name the Python file in it that defines {function}")
    if not is_file:
        raise CheckModelError(f"{where}: no such file")
    return where, function, path


def load_factory(target: str) -> Callable[[], object]:
    """``path/to/file.py:function`` or ``package.module:function`` -> the function."""
    where, function, path = check_target(target)
    try:
        if path is not None:
            spec = importlib.util.spec_from_file_location(f"_port_{path.stem}", path)
            module = importlib.util.module_from_spec(spec)
            sys.path.insert(0, str(path.resolve().parent))  # the port's own sibling imports
            try:
                spec.loader.exec_module(module)
            finally:
                sys.path.pop(0)
        else:
            # As `python -m` does: a package in the folder the command runs from is importable by its name.
            sys.path.insert(0, os.getcwd())
            try:
                module = importlib.import_module(where)
            finally:
                sys.path.pop(0)
    except CheckModelError:
        raise
    except Exception as error:  # the user's code: any failure is reported as one line
        raise CheckModelError(f"cannot import {where}: {type(error).__name__}: {error}") from None
    factory = getattr(module, function, None)
    if not callable(factory):
        raise CheckModelError(f"{where} has no function {function!r}")
    return factory


def reader_of(model: object) -> PortReader:
    """The reader of the framework ``model`` belongs to, asked only of frameworks its classes come from (so none is
    imported for the asking); anything else is refused."""
    libraries = {cls.__module__.partition(".")[0] for cls in type(model).__mro__}
    for reader in READERS:
        if reader.library in libraries and reader.is_model(model):
            return reader
    raise CheckModelError(f"the factory returned a {type(model).__name__}, not a torch nn.Module or a Keras model")


def build_port(target: str) -> tuple[object, PortReader]:
    factory = load_factory(target)
    try:
        model = factory()
    except Exception as error:
        raise CheckModelError(f"{target}() failed: {type(error).__name__}: {error}") from None
    return model, reader_of(model)


def check_model(
    target: str,
    arch: Architecture,
    *,
    seed: int = 0,
    batch_size: int = 2,
    rtol: float = DEFAULT_RTOL,
    input_scale: float = DEFAULT_INPUT_SCALE,
) -> CheckReport:
    """Build the port from ``target`` and check it against ``arch`` (see the module docstring)."""
    model, reader = build_port(target)
    x = np.random.default_rng(seed).standard_normal((batch_size, *arch.input_shape)) * input_scale
    x = x.astype(np.float32)
    checks, extra, why = reader.check(model, arch, seed, rtol, x)
    return CheckReport(
        target, reader.framework, arch.name, rtol, checks, extra, compared=not why, not_compared_because=why
    )
