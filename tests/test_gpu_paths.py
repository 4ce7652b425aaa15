"""The GPU paths, checked on a CPU with fakes: NVML with two devices, recording frameworks, a recording cell."""

from __future__ import annotations

import importlib.util
import os
import sys
import types
from pathlib import Path

import pandas as pd
import pytest

from benchmarks import frameworks, runner, worker
from benchmarks.cell import CellConfig, PreparedCell, fast_path_label
from benchmarks.matrix import SweepError, SweepOptions, default_cell_timeout, plan
from benchmarks.measure.memory import NvmlSampler
from reports.ceilings import device_ceiling
from tests.fakes_gpu import NAMES, UUIDS, Recorder, fake_nvml

CIFAR = "cifar100-single"


def recording_cell(calls: list[str], images_per_step: int = 8) -> PreparedCell:
    def note(name: str, value: object = None):
        return lambda: calls.append(name) or value

    return PreparedCell(
        step=note("step"),
        sync=lambda: None,
        images_per_step=images_per_step,
        environment={},
        reset_peak_memory=note("reset_peak"),
        framework_memory=note("framework_memory", {"max_allocated_bytes": [1]}),
        ceiling=note("ceiling", {"ceiling_flops_per_s": 1e12}),
        close=note("close"),
    )


# --- 2: memory figures cover the timed steps only ------------------------------------------------


def test_memory_is_read_before_the_ceiling_matmul(monkeypatch):
    calls: list[str] = []
    monkeypatch.setattr(worker, "prepare", lambda config: recording_cell(calls))
    worker.measure(CellConfig("torch", CIFAR, "infer", 8, steps=2, warmup=1))
    assert calls.index("framework_memory") < calls.index("ceiling")
    last_step = len(calls) - 1 - calls[::-1].index("step")
    assert calls.index("reset_peak") < last_step < calls.index("framework_memory")
    assert calls[-1] == "close"


def test_a_failed_measurement_still_closes_the_cell(monkeypatch):
    calls: list[str] = []
    cell = recording_cell(calls)
    cell.step = lambda: (_ for _ in ()).throw(RuntimeError("boom"))
    monkeypatch.setattr(worker, "prepare", lambda config: cell)
    with pytest.raises(RuntimeError):
        worker.measure(CellConfig("torch", CIFAR, "infer", 8, steps=2, warmup=1))
    assert calls == ["close"]


# --- 3: an explicit math mode per cell -----------------------------------------------------------


def test_gpu_cells_state_tf32_by_default_and_cpu_cells_fp32():
    gpu = plan(SweepOptions(frameworks=["torch"], variants=[CIFAR], gpus=1, repeats=1))
    cpu = plan(SweepOptions(frameworks=["torch"], variants=[CIFAR], repeats=1))
    strict = plan(SweepOptions(frameworks=["torch"], variants=[CIFAR], gpus=1, repeats=1, math_mode="fp32"))
    assert {c.math_mode for c in gpu} == {"tf32"}
    assert {c.math_mode for c in cpu} == {"fp32"}
    assert {c.math_mode for c in strict} == {"fp32"}
    best = plan(SweepOptions(frameworks=["torch"], variants=[CIFAR], gpus=1, repeats=1, best=True))
    assert {(c.precision, c.math_mode) for c in best} == {("fp32", "tf32"), ("bf16", "bf16")}


def test_tf32_on_a_cpu_is_refused():
    with pytest.raises(SweepError, match="GPU"):
        plan(SweepOptions(frameworks=["torch"], variants=[CIFAR], math_mode="tf32"))


def test_old_cells_keep_their_keys_and_load():
    old = CellConfig("torch", CIFAR, "train", 32)
    assert CellConfig("torch", CIFAR, "train", 32, math_mode="fp32").key() == old.key()
    assert (
        CellConfig("torch", CIFAR, "train", 32, precision="bf16", math_mode="bf16").key()
        == CellConfig("torch", CIFAR, "train", 32, precision="bf16").key()
    )
    assert (
        CellConfig("torch", CIFAR, "train", 32, gpus=1, math_mode="tf32").key()
        != CellConfig("torch", CIFAR, "train", 32, gpus=1).key()
    )
    loaded = CellConfig.from_dict({"framework": "torch", "variant": CIFAR, "mode": "train", "batch_size": 32})
    assert loaded.math_mode == "fp32"


def test_reports_say_tf32_and_hold_cells_to_a_ceiling_of_their_own_mode():
    assert "TF32" in fast_path_label("fp32", math_mode="tf32")
    frame = pd.DataFrame(
        {
            "environment": ["m", "m"],
            "gpus": [1, 1],
            "precision": ["fp32", "fp32"],
            "math_mode": ["fp32", "tf32"],
            "ceiling_gflops": [50_000.0, 400_000.0],
        }
    )
    assert list(device_ceiling(frame)) == [50_000.0, 400_000.0]


def test_every_framework_sets_strict_fp32_and_tf32_the_same_way(monkeypatch):
    torch_cell = pytest.importorskip("benchmarks.frameworks.pytorch_cell")
    import torch

    for mode, tf32 in (("tf32", True), ("fp32", False), ("bf16", False)):
        torch_cell.set_math_mode(mode)
        assert torch.backends.cuda.matmul.allow_tf32 is tf32
        assert torch.backends.cudnn.allow_tf32 is tf32
    torch_cell.set_math_mode("fp32")

    experimental = Recorder()
    fake_tf = types.SimpleNamespace(config=types.SimpleNamespace(experimental=experimental))
    monkeypatch.setitem(sys.modules, "tensorflow", fake_tf)
    from benchmarks.frameworks import keras_backends_cell, keras_tf_cell

    keras_tf_cell.set_math_mode("fp32")
    keras_tf_cell.set_math_mode("tf32")
    assert experimental.calls == [
        ("enable_tensor_float_32_execution", False),
        ("enable_tensor_float_32_execution", True),
    ]

    config = Recorder()
    monkeypatch.setitem(sys.modules, "jax", types.SimpleNamespace(config=config))
    keras_backends_cell.set_math_mode("jax", "fp32")
    keras_backends_cell.set_math_mode("jax", "tf32")
    assert config.calls == [
        ("update", "jax_default_matmul_precision", "highest"),
        ("update", "jax_default_matmul_precision", "tensorfloat32"),
    ]


# --- 4: JAX neither preallocates nor hides its own peak ------------------------------------------


def test_keras_jax_workers_do_not_preallocate():
    cell = CellConfig("keras-jax", CIFAR, "train", 8, gpus=1)
    assert runner.worker_environment(cell, UUIDS)["XLA_PYTHON_CLIENT_PREALLOCATE"] == "false"
    assert "XLA_PYTHON_CLIENT_PREALLOCATE" not in frameworks.get("torch").worker_environment(cell)


def test_keras_jax_reports_jax_peak():
    from benchmarks.frameworks.keras_backends_cell import jax_memory

    gpu = types.SimpleNamespace(platform="gpu", memory_stats=lambda: {"peak_bytes_in_use": 123_456})
    cpu = types.SimpleNamespace(platform="cpu", memory_stats=lambda: None)
    _, memory = jax_memory([gpu, cpu])
    assert memory()["peak_bytes_in_use"] == [123_456]
    assert jax_memory([cpu]) == (None, None)


# --- 5 and 7: each worker sees its own GPUs; NVML samples exactly those --------------------------


def test_each_worker_sees_exactly_its_cells_gpus(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    env = runner.worker_environment
    assert env(CellConfig("keras", CIFAR, "train", 8), UUIDS)["CUDA_VISIBLE_DEVICES"] == ""
    assert env(CellConfig("keras", CIFAR, "train", 8, gpus=1), UUIDS)["CUDA_VISIBLE_DEVICES"] == UUIDS[0]
    assert env(CellConfig("torch", CIFAR, "train", 8, gpus=2), UUIDS)["CUDA_VISIBLE_DEVICES"] == ",".join(UUIDS)


def test_rows_record_the_visible_devices_and_math_mode(monkeypatch, tmp_path):
    monkeypatch.setattr(runner, "run_worker", lambda *args, **kwargs: {"status": "failed", "error": "x"})
    cells = [CellConfig("torch", CIFAR, "train", 8), CellConfig("torch", CIFAR, "train", 8, gpus=1, math_mode="tf32")]
    rows = runner.run_sweep(cells, tmp_path / "r.jsonl", {}, timeout_s=1, gpu_uuids=UUIDS)
    assert [r.environment["cuda_visible_devices"] for r in rows] == ["", UUIDS[0]]
    assert rows[1].cell["math_mode"] == "tf32"


def test_nvml_samples_only_the_cells_gpu_matched_by_uuid_with_its_energy(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", fake_nvml())
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", UUIDS[1])
    with NvmlSampler(interval_s=1) as sampler:
        pass
    (device,) = sampler.report()["devices"]
    assert (device["uuid"], device["nvml_index"], device["cuda_index"]) == (UUIDS[1], 1, 0)
    assert device["peak_used_bytes"] == 2 << 30
    assert sampler.energy_j() == pytest.approx(0.7)  # one 700 mJ step of the fake counter


def test_energy_per_image_covers_the_timed_steps(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", fake_nvml())
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", ",".join(UUIDS))
    monkeypatch.setattr(worker, "prepare", lambda config: recording_cell([], images_per_step=10))
    figures, _ = worker.measure(CellConfig("torch", CIFAR, "infer", 10, gpus=2, steps=4, warmup=1))
    assert figures["energy_j"] == pytest.approx(0.5 + 0.7)
    assert figures["energy_per_image_j"] == pytest.approx(1.2 / 40)
    assert figures["math_mode"] == "fp32"


def test_host_reads_gpu_uuids_in_cuda_order(monkeypatch):
    from benchmarks.host import Host

    monkeypatch.setitem(sys.modules, "pynvml", fake_nvml())
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    host = Host.detect()
    assert (host.gpus, host.gpu_uuids) == (NAMES, UUIDS)


def test_the_host_is_what_nvml_and_the_cpu_probe_report(host_gpus, host_bf16):
    from benchmarks.host import Host

    host = Host.detect()
    assert host.native_bf16 is host_bf16
    if host_gpus:
        assert (host.gpus, host.gpu_uuids, host.gpu_probe) == (NAMES, UUIDS, None)
    else:
        assert (host.gpus, host.gpu_uuids) == ((), ())
        assert host.gpu_probe == "NVML unavailable: NVML Shared Library Not Found"  # said by bench.py run --gpus


def test_a_cpu_cell_samples_no_gpu_and_says_why(host_gpus, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")  # what the runner gives a CPU cell's worker
    with NvmlSampler(interval_s=1) as sampler:
        pass
    report = sampler.report()
    assert (report["available"], report["devices"], sampler.energy_j()) == (False, [], None)
    if host_gpus:
        assert report["error"] == "CUDA_VISIBLE_DEVICES='' hides all 2 GPUs of this machine"
    else:
        assert report["error"] == "NVML unavailable: NVML Shared Library Not Found"


def _step_benchmarks_conftest() -> types.ModuleType:
    path = Path(__file__).parent / "step_benchmarks" / "conftest.py"
    spec = importlib.util.spec_from_file_location("step_conftest", path)
    conftest = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(conftest)
    return conftest


def test_step_benchmarks_hide_the_gpus_by_default(host_gpus, monkeypatch):
    conftest = _step_benchmarks_conftest()
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    conftest.pytest_configure(types.SimpleNamespace(getoption=lambda name: 0))
    assert os.environ["CUDA_VISIBLE_DEVICES"] == ""


def test_step_benchmarks_on_a_gpu_take_the_first_one_or_stop(host_gpus, monkeypatch):
    conftest = _step_benchmarks_conftest()
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")  # every GPU of the machine visible to the probe
    one_gpu = types.SimpleNamespace(getoption=lambda name: 1)
    if host_gpus:
        conftest.pytest_configure(one_gpu)
        assert os.environ["CUDA_VISIBLE_DEVICES"] == UUIDS[0]
    else:
        with pytest.raises(pytest.exit.Exception, match="--gpus 1: found 0 GPUs") as stopped:
            conftest.pytest_configure(one_gpu)
        assert stopped.value.returncode == 2


# --- 6: data-parallel ranks ----------------------------------------------------------------------


def test_a_rank_binds_its_gpu_before_joining_and_leaves_at_the_end():
    torch_cell = pytest.importorskip("benchmarks.frameworks.pytorch_cell")
    import torch

    order: list[tuple] = []
    dist = Recorder({"is_available": True, "is_initialized": True})
    cuda = Recorder()
    dist.calls = cuda.calls = order  # one list: the order across both
    backend = torch_cell.join_process_group(torch.device("cuda", 1), False, dist, cuda)
    assert backend == "nccl"
    assert order == [("set_device", torch.device("cuda", 1)), ("init_process_group", "nccl")]
    assert torch_cell.join_process_group(torch.device("cuda", 0), True, dist, cuda) == "gloo"  # ranks share it
    torch_cell.leave_process_group(dist)
    assert order[-1] == ("destroy_process_group",)


@pytest.mark.parametrize("found", [0, 1, 2])
def test_a_gpu_cell_takes_the_gpus_pytorch_sees_or_says_how_many_it_sees(monkeypatch, found):
    """What ``test_runner`` sees in a real worker (no GPU there), on hosts with fewer and enough GPUs."""
    torch_cell = pytest.importorskip("benchmarks.frameworks.pytorch_cell")
    import torch

    monkeypatch.setattr(torch.cuda, "device_count", lambda: found)
    cell = CellConfig("torch", CIFAR, "infer", 2, gpus=2)
    if found < cell.gpus:
        with pytest.raises(RuntimeError, match=f"^asked for 2 GPUs, PyTorch sees {found}$"):
            torch_cell._devices(cell)
    else:
        assert torch_cell._devices(cell) == [torch.device("cuda", 0), torch.device("cuda", 1)]


def test_memory_is_reported_for_every_rank():
    from benchmarks.frameworks.pytorch_cell import gather_rank_memory

    def all_gather(out: list, own: dict) -> None:
        out[:] = [own, {"max_allocated_bytes": 7}]

    dist = Recorder({"get_world_size": 2, "all_gather_object": all_gather})
    assert gather_rank_memory({"max_allocated_bytes": 5}, dist) == {"max_allocated_bytes": [5, 7]}


@pytest.mark.parametrize("rank", ["0", "1"])
def test_only_the_reporting_rank_measures_a_ceiling(monkeypatch, rank):
    torch_cell = pytest.importorskip("benchmarks.frameworks.pytorch_cell")
    from torch import nn

    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", rank)
    monkeypatch.setenv("LOCAL_RANK", rank)
    monkeypatch.setattr(torch_cell, "join_process_group", lambda *args: "gloo")
    monkeypatch.setattr(nn.parallel, "DistributedDataParallel", lambda model, device_ids=None: model)
    cell = torch_cell.prepare_torch(CellConfig("torch", CIFAR, "infer", 4, simulate_devices=2))
    assert (cell.ceiling is not None, cell.is_reporter) == ((True, True) if rank == "0" else (False, False))


# --- 10, 11: GPU timeouts; two-GPU paths on one GPU ----------------------------------------------


def test_gpu_cells_get_time_for_a_ptx_jit_first_step():
    assert default_cell_timeout(1) >= 2 * default_cell_timeout(0)
    assert default_cell_timeout(1) >= 30 * 60


def test_two_logical_devices_on_one_gpu(monkeypatch):
    cells = plan(
        SweepOptions(frameworks=["torch"], variants=["cifar100-split", CIFAR], modes=["train"], gpus=1,
                     simulate_devices=2, repeats=1)
    )  # fmt: skip
    assert {(c.gpus, c.simulate_devices, c.parallel) for c in cells} == {(1, 2, "model"), (1, 2, "data")}
    assert {c.device_setup for c in cells} == {"2 simulated on 1 gpu"}
    assert runner.worker_environment(cells[0], UUIDS)["CUDA_VISIBLE_DEVICES"] == UUIDS[0]
    with pytest.raises(SweepError):
        plan(SweepOptions(frameworks=["torch"], variants=[CIFAR], gpus=2, simulate_devices=2))
    torch_cell = pytest.importorskip("benchmarks.frameworks.pytorch_cell")
    import torch

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert torch_cell._devices(cells[0]) == [torch.device("cuda", 0)] * 2


# --- 12: the GPU check's plan -------------------------------------------------------------------


def set_c_toolchain(monkeypatch, folder, present: bool) -> bool:
    """A C compiler and Python's headers (what torch.compile builds with) on this machine, or neither."""
    from benchmarks import gpu_check

    include = folder / "include"
    include.mkdir()
    if present:
        (include / "Python.h").write_text("")
    monkeypatch.setattr(gpu_check.shutil, "which", lambda name: f"/usr/bin/{name}" if present else None)
    monkeypatch.setattr(gpu_check.sysconfig, "get_paths", lambda: {"include": str(include)})
    return present


@pytest.fixture(params=[True, False], ids=["toolchain", "bare-image"])
def c_toolchain(request, monkeypatch, tmp_path) -> bool:
    return set_c_toolchain(monkeypatch, tmp_path, request.param)


def test_gpu_check_says_once_that_compile_needs_a_c_toolchain(c_toolchain, monkeypatch, capsys):
    from benchmarks import gpu_check

    for name in frameworks.names():
        monkeypatch.setattr(frameworks.get(name), "missing", lambda: None)
    assert gpu_check.main(["--dry-run", "--results", "x.jsonl"]) == 0
    out = capsys.readouterr().out.splitlines()
    skipped = [line for line in out if line.startswith("skipped")]
    if c_toolchain:
        assert not skipped and any("--compile" in line for line in out)
    else:
        assert skipped == [
            "skipped torch compile: torch.compile needs a C compiler (cc, gcc or clang) and Python's headers "
            "(Python.h), which this machine lacks (e.g. apt install gcc python3-dev)"
        ]
        assert not any("--compile" in line for line in out)


def test_gpu_check_skips_absent_frameworks_in_one_line_each(monkeypatch, capsys, tmp_path):
    from benchmarks import gpu_check

    set_c_toolchain(monkeypatch, tmp_path, present=True)
    for name in frameworks.names():  # the check's plan must not depend on what this machine has installed
        monkeypatch.setattr(frameworks.get(name), "missing", lambda: None)
    monkeypatch.setattr(frameworks.get("keras"), "missing", lambda: "keras needs tensorflow")
    assert gpu_check.main(["--dry-run", "--results", "x.jsonl"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert [line for line in out if line.startswith("skipped")] == [
        "skipped Keras on TensorFlow: keras needs tensorflow"
    ]
    commands = " ".join(out)
    for needed in ("--math-mode fp32", "--math-mode tf32", "--precision bf16", "--channels-last", "--compile",
                   "-f keras-jax", "-f keras-torch", "cifar100-split", "imagenet-split", "--split-impl towers",
                   "--simulate-devices 2", "--cuda-graphs"):  # fmt: skip
        assert needed in commands


def test_the_report_frame_carries_math_mode_and_energy(tmp_path):
    from benchmarks.results import ResultRow
    from reports.summary import rows_to_frame

    cell = CellConfig("torch", CIFAR, "train", 8, gpus=1, math_mode="tf32")
    metrics = {"images_per_s": 100.0, "energy_per_image_j": 0.25}
    row = ResultRow.from_result(cell, {"status": "ok", "metrics": metrics}, {}, "run", 0.0)
    frame = rows_to_frame([row])
    assert (frame["math_mode"][0], frame["fast_path"][0], frame["energy_per_image_j"][0]) == ("tf32", "TF32", 0.25)
