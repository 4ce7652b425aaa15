"""PyTorch side of a benchmark cell: model, synthetic data on the device, and the step to time.

One device: the model on ``cuda:0`` or the CPU. Two or more devices: split variants run
model-parallel (one tower per device, ``ModelParallelAlexNet``), single variants run
data-parallel with DistributedDataParallel, launched by torchrun (gloo on CPU, NCCL on GPU).
Simulated devices on one GPU (``--simulate-devices 2 --gpus 1``): both towers on ``cuda:0``, or
two ranks sharing ``cuda:0`` over gloo (NCCL refuses two ranks on one device).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import timedelta

import torch
from torch import nn
from torch.nn import functional as F

from benchmarks.cell import LEARNING_RATE, CellConfig, PreparedCell
from benchmarks.measure.ceiling import measure_ceiling
from benchmarks.measure.timing import StopAgreement
from implementations import math_mode
from implementations.paper_sgd import MOMENTUM, WEIGHT_DECAY
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


def set_math_mode(mode: str) -> None:
    """fp32 arithmetic as the cell states (``implementations.math_mode``): TF32 tensor cores for matmuls and
    convolutions, or strict fp32. Under bf16 autocast the ops left in fp32 run strict. No effect on CPUs."""
    math_mode.set_math_mode("torch", math_mode.TF32 if mode == "tf32" else math_mode.STRICT_FP32)


def _devices(config: CellConfig) -> list[torch.device]:
    if config.gpus:
        found = torch.cuda.device_count()
        if found < config.gpus:
            raise RuntimeError(f"asked for {config.gpus} GPUs, PyTorch sees {found}")
        if config.simulate_devices >= 2:
            return [torch.device("cuda", 0)] * config.simulate_devices  # logical devices sharing one GPU
        return [torch.device("cuda", i) for i in range(config.gpus)]
    return [torch.device("cpu")] * config.devices


def join_process_group(device: torch.device, shared: bool, dist: object, cuda: object, **options: object) -> str:
    """Bind this rank to its GPU, then join the group; the backend used.

    ``set_device`` comes first: NCCL creates its communicator on the current device, and without it every rank
    would put a context on cuda:0. Ranks sharing one GPU (simulated devices) use gloo, as on CPUs.
    """
    if device.type == "cuda":
        cuda.set_device(device)
    backend = "nccl" if device.type == "cuda" and not shared else "gloo"
    dist.init_process_group(backend, **options)
    return backend


def leave_process_group(dist: object) -> None:
    """Destroy the process group, so a finished rank exits instead of waiting into the cell's timeout."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def gather_rank_memory(own: dict, dist: object) -> dict:
    """Every rank's allocator peaks, gathered to all ranks (rank 0 reports them): one entry per rank."""
    gathered: list = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, own)
    return {name: [rank[name] for rank in gathered] for name in own}


def stop_agreement(world_size: int, device: torch.device, dist: object) -> StopAgreement:
    """How this cell's ranks stop timing at the same step: a MIN all-reduce of each rank's 0/1 wish.

    The flag lives where the group's backend reduces: on the rank's own GPU under NCCL, on the CPU
    under gloo. The backend is read at the first call, once the group is certainly joined.
    """

    def all_want_to_stop(wants: bool) -> bool:
        on = device if dist.get_backend() == "nccl" else torch.device("cpu")
        flag = torch.tensor([int(wants)], dtype=torch.int32, device=on)
        dist.all_reduce(flag, op=dist.ReduceOp.MIN)
        return bool(flag.item())

    return StopAgreement(world_size, all_want_to_stop)


def in_memory_format(model: nn.Module, config: CellConfig) -> nn.Module:
    """The model in channels_last when the cell asks for it.

    Done before DistributedDataParallel wraps the model: its reducer lays out each gradient bucket
    by the parameters' strides when it is built, and parameters converted afterwards would make it
    copy every gradient into a mismatched bucket ("Grad strides do not match bucket view strides").
    """
    return model.to(memory_format=torch.channels_last) if config.channels_last else model


def synchronized_devices(config: CellConfig, devices: list[torch.device], device: torch.device) -> list[int]:
    """CUDA indices of the GPUs this process waits for, resets and reads: under DDP the rank's own GPU only
    (touching another rank's GPU would put a CUDA context there, which NVML counts in that GPU's memory);
    a model-parallel cell every GPU of its model."""
    cuda = [d for d in ([device] if config.parallel == "data" else devices) if d.type == "cuda"]
    return sorted({d.index for d in cuda})


def device_sync(indices: list[int]) -> Callable[[], None]:
    """Waits for the work queued on each of the GPUs ``indices``; nothing to wait for on a CPU."""

    def sync() -> None:
        for index in indices:
            torch.cuda.synchronize(index)

    return sync


GRAPH_WARMUP_STEPS = 3  # eager steps on a side stream before capture, as PyTorch's CUDA graphs notes do


def graphed_step(
    step: Callable[[], object],
    feed: Callable[[], None],
    cuda: object,
    warmup: int = GRAPH_WARMUP_STEPS,
) -> Callable[[], None]:
    """``step`` captured as a CUDA graph at its first call; every call runs ``feed`` then replays the graph.

    Why ``torch.cuda.CUDAGraph`` around the whole eager step, and not ``torch.compile(mode="reduce-overhead")``:
    a fast path changes one thing, and reduce-overhead also fuses and generates kernels (that is ``--compile``'s
    figure), needs Triton with a C compiler and Python's headers on the GPU machine, and graphs only the
    compiled regions, leaving the optimizer's many small kernels to launch one by one. Here the forward pass,
    the loss, the backward pass and the update are one graph: one launch per step. AlexNet at batch 128 on a
    fast GPU spends much of a step launching kernels, which is what this removes.

    The first call follows PyTorch's notes on whole-network capture (``torch.cuda.graphs``), so its time is the
    row's first step (reported apart, like compilation), not part of building the model:

    1. ``warmup`` eager steps on a side stream: cuDNN's autotuning (``cudnn.benchmark``), the allocator's first
       blocks and the optimizer's state (SGD's momentum buffers; ``PaperSGD``'s velocity likewise) are made
       outside the graph, so the capture records only the steady step. Neither SGD nor ``PaperSGD`` keeps a step
       count or reads a tensor back to the host, so neither needs ``capturable=True`` (Adam-like optimizers do).
    2. One capture of ``step`` (captured work does not run). A training step starts with
       ``zero_grad(set_to_none=True)``, so its backward pass allocates the gradients in the graph's private pool
       and each replay writes them afresh.
    3. Every call, the first included: ``feed`` copies the batch into the static input and label tensors the
       graph reads (what a real loop pays to feed a graph), then one ``replay``.

    ``cuda`` is ``torch.cuda`` (a fake in the tests). The caller keeps the static tensors alive.
    """
    graphs: list = []

    def capture() -> object:
        side = cuda.Stream()
        side.wait_stream(cuda.current_stream())
        with cuda.stream(side):
            for _ in range(warmup):
                step()
        cuda.current_stream().wait_stream(side)
        graph = cuda.CUDAGraph()
        with cuda.graph(graph):
            step()
        return graph

    def replay() -> None:
        if not graphs:
            graphs.append(capture())
        feed()
        graphs[0].replay()

    return replay


def _model(config: CellConfig, devices: list[torch.device]) -> tuple[nn.Module, torch.device, int]:
    """(model, device of its input, batch this process feeds), in the cell's memory format."""
    arch = get_variant(config.variant)
    if config.parallel == "model":
        from implementations.torch_model_parallel import ModelParallelAlexNet

        model = ModelParallelAlexNet(arch, [str(d) for d in devices])
        return in_memory_format(model, config), devices[0], config.batch_size
    if config.parallel == "data":
        import torch.distributed as dist

        world, rank = int(os.environ["WORLD_SIZE"]), int(os.environ["RANK"])
        if config.batch_size % world:
            raise ValueError(f"batch size {config.batch_size} does not split over {world} processes")
        device = devices[int(os.environ.get("LOCAL_RANK", rank))]
        # Several nodes: a collective waiting on a lost node fails after the join timeout instead of hanging.
        wait = {"timeout": timedelta(seconds=config.join_timeout_s)} if config.nodes > 1 else {}
        join_process_group(device, len(set(devices)) < len(devices), dist, torch.cuda, **wait)
        if config.nodes > 1:
            from benchmarks.multinode import check_same_cell

            keys: list = [None] * world
            dist.all_gather_object(keys, config.key())  # options must agree on every node
            check_same_cell(keys, config)
        model = in_memory_format(build_torch_model(arch, config.split_impl).to(device), config)
        ids = [device.index] if device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(model, device_ids=ids), device, config.batch_size // world
    model = build_torch_model(arch, config.split_impl).to(devices[0])
    return in_memory_format(model, config), devices[0], config.batch_size


def prepare_torch(config: CellConfig) -> PreparedCell:
    set_math_mode(config.math_mode)
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
        x = x.contiguous(memory_format=torch.channels_last)  # the model is converted already (``_model``)
    forward = torch.compile(model) if config.compiled else model
    # A captured step keeps no autocast cache between replays: each replay casts the weights it has just updated.
    autocast = torch.autocast(
        device.type, dtype=torch.bfloat16, enabled=config.precision == "bf16", cache_enabled=not config.cuda_graphs
    )
    if config.cuda_graphs:  # the graph reads static tensors; each timed step copies the batch into them
        batch_x, batch_y, x, y = x, y, x.clone(), y.clone()
    data_parallel = config.parallel == "data"
    own_indices = synchronized_devices(config, devices, device)
    sync = device_sync(own_indices)

    if config.mode == "train":
        model.train()
        # At a constant rate torch's SGD applies the paper's update (implementations.paper_sgd); it is what
        # PyTorch users run, so the timed step is the idiomatic one.
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

    if config.cuda_graphs:

        def feed() -> None:
            x.copy_(batch_x)
            y.copy_(batch_y)

        step = graphed_step(step, feed, torch.cuda)

    def reset_peak() -> None:
        if uses_cuda:
            for index in own_indices:
                torch.cuda.reset_peak_memory_stats(index)

    def framework_memory() -> dict | None:
        if not uses_cuda:
            return None
        own = {
            "max_allocated_bytes": [torch.cuda.max_memory_allocated(i) for i in own_indices],
            "max_reserved_bytes": [torch.cuda.max_memory_reserved(i) for i in own_indices],
        }
        if data_parallel:  # a collective: every rank calls it at the same point of the worker
            import torch.distributed as dist

            per_rank = gather_rank_memory({k: v[0] for k, v in own.items()}, dist)
            return {"what": "PyTorch caching allocator peaks during timed steps, per rank (its own GPU)", **per_rank}
        return {"what": "PyTorch caching allocator peaks during timed steps, per device", **own}

    def product(size: int, dtype: str):
        a = torch.randn(size, size, device=device, dtype=getattr(torch, dtype))
        b = torch.randn(size, size, device=device, dtype=getattr(torch, dtype))

        def run_once() -> None:
            torch.mm(a, b)
            sync()

        return run_once

    reporter = int(os.environ.get("RANK", "0")) == 0
    agreement = None
    if data_parallel:
        import torch.distributed as dist

        agreement = stop_agreement(int(os.environ["WORLD_SIZE"]), device, dist)

    def close() -> None:
        if data_parallel:
            import torch.distributed as dist

            leave_process_group(dist)

    return PreparedCell(
        # One ceiling per cell, on the reporting rank's own device: ranks never share a GPU's matmul rate at once.
        ceiling=(lambda: measure_ceiling(product, uses_cuda, config.precision)) if reporter else None,
        step=step,
        sync=sync,
        images_per_step=config.batch_size,  # global batch: every process steps in lockstep under DDP
        environment=torch_environment(devices),
        reset_peak_memory=reset_peak,
        framework_memory=framework_memory,
        is_reporter=reporter,
        close=close,
        stop_agreement=agreement,
    )
