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


def torchrun_rendezvous(config: CellConfig) -> list[str]:
    """torchrun on one node of a multi-node cell: a c10d rendezvous at the first node, which hosts its store.

    ``is_host`` says which node serves the store (on one machine every node's host name matches
    the endpoint); no restarts, so a lost node ends the cell instead of re-forming the group.
    """
    is_host = int(config.node_rank == 0)
    return ["-m", "torch.distributed.run", "--nnodes", str(config.nodes),
            "--nproc-per-node", str(config.devices_per_node), "--rdzv-backend", "c10d",
            "--rdzv-endpoint", config.rendezvous, "--rdzv-id", config.rdzv_id,
            "--rdzv-conf", f"join_timeout={config.join_timeout_s:g},is_host={is_host}",
            "--max-restarts", "0"]  # fmt: skip


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
    multi_node = True
    trains = True

    def launcher(self, config: CellConfig) -> list[str]:
        if config.nodes > 1:
            return [*torchrun_rendezvous(config), "-m", "benchmarks.worker"]
        if config.parallel == "data":
            return ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={config.devices}",
                    "-m", "benchmarks.worker"]  # fmt: skip
        return super().launcher(config)

    def worker_environment(self, config: CellConfig | None) -> dict[str, str]:
        if config and config.parallel == "data" and not config.gpus and "OMP_NUM_THREADS" not in os.environ:
            # Several processes share the CPU: give each its share of the cores, not all of them.
            return {"OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 1) // config.devices_per_node))}
        return {}

    def explain_exit(self, config: CellConfig, stderr: str) -> tuple[str, str] | None:
        if config.nodes > 1 and "RendezvousTimeoutError" in stderr:
            return "timeout", (
                f"not every node joined the rendezvous at {config.rendezvous} within {config.join_timeout_s:g} s "
                f"({config.nodes} nodes expected)"
            )
        if config.nodes > 1 and "Rendezvous" in stderr and "Error" in stderr:
            lines = [line.strip() for line in stderr.splitlines() if "Rendezvous" in line and "Error" in line]
            return "timeout", f"rendezvous at {config.rendezvous} failed: {lines[-1][:300]}"
        return None

    def prepare(self, config: CellConfig) -> PreparedCell:
        from benchmarks.frameworks.pytorch_cell import prepare_torch

        return prepare_torch(config)

    def trainer(self, config: TrainConfig, weights: LayerWeights) -> Trainer:
        from benchmarks.frameworks.pytorch_trainer import TorchTrainer

        return TorchTrainer(config, weights)
