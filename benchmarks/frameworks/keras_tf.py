"""Keras 3 on TensorFlow: the functional model with the paper's SGD; XLA and mixed bf16 as fast paths.

Two or more devices: split variants run model-parallel (one tower per device), single variants
data-parallel under MirroredStrategy; ``--simulate-devices`` splits the CPU into logical devices.
Several nodes: data-parallel under MultiWorkerMirroredStrategy, one worker process per node.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from benchmarks.frameworks.base import Framework

if TYPE_CHECKING:
    from benchmarks.accuracy.training import TrainConfig, Trainer
    from benchmarks.cell import CellConfig, PreparedCell
    from implementations.weight_mapping import LayerWeights


ONEDNN = "TF_ENABLE_ONEDNN_OPTS"  # TensorFlow's switch for its oneDNN kernels (on by default on x86 CPUs)


def onednn_off(environment: Mapping[str, str]) -> bool:
    return environment.get(ONEDNN, "").strip().lower() in ("0", "false", "off")


class KerasOnTensorFlow(Framework):
    name = "keras"
    label = "Keras"
    colour = "#1f77b4"
    marker = "s"
    # towers: 54 vs grouped 16 img/s training on a 2-core CPU (TensorFlow's grouped-conv gradient
    # is slow there).
    default_split_impl = "towers"
    packages = ("keras", "tensorflow")
    install_hint = "pip install -e '.[tensorflow]'"
    compared_by_default = True
    fast_paths = ("compiled", "bf16")
    multi_device = ("model", "data")
    multi_node = True  # MultiWorkerMirroredStrategy, TF_CONFIG from benchmarks.address_exchange
    trains = True
    keras_backend = "tensorflow"
    math_library = "tensorflow"
    preload_modules = ("benchmarks.frameworks.keras_tf_cell", "tensorflow", "keras", "implementations.keras_alexnet")

    def fast_path_applies(self, path: str, config: CellConfig) -> bool:
        # XLA compiles a step for one device: Keras refuses it for towers on different devices.
        if path == "compiled" and config.parallel == "model":
            return False
        return super().fast_path_applies(path, config)

    def prepare(self, config: CellConfig) -> PreparedCell:
        from benchmarks.frameworks.keras_tf_cell import prepare_keras

        return prepare_keras(config)

    def trainer(self, config: TrainConfig, weights: LayerWeights) -> Trainer:
        from benchmarks.frameworks.keras_trainer import KerasTrainer

        return KerasTrainer(config, weights)

    def other_kernels_environment(self, parent: dict[str, str]) -> dict[str, str]:
        """oneDNN switched (off where it is on: Eigen's kernels); a GPU ignores the switch."""
        return {ONEDNN: "1" if onednn_off(parent) else "0"}

    def use_other_kernels(self, trainer: Trainer) -> str:
        import os

        value = os.environ.get(ONEDNN, "")
        return f"oneDNN {'off, Eigen kernels' if onednn_off(os.environ) else 'on'}: {ONEDNN}={value}"
