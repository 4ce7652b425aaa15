"""Each process touches only its own devices, checked on a CPU with fakes.

- A DDP rank waits for its own GPU only: ``torch.cuda.synchronize`` on another rank's GPU would
  create a CUDA context there, which NVML then counts in that GPU's memory peak. A model-parallel
  cell waits for every GPU of its model.
- DistributedDataParallel wraps a model already in channels_last: its reducer lays out the gradient
  buckets by the parameters' strides when it is built.
- Logical TensorFlow GPUs are sized by the cell's own GPU, not by whichever NVML numbers first.
"""

from __future__ import annotations

import sys
import types

import pytest

from benchmarks.cell import CellConfig
from tests.fakes_gpu import UUIDS, fake_nvml

torch = pytest.importorskip("torch")
torch_cell = pytest.importorskip("benchmarks.frameworks.pytorch_cell")

CUDA = [torch.device("cuda", 0), torch.device("cuda", 1)]


@pytest.fixture
def synchronized(monkeypatch) -> list[int]:
    """The GPU indices ``torch.cuda.synchronize`` is called with, in order (no GPU is touched)."""
    calls: list[int] = []
    monkeypatch.setattr(torch.cuda, "synchronize", calls.append)
    return calls


def test_a_ddp_rank_synchronizes_only_its_own_gpu(synchronized):
    rank_one = CellConfig("torch", "cifar100-single", "train", 8, gpus=2)
    assert rank_one.parallel == "data"
    torch_cell.device_sync(torch_cell.synchronized_devices(rank_one, CUDA, CUDA[1]))()
    assert synchronized == [1]


def test_a_model_parallel_cell_synchronizes_every_gpu_of_its_model(synchronized):
    split = CellConfig("torch", "cifar100-split", "train", 8, gpus=2)
    assert split.parallel == "model"
    torch_cell.device_sync(torch_cell.synchronized_devices(split, CUDA, CUDA[0]))()
    assert synchronized == [0, 1]


def test_simulated_devices_and_cpus_synchronize_what_they_compute_on(synchronized):
    simulated = CellConfig("torch", "cifar100-split", "train", 8, gpus=1, simulate_devices=2)
    torch_cell.device_sync(torch_cell.synchronized_devices(simulated, [CUDA[0]] * 2, CUDA[0]))()
    assert synchronized == [0]  # two towers on one GPU: one wait
    cpu = CellConfig("torch", "cifar100-single", "train", 8, simulate_devices=2)
    cpus = [torch.device("cpu")] * 2
    torch_cell.device_sync(torch_cell.synchronized_devices(cpu, cpus, cpus[0]))()
    assert synchronized == [0]  # nothing to wait for on a CPU


def test_ddp_wraps_a_model_already_in_channels_last(monkeypatch):
    wrapped: list[bool] = []

    def ddp(model, device_ids=None):
        kernels = [p for p in model.parameters() if p.dim() == 4]
        wrapped.append(all(k.is_contiguous(memory_format=torch.channels_last) for k in kernels))
        return model

    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("LOCAL_RANK", "0")
    monkeypatch.setattr(torch_cell, "join_process_group", lambda *args: "gloo")
    monkeypatch.setattr(torch.nn.parallel, "DistributedDataParallel", ddp)
    config = CellConfig("torch", "cifar100-single", "train", 4, simulate_devices=2, channels_last=True)
    torch_cell.prepare_torch(config)
    assert wrapped == [True]


# --- Keras: logical GPUs sized by the cell's own GPU ------------------------------------------------


def two_sizes_nvml() -> types.ModuleType:
    """The fake NVML with an 80 GiB device 0 and a 16 GiB device 1."""
    module = fake_nvml()
    totals = (80 << 30, 16 << 30)
    module.nvmlDeviceGetMemoryInfo = lambda h: types.SimpleNamespace(used=0, total=totals[h])
    return module


@pytest.mark.parametrize("visible", [UUIDS[1], "1"], ids=["by-uuid", "by-index"])
def test_logical_gpus_are_sized_by_the_cells_own_gpu(monkeypatch, visible):
    from benchmarks.frameworks.keras_tf_cell import logical_gpu_memory_mb

    monkeypatch.setitem(sys.modules, "pynvml", two_sizes_nvml())
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
    assert logical_gpu_memory_mb(2) == int((16 << 30) * 0.9 / 2 / 2**20)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", f"{UUIDS[0]},{UUIDS[1]}")
    assert logical_gpu_memory_mb(2) == int((80 << 30) * 0.9 / 2 / 2**20)  # the first visible one


def test_logical_gpus_hidden_from_the_process_get_the_fixed_size(monkeypatch):
    from benchmarks.frameworks.keras_tf_cell import LOGICAL_GPU_FALLBACK_MB, logical_gpu_memory_mb

    monkeypatch.setitem(sys.modules, "pynvml", two_sizes_nvml())
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert logical_gpu_memory_mb(2) == LOGICAL_GPU_FALLBACK_MB
