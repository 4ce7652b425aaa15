"""Native PyTorch: eager by default; torch.compile, channels_last, bf16 autocast, on one GPU CUDA graphs and, on
CPUs, PyTorch's own CPU launcher as fast paths.

Two or more devices: split variants run model-parallel (one tower per device), single variants
data-parallel under DistributedDataParallel, launched by torchrun (gloo on CPU, NCCL on GPU).
"""

from __future__ import annotations

import importlib.util
import math
import os
import re
import shutil
import signal
import sys
from dataclasses import replace
from pathlib import Path
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
    # How long a node waits to reach the store at the first node (torch's default: 60 s, per try): --join-timeout.
    read_timeout = max(1, math.ceil(config.join_timeout_s))
    return ["-m", "torch.distributed.run", "--nnodes", str(config.nodes),
            "--nproc-per-node", str(config.devices_per_node), "--rdzv-backend", "c10d",
            "--rdzv-endpoint", config.rendezvous, "--rdzv-id", config.rdzv_id,
            "--rdzv-conf", f"join_timeout={config.join_timeout_s:g},read_timeout={read_timeout},is_host={is_host}",
            "--max-restarts", "0"]  # fmt: skip


XEON_LAUNCHER = "torch.backends.xeon.run_cpu"


def xeon_launcher_available() -> bool:
    """Whether this torch ships its CPU launcher (Linux; torch 2.0 and later), found without importing torch,
    and the launcher can pin cores here (it needs numactl or taskset)."""
    spec = importlib.util.find_spec("torch")
    if spec is None or not spec.submodule_search_locations or not sys.platform.startswith("linux"):
        return False
    if not (shutil.which("numactl") or shutil.which("taskset")):
        return False
    places = spec.submodule_search_locations
    return any((Path(where) / "backends" / "xeon" / "run_cpu.py").is_file() for where in places)


def cuda_graphs_unsupported(config: CellConfig) -> str | None:
    """Why ``--cuda-graphs`` cannot measure ``config``, or None: it captures one process's step on one real GPU.

    A CPU cell has no CUDA work to capture. Data-parallel ranks would need DDP's own capture rules (NCCL's
    asynchronous error handling off, warm-up under DDP before capture), a model-parallel step spans two
    devices' streams, and torch.compile makes graphs of its own (``mode="reduce-overhead"``); none is taken here.
    """
    if not config.gpus:
        return (
            "--cuda-graphs captures a step's GPU work and needs a GPU (--gpus 1); this machine or sweep has none: "
            "drop --cuda-graphs"
        )
    if config.parallel != "none" or config.simulate_devices:
        return "--cuda-graphs runs on one GPU in this suite: use --gpus 1 without --simulate-devices or --nodes"
    if config.compiled:
        return "--cuda-graphs captures the eager step; torch.compile makes graphs its own way: drop one of them"
    return None


class PyTorch(Framework):
    name = "torch"
    label = "PyTorch"
    colour = "#d62728"
    marker = "o"
    # grouped: 35 vs towers 27 img/s training on a 2-core CPU (one grouped convolution per layer).
    default_split_impl = "grouped"
    packages = ("torch",)
    install_hint = "pip install -e '.[torch]'"
    compared_by_default = True
    # xeon_launch: the launch settings PyTorch documents for CPUs (torch.backends.xeon.run_cpu): the worker pinned to
    # the physical cores, OMP_NUM_THREADS set to their number, tcmalloc or jemalloc preloaded where it finds one
    # (and Intel OpenMP with its affinity settings); each row's cpu_run_settings records what took effect.
    # cuda_graphs: the whole step captured once as a CUDA graph and replayed (pytorch_cell.graphed_step), one GPU only.
    fast_paths = ("channels_last", "compiled", "bf16", "xeon_launch", "cuda_graphs")
    multi_device = ("model", "data")
    multi_node = True
    trains = True
    math_library = "torch"
    # torch._dynamo: torch.optim's first optimizer imports it (about 2 s on two cores)
    preload_modules = ("benchmarks.frameworks.pytorch_cell", "torch.optim", "torch._dynamo")

    def unsupported(self, config: CellConfig) -> str | None:
        if config.xeon_launch and (config.gpus or config.parallel != "none"):
            return "--xeon-launch starts one CPU process; it does not go with --gpus, --simulate-devices or --nodes"
        if config.xeon_launch and not xeon_launcher_available():
            needs = f"{XEON_LAUNCHER} (Linux, torch 2.0 or later) and taskset or numactl"
            return f"--xeon-launch needs {needs}, which this machine lacks"
        if config.cuda_graphs and (reason := cuda_graphs_unsupported(config)):
            return reason
        return super().unsupported(config)

    def fast_path_applies(self, path: str, config: CellConfig) -> bool:
        if path == "xeon_launch":
            return config.gpus == 0 and config.parallel == "none" and xeon_launcher_available()
        if path == "cuda_graphs":
            return cuda_graphs_unsupported(replace(config, cuda_graphs=True)) is None
        return super().fast_path_applies(path, config)

    def launcher(self, config: CellConfig) -> list[str]:
        if config.xeon_launch:
            # run_cpu takes only a .py path as a Python program; as a plain program it runs this interpreter.
            return ["-m", XEON_LAUNCHER, "--no-python", sys.executable, "-u", "-m", "benchmarks.worker"]
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
        # run_cpu exits 0 whatever its worker did, and says how the worker ended in its log.
        if config.xeon_launch and (ended := re.search(r"failed \(exitcode: (-?\d+)\)", stderr)):
            code = int(ended.group(1))
            if code < 0:
                return "killed", f"worker killed by {signal.Signals(-code).name} under {XEON_LAUNCHER}"
            return "crashed", f"worker exited with code {code} under {XEON_LAUNCHER} without a result"
        if config.nodes > 1 and "RendezvousConnectionError" in stderr:
            return "timeout", (
                f"could not reach the rendezvous store at {config.rendezvous} within {config.join_timeout_s:g} s "
                "(--join-timeout): is node 0 running, and is its address reachable from here?"
            )
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

    def use_other_kernels(self, trainer: Trainer) -> str:
        import torch

        trainer.model.to(memory_format=torch.channels_last)  # a convolution takes its weight's layout
        return "NHWC convolutions"
