"""Shared test set-up: Keras on TensorFlow, quiet, and a host whose capabilities the tests state.

The suite's plans depend on the host (native bf16, GPUs). Tests must pass on every machine, so
by default they see a CPU-only host without native bf16 whatever machine runs them; a test that
needs another host says so (``ALEXNET_BENCH_NATIVE_BF16=1``, a fake NVML). Worker processes the
tests start inherit the same view. The pytest-benchmark steps (``step_benchmarks``) measure the
real machine and are left alone.
"""

import os

import pytest

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@pytest.fixture(autouse=True)
def plain_cpu_host(request, monkeypatch):
    if "step_benchmarks" in request.path.parts:
        return
    monkeypatch.setenv("ALEXNET_BENCH_NATIVE_BF16", "0")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")  # frameworks and the NVML probe see no GPU


@pytest.fixture
def mixed_bfloat16():
    """Keras' global policy set to mixed_bfloat16 for one test, then restored."""
    import keras

    previous = keras.mixed_precision.dtype_policy()
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    yield
    keras.mixed_precision.set_global_policy(previous)
