"""Native PyTorch: eager by default; torch.compile, channels_last and bf16 autocast as fast paths.

Two or more devices: split variants run model-parallel (one tower per device), single variants
data-parallel under DistributedDataParallel, launched by torchrun (gloo on CPU, NCCL on GPU).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from benchmarks.frameworks.base import Framework

if TYPE_CHECKING:
    from benchmarks.accuracy.training import TrainConfig, Trainer
    from benchmarks.cell import CellConfig, PreparedCell
    from implementations.weight_mapping import LayerWeights


class PyTorch(Framework):
    name = "torch"
    label = "PyTorch"
    colour = "#d62728"
    marker = "o"
    # grouped: 35 vs towers 27 img/s training on a 2-core CPU (one grouped convolution per layer).
    default_split_impl = "grouped"
    packages = ("torch",)
    install_hint = "pip install torch"
    compared_by_default = True
    fast_paths = ("channels_last", "compiled", "bf16")
    multi_device = ("model", "data")
    trains = True

    def launcher(self, config: CellConfig) -> list[str]:
        if config.parallel == "data":
            return ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={config.devices}",
                    "-m", "benchmarks.worker"]  # fmt: skip
        return super().launcher(config)

    def worker_environment(self, config: CellConfig | None) -> dict[str, str]:
        if config and config.parallel == "data" and not config.gpus and "OMP_NUM_THREADS" not in os.environ:
            # Several processes share the CPU: give each its share of the cores, not all of them.
            return {"OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 1) // config.devices))}
        return {}

    def prepare(self, config: CellConfig) -> PreparedCell:
        from benchmarks.frameworks.pytorch_cell import prepare_torch

        return prepare_torch(config)

    def trainer(self, config: TrainConfig, weights: LayerWeights) -> Trainer:
        from benchmarks.frameworks.pytorch_trainer import TorchTrainer

        return TorchTrainer(config, weights)
