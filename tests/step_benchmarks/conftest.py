"""pytest-benchmark set-up: one framework per pytest process, as everywhere in this suite.

    pytest tests/step_benchmarks/bench_steps.py --benchmark-json=torch.json                   # PyTorch
    pytest tests/step_benchmarks/bench_steps.py --framework keras --benchmark-json=keras.json # Keras on TF
    pytest tests/step_benchmarks/bench_steps.py --benchmark-disable            # smoke: each step runs once

``bench.py report`` reads the JSON files next to the runner's results.
"""

import os

from benchmarks import frameworks

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


def pytest_generate_tests(metafunc):
    if "framework" in metafunc.fixturenames:
        metafunc.parametrize("framework", [metafunc.config.getoption("--framework")])
