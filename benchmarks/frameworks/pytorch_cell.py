"""PyTorch side of a benchmark cell: model, synthetic data on the device, and the step to time.

One device: the model on ``cuda:0`` or the CPU. Two or more devices: split variants run
model-parallel (one tower per device, ``ModelParallelAlexNet``), single variants run
data-parallel with DistributedDataParallel, launched by torchrun (gloo on CPU, NCCL on GPU).
"""

from __future__ import annotations

import os
from datetime import timedelta

import torch
from torch import nn
from torch.nn import functional as F

from benchmarks.cell import LEARNING_RATE, MOMENTUM, WEIGHT_DECAY, CellConfig, PreparedCell
from benchmarks.measure.ceiling import measure_ceiling
from implementations.torch_alexnet import build_torch_model
from implementations.variants import get_variant


def torch_environment(devices: list[torch.device]) -> dict:
    cuda = torch.cuda.is_available()
    return {
        "framework": "torch",
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if cuda else None,
        "devices": [torch.cuda.get_device_name(d) if d.type == "cuda" else "cpu" for d in devices],
        "threads": torch.get_num_threads(),
        "interop_threads": torch.get_num_interop_threads(),
    }


def _devices(config: CellConfig) -> list[torch.device]:
    if config.gpus:
        found = torch.cuda.device_count()
        if found < config.gpus:
            raise RuntimeError(f"asked for {config.gpus} GPUs, PyTorch sees {found}")
        return [torch.device("cuda", i) for i in range(config.gpus)]
    return [torch.device("cpu")] * config.devices


def _model(config: CellConfig, devices: list[torch.device]) -> tuple[nn.Module, torch.device, int]:
    """(model, device of its input, batch this process feeds)."""
    arch = get_variant(config.variant)
    if config.parallel == "model":
        from implementations.torch_model_parallel import ModelParallelAlexNet

        return ModelParallelAlexNet(arch, [str(d) for d in devices]), devices[0], config.batch_size
    if config.parallel == "data":
        import torch.distributed as dist

        world, rank = int(os.environ["WORLD_SIZE"]), int(os.environ["RANK"])
        if config.batch_size % world:
            raise ValueError(f"batch size {config.batch_size} does not split over {world} processes")
        device = devices[int(os.environ.get("LOCAL_RANK", rank))]
        # Several nodes: a collective waiting on a lost node fails after the join timeout instead of hanging.
        wait = {"timeout": timedelta(seconds=config.join_timeout_s)} if config.nodes > 1 else {}
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", **wait)
        if config.nodes > 1:
            from benchmarks.multinode import check_same_cell

            keys: list = [None] * world
            dist.all_gather_object(keys, config.key())  # options must agree on every node
            check_same_cell(keys, config)
        model = build_torch_model(arch, config.split_impl).to(device)
        ids = [device.index] if device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(model, device_ids=ids), device, config.batch_size // world
    return build_torch_model(arch, config.split_impl).to(devices[0]), devices[0], config.batch_size


def prepare_torch(config: CellConfig) -> PreparedCell:
    torch.manual_seed(config.seed)
    devices = _devices(config)
    if config.parallel == "data" and "WORLD_SIZE" not in os.environ:
        raise RuntimeError("a data-parallel PyTorch cell must be launched by torchrun")
    uses_cuda = any(d.type == "cuda" for d in devices)
    torch.backends.cudnn.benchmark = uses_cuda  # autotuned convolution kernels; warm-up absorbs the search
    model, device, local_batch = _model(config, devices)
    arch = get_variant(config.variant)
    x = torch.randn(local_batch, *arch.input_shape, device=device)
    y = torch.randint(0, arch.classes, (local_batch,), device=device)
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    forward = torch.compile(model) if config.compiled else model
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=config.precision == "bf16")

    def sync() -> None:
        if uses_cuda:
            for index in {d.index for d in devices}:
                torch.cuda.synchronize(index)

    if config.mode == "train":
        model.train()
        optimizer = torch.optim.SGD(model.parameters(), lr=LEARNING_RATE, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY)

        def step() -> None:
            optimizer.zero_grad(set_to_none=True)
            with autocast:
                loss = F.cross_entropy(forward(x), y)
            loss.backward()
            optimizer.step()
    else:
        model.eval()

        @torch.inference_mode()
        def step() -> None:
            with autocast:
                forward(x)

    def reset_peak() -> None:
        if uses_cuda:
            for index in {d.index for d in devices}:
                torch.cuda.reset_peak_memory_stats(index)

    def framework_memory() -> dict | None:
        if not uses_cuda:
            return None
        return {
            "what": "PyTorch caching allocator peaks during timed steps, per device",
            "max_allocated_bytes": [torch.cuda.max_memory_allocated(i) for i in sorted({d.index for d in devices})],
            "max_reserved_bytes": [torch.cuda.max_memory_reserved(i) for i in sorted({d.index for d in devices})],
        }

    def product(size: int, dtype: str):
        a = torch.randn(size, size, device=devices[0], dtype=getattr(torch, dtype))
        b = torch.randn(size, size, device=devices[0], dtype=getattr(torch, dtype))

        def run_once() -> None:
            torch.mm(a, b)
            sync()

        return run_once

    return PreparedCell(
        ceiling=lambda: measure_ceiling(product, uses_cuda, config.precision),
        step=step,
        sync=sync,
        images_per_step=config.batch_size,  # global batch: every process steps in lockstep under DDP
        environment=torch_environment(devices),
        reset_peak_memory=reset_peak,
        framework_memory=framework_memory,
        is_reporter=int(os.environ.get("RANK", "0")) == 0,
    )
