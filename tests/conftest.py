"""Shared test set-up: Keras on TensorFlow, quiet, and a host whose capabilities the tests state.

Every worker a test starts times a 512-cubed ceiling matmul instead of the real 2048-cubed one (about a second
of each worker's life); ``tests/test_fast_paths.py`` keeps the real one.

The suite's plans depend on the host (native bf16, GPUs, PyTorch's CPU launcher, which optional
frameworks are installed). Tests must pass on every machine, so by default they see a CPU-only host
without native bf16, outside any SLURM job, whatever machine runs them; worker processes the tests
start inherit the same view. A test whose outcome depends on a capability takes it as an input, with
the fixtures below, and runs with it on and off:

- ``host_bf16``: the CPU computes bf16 natively or not (benchmarks.host's probe; workers see it too);
- ``host_gpus``: a machine without an NVIDIA driver, or with two fake GPUs (tests.fakes_gpu), as NVML
  reports them in this process;
- ``xeon_launcher``: torch's CPU launcher usable here or not (benchmarks.frameworks.pytorch's probe);
- ``jax_installed``: the jax extra installed or not; ``installed_packages`` states any package.

Tests that execute a capability for real (a cell under the CPU launcher, Keras on JAX) stay conditional
on this machine; what is planned, refused and said is tested both ways with the fixtures. The
pytest-benchmark steps (``step_benchmarks``) measure the real machine and are left alone.
"""

import importlib.machinery
import importlib.util
import os
import sys

import pytest

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# One OpenMP thread per process: the tests run two files at once, each starting workers, on as few as two cores, and
# PyTorch's OpenMP threads spin while they wait for a core another process holds (a step 4x slower beside one other
# process). No test measures speed against a target; the ``alone`` test compares two trees under the same setting.
os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(autouse=True)
def plain_cpu_host(request, monkeypatch):
    if "step_benchmarks" in request.path.parts:
        return
    monkeypatch.setenv("ALEXNET_BENCH_NATIVE_BF16", "0")
    monkeypatch.setenv("ALEXNET_BENCH_CEILING_SIZE", "512")  # workers' ceiling matmul: ms, not a second each
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")  # frameworks and the NVML probe see no GPU
    for name in [name for name in os.environ if name.startswith("SLURM_")]:
        monkeypatch.delenv(name)  # bench.py run takes its node count from a SLURM job: one machine here


@pytest.fixture(params=[False, True], ids=["emulated-bf16", "native-bf16"])
def host_bf16(request, monkeypatch) -> bool:
    """A CPU with native bf16 (True) or without; benchmarks.host's probe says so here and in workers."""
    monkeypatch.setenv("ALEXNET_BENCH_NATIVE_BF16", "1" if request.param else "0")
    return request.param


@pytest.fixture(params=[0, 2], ids=["no-gpu", "two-gpus"])
def host_gpus(request, monkeypatch) -> tuple[str, ...]:
    """The names of the GPUs NVML finds: none (no NVIDIA driver), or the two fakes of tests.fakes_gpu, visible.

    Only this process's NVML is faked: a framework or a worker process still sees no GPU.
    """
    from tests.fakes_gpu import NAMES, UUIDS, absent_nvml, fake_nvml

    if not request.param:
        monkeypatch.setitem(sys.modules, "pynvml", absent_nvml())
        return ()
    monkeypatch.setitem(sys.modules, "pynvml", fake_nvml())
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", ",".join(UUIDS))  # both, named as no real device is
    return NAMES


@pytest.fixture(params=[False, True], ids=["no-xeon-launcher", "xeon-launcher"])
def xeon_launcher(request, monkeypatch) -> bool:
    """Whether torch's CPU launcher (torch.backends.xeon.run_cpu, with taskset or numactl) is usable here."""
    from benchmarks.frameworks import pytorch

    monkeypatch.setattr(pytorch, "xeon_launcher_available", lambda: request.param)
    return request.param


@pytest.fixture
def installed_packages(monkeypatch):
    """``installed_packages(jax=False, torch=True)``: what ``importlib.util.find_spec`` finds for those packages.

    A package said to be installed is found whether or not it is; every other name is looked up for real.
    """
    real_find_spec = importlib.util.find_spec
    stated: dict[str, bool] = {}

    def find_spec(name, package=None):
        top = name.partition(".")[0]
        if top not in stated:
            return real_find_spec(name, package)
        if not stated[top]:
            return None
        return real_find_spec(name, package) or importlib.machinery.ModuleSpec(name, None)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    return lambda **packages: stated.update(packages)


@pytest.fixture(params=[False, True], ids=["without-jax", "with-jax"])
def jax_installed(request, installed_packages) -> bool:
    """The jax extra installed or not; the required frameworks (torch, tensorflow, keras) installed."""
    installed_packages(jax=request.param, torch=True, tensorflow=True, keras=True)
    return request.param


@pytest.fixture
def mixed_bfloat16():
    """Keras' global policy set to mixed_bfloat16 for one test, then restored."""
    import keras

    previous = keras.mixed_precision.dtype_policy()
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    yield
    keras.mixed_precision.set_global_policy(previous)
