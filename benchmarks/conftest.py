"""pytest-benchmark set-up: one framework per pytest process, as everywhere in this suite.

    pytest benchmarks --benchmark-json=torch.json                      # PyTorch (default)
    pytest benchmarks --framework keras --benchmark-json=keras.json    # Keras on TensorFlow
    pytest benchmarks --benchmark-disable                              # smoke: each step runs once

``bench.py report`` reads the JSON files next to the runner's results.
"""

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def pytest_addoption(parser):
    parser.addoption(
        "--framework",
        default="torch",
        choices=("torch", "keras"),
        help="framework whose steps to benchmark (TensorFlow and PyTorch never share a process)",
    )
    parser.addoption("--bench-batch-size", type=int, default=16, help="images per step")


def pytest_generate_tests(metafunc):
    if "framework" in metafunc.fixturenames:
        metafunc.parametrize("framework", [metafunc.config.getoption("--framework")])
