"""pytest-benchmark set-up: one framework per pytest process, as everywhere in this suite.

    pytest tests/step_benchmarks/bench_steps.py --benchmark-json=torch.json                   # PyTorch
    pytest tests/step_benchmarks/bench_steps.py --framework keras --benchmark-json=keras.json # Keras on TF
    pytest tests/step_benchmarks/bench_steps.py --benchmark-disable            # smoke: each step runs once
    pytest tests/step_benchmarks/bench_steps.py --gpus 1 --benchmark-json=torch-gpu.json     # on the first GPU

The steps run on the CPU unless ``--gpus 1``: every GPU is hidden (``CUDA_VISIBLE_DEVICES=""``) before
a framework loads, since TensorFlow would otherwise place a CPU cell's ops on a GPU when it traces a step.
``bench.py report`` reads the JSON files next to the runner's results.
"""

import os

import pytest

from benchmarks import frameworks
from benchmarks.cell import CellConfig
from benchmarks.runner import visible_devices

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def pytest_addoption(parser):
    parser.addoption(
        "--framework",
        default="torch",
        choices=frameworks.names(),
        help="framework whose steps to benchmark (TensorFlow and PyTorch never share a process)",
    )
    parser.addoption("--bench-batch-size", type=int, default=16, help="images per step")
    parser.addoption("--gpus", type=int, default=0, choices=(0, 1), help="0: CPU, every GPU hidden (default); 1: GPU")


def pytest_configure(config):
    """Show the frameworks exactly the GPUs the steps use, before any of them loads (as the runner does)."""
    gpus = config.getoption("--gpus")
    uuids = ()
    if gpus:
        from benchmarks.host import Host

        uuids = Host.detect().gpu_uuids
        if len(uuids) < gpus:
            pytest.exit(f"--gpus {gpus}: found {len(uuids)} GPUs", returncode=2)
    os.environ["CUDA_VISIBLE_DEVICES"] = visible_devices(
        CellConfig("torch", "cifar100-single", "infer", 1, gpus=gpus), uuids
    )


def pytest_generate_tests(metafunc):
    if "framework" in metafunc.fixturenames:
        metafunc.parametrize("framework", [metafunc.config.getoption("--framework")])
