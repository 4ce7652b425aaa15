"""The framework registry: every adapter the suite knows, by the name users type.

Adding a framework means writing one adapter (see :mod:`benchmarks.frameworks.base`) and calling
:func:`register`; the matrix, the worker, ``--best`` and the reports find it here. An adapter
outside this package registers itself when its module is named in ``$ALEXNET_BENCH_FRAMEWORKS``.
"""

from __future__ import annotations

import importlib
import os

from benchmarks.frameworks.base import Framework
from benchmarks.frameworks.keras_backends import KerasOnJax, KerasOnTorch
from benchmarks.frameworks.keras_tf import KerasOnTensorFlow
from benchmarks.frameworks.pytorch import PyTorch

_REGISTRY: dict[str, Framework] = {}


class UnknownFrameworkError(ValueError):
    """A framework name the registry does not hold; the message lists the valid ones."""


def register(framework: Framework) -> Framework:
    """Add (or replace) an adapter under its name."""
    if not framework.name:
        raise ValueError("a framework adapter needs a name")
    _REGISTRY[framework.name] = framework
    return framework


def unregister(name: str) -> None:
    _REGISTRY.pop(name, None)


def names() -> tuple[str, ...]:
    return tuple(_REGISTRY)


def default_names() -> tuple[str, ...]:
    """The frameworks compared when the user names none (native PyTorch and Keras on TensorFlow)."""
    return tuple(name for name, framework in _REGISTRY.items() if framework.compared_by_default)


def installed(names: tuple[str, ...] | list[str]) -> tuple[list[str], list[str]]:
    """``names`` this installation can run, and for each one left out a line saying why and how to install it.

    The command line resolves its default frameworks through this once, so a torch-only machine plans torch alone
    instead of failing every Keras cell; the resolved list is what every cell records.
    """
    found, left_out = [], []
    for name in names:
        reason = get(name).missing()
        (left_out if reason else found).append(reason or name)
    return found, [f"{line}; left out" for line in left_out]


def get(name: str) -> Framework:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnknownFrameworkError(f"unknown framework {name!r}; valid: {', '.join(_REGISTRY)}") from None


def label(name: str) -> str:
    """The name readers see; a framework unknown here (an old results file) keeps its own name."""
    framework = _REGISTRY.get(name)
    return framework.label if framework else name


def colour(name: str) -> str | None:
    framework = _REGISTRY.get(name)
    return framework.colour if framework else None


def marker(name: str) -> str:
    framework = _REGISTRY.get(name)
    return framework.marker if framework else "o"


for _adapter in (PyTorch(), KerasOnTensorFlow(), KerasOnJax(), KerasOnTorch()):
    register(_adapter)


def default_split_impl(name: str, variant: str) -> str:
    """The split formulation ``name`` runs unless asked otherwise; single towers have one model ("grouped").

    A variant this suite cannot build (a results file's row from another version, a pytest-benchmark group name) is
    read by its name, as the reports read it: split when its name ends in ``-split``.
    """
    from implementations.spec import SpecError
    from implementations.variants import get_variant

    try:
        is_split = get_variant(variant).is_split
    except SpecError:
        is_split = variant.rpartition("-")[2] == "split"
    if not is_split:
        return "grouped"
    framework = _REGISTRY.get(name)
    return framework.default_split_impl if framework else "grouped"


PLUGINS_VARIABLE = "ALEXNET_BENCH_FRAMEWORKS"


def load_plugins(modules: str | None = None) -> list[str]:
    """Import the modules named in ``$ALEXNET_BENCH_FRAMEWORKS`` (comma-separated); each registers its adapters.

    Worker processes inherit the variable, so a framework added this way is known to them too.
    Returns one line per module that could not be imported (the others still load).
    """
    problems = []
    for module in filter(None, (m.strip() for m in (modules or os.environ.get(PLUGINS_VARIABLE, "")).split(","))):
        try:
            importlib.import_module(module)
        # Any failure of a user's module is reported, not raised; KeyboardInterrupt too, which a module may raise on
        # import as well as Ctrl-C may: it happens before the command line can say "interrupted".
        except (Exception, KeyboardInterrupt) as error:  # noqa: BLE001
            problems.append(f"{PLUGINS_VARIABLE}: cannot import {module}: {type(error).__name__}: {error}")
    return problems


PLUGIN_PROBLEMS = load_plugins()
