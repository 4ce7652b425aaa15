"""What every framework adapter answers, so that no other module branches on a framework's name.

An adapter is light to import: it names its packages and states its facts (label, colour, default
split formulation, fast paths, device modes). The heavy work (importing the framework, building
the model, the timed step) happens in its methods, inside the worker process that measures a cell.
The parent process never imports a framework.
"""

from __future__ import annotations

import importlib.util
from typing import TYPE_CHECKING

from benchmarks.cell import FAST_PATHS, fast_path

if TYPE_CHECKING:
    from benchmarks.accuracy.training import TrainConfig, Trainer
    from benchmarks.cell import CellConfig, PreparedCell
    from implementations.weight_mapping import LayerWeights

# Ways a cell can use several devices: the split model-parallel, the single tower data-parallel.
MULTI_DEVICE_MODES = ("model", "data")


class Framework:
    """One way of running the suite's AlexNet: a framework, or Keras on one of its backends."""

    name: str = ""  # what users type: ``-f NAME``; stored in every row
    label: str = ""  # what readers see in tables
    colour: str = "#7f7f7f"  # its line and bar colour in plots
    marker: str = "o"
    default_split_impl: str = "grouped"  # the faster formulation where this framework was measured
    packages: tuple[str, ...] = ()  # importable modules it needs
    install_hint: str = ""  # the command that installs them
    compared_by_default: bool = False  # in the default pair of ``run`` and ``train``
    fast_paths: tuple[str, ...] = ()  # names of those of benchmarks.cell.FAST_PATHS it implements
    multi_device: tuple[str, ...] = ()  # subset of MULTI_DEVICE_MODES
    multi_node: bool = False  # data-parallel over several machines (benchmarks.multinode)
    trains: bool = False  # whether ``bench.py train`` can run it
    keras_backend: str | None = None  # KERAS_BACKEND its workers get (None: not Keras)
    math_library: str = ""  # the library whose arithmetic it computes with (implementations.math_mode names)
    # What ``bench.py ab``'s fork server imports once, so that each pair's forked workers skip it; empty: no fork
    # server (fresh workers), as for a runtime that is not safe to fork once imported (JAX).
    preload_modules: tuple[str, ...] = ()

    def missing(self) -> str | None:
        """Why this framework cannot run in this installation, or None when it can."""
        absent = [name for name in self.packages if importlib.util.find_spec(name) is None]
        if not absent:
            return None
        return f"{self.name} needs {', '.join(absent)}, which is not installed: {self.install_hint}"

    def unsupported(self, config: CellConfig) -> str | None:
        """Why this framework cannot measure ``config``, or None; checked before any worker starts."""
        wanted = [path.option for path in FAST_PATHS if path.used_by(config) and path.name not in self.fast_paths]
        if wanted:
            offered = ", ".join(fast_path(name).option for name in self.fast_paths) or "none"
            return f"{self.name} does not take {', '.join(wanted)} (its fast paths: {offered}); drop it or {self.name}"
        if config.nodes > 1 and not self.multi_node:
            return f"{self.name} runs on one machine in this suite; drop it or --nodes"
        if config.parallel != "none" and config.parallel not in self.multi_device:
            return (
                f"{self.name} runs on one device in this suite; the multi-device paths are those of the frameworks "
                f"that list {config.parallel}-parallel. Use --gpus 1 or drop {self.name}."
            )
        return None

    def fast_path_applies(self, path: str, config: CellConfig) -> bool:
        """Whether ``--best`` should try ``path`` on ``config`` (an adapter may narrow its own list)."""
        return path in self.fast_paths

    def launcher(self, config: CellConfig) -> list[str]:
        """Arguments that start the worker module (``-m benchmarks.worker`` by default)."""
        return ["-m", "benchmarks.worker"]

    def worker_environment(self, config: CellConfig | None) -> dict[str, str]:
        """Environment variables a worker of this framework needs before anything is imported."""
        return {"KERAS_BACKEND": self.keras_backend} if self.keras_backend else {}

    def explain_exit(self, config: CellConfig, stderr: str) -> tuple[str, str] | None:
        """(status, error) of a worker that ended without a result, read from its launcher's last words; or None."""
        return None

    def prepare(self, config: CellConfig) -> PreparedCell:
        """Build the model and data on the cell's devices; return the step to time and its helpers."""
        raise NotImplementedError(f"{self.name} cannot prepare a benchmark cell")

    def pin_strict_fp32(self) -> str:
        """In a worker, before any model exists: strict fp32 (TF32 off) in the library it computes with; the
        mode in words. Training parity needs it: its controls measure fp32 rounding, not TF32's."""
        from implementations import math_mode

        math_mode.set_math_mode(self.math_library, math_mode.STRICT_FP32)
        return math_mode.DESCRIPTIONS[math_mode.STRICT_FP32]

    def other_kernels_environment(self, parent: dict[str, str]) -> dict[str, str]:
        """Variables that make a worker (started from ``parent``'s environment) sum through other kernels than
        this framework's default ones, set before it loads; {} where the switch is made in the worker."""
        return {}

    def use_other_kernels(self, trainer: Trainer) -> str:
        """In a training-parity control's worker: move ``trainer`` to other kernels, which sum in another
        order; what they are, in words ("" where the framework has none to offer)."""
        return ""

    def trainer(self, config: TrainConfig, weights: LayerWeights) -> Trainer:
        """A trainer for ``bench.py train``, starting from the shared ``weights``."""
        raise NotImplementedError(f"{self.name} has no accuracy trainer")
