"""The same Keras model on Keras 3's JAX and PyTorch backends: parity with PyTorch, and benchmark cells.

Each backend runs in its own process (Keras reads KERAS_BACKEND once, at import). JAX is an
optional extra: the tests that run Keras on JAX are skipped where it is not installed; what is
planned, refused and said with and without it is tested on any machine (``jax_installed``).
"""

import importlib.util
import os
import subprocess
import sys

import numpy as np
import pytest
from typer.testing import CliRunner

from benchmarks import frameworks, runner
from benchmarks.cell import CellConfig
from benchmarks.fast_paths import candidates
from benchmarks.matrix import SweepError, SweepOptions, plan
from benchmarks.runner import worker_environment
from reports.cell_summary import summarize_cells
from reports.load import load_results
from reports.tables import backends_table
from tests.results_factory import ok_row, step_times, write_rows

pytestmark = pytest.mark.e2e  # starts the suite's commands or workers end to end: out of the quick loop

BACKENDS = [
    pytest.param(
        "jax", marks=pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="jax extra not installed")
    ),
    "torch",
]


@pytest.mark.parametrize("backend", BACKENDS)
def test_keras_on_another_backend_computes_the_pytorch_logits(backend):
    command = [sys.executable, "bench.py", "parity", "-v", "cifar100-split", "--keras-backend", backend]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert f"Keras on the {backend} backend" in done.stdout
    assert done.stdout.count("verdict: PASS") == 2  # grouped and towers


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_cell_runs_on_the_backend_it_names(backend):
    """A training cell (an inference cell of each backend runs in the README's `run --gpus 1 -f keras-torch ...`)."""
    config = CellConfig(f"keras-{backend}", "cifar100-split", "train", 2, "towers", steps=1, warmup=1)
    assert worker_environment(config)["KERAS_BACKEND"] == backend
    result = runner.run_worker(config, timeout_s=600)
    assert result["status"] == "ok", result.get("error")
    metrics = result["metrics"]
    assert metrics["environment"]["backend"] == backend and metrics["environment"]["framework"] == config.framework
    assert metrics["images_per_s"] > 0 and metrics["ceiling_flops_per_s"] > 1e8


def test_a_missing_backend_is_refused_with_the_install_command(jax_installed):
    assert frameworks.get("keras").missing() is None and frameworks.get("torch").missing() is None
    options = SweepOptions(frameworks=["keras-jax"], quick=True)
    if jax_installed:
        assert frameworks.get("keras-jax").missing() is None
        assert {cell.framework for cell in plan(options)} == {"keras-jax"}
    else:
        assert "pip install -e '.[jax]'" in frameworks.get("keras-jax").missing()
        with pytest.raises(SweepError, match=r"keras-jax needs jax, which is not installed"):
            plan(options)


def test_parity_on_jax_is_refused_before_anything_runs_where_jax_is_missing(jax_installed, monkeypatch):
    import bench

    monkeypatch.setenv("KERAS_BACKEND", os.environ["KERAS_BACKEND"])  # the command sets it: restored after
    # A bad --split-impl is refused after the install check and before any framework is imported.
    done = CliRunner().invoke(bench.app, ["parity", "--keras-backend", "jax", "--split-impl", "bogus"])
    said = " ".join(done.output.split())
    assert done.exit_code == 2 and "Traceback" not in said
    if jax_installed:
        assert "unknown split implementation 'bogus'" in said and "not installed" not in said
    else:
        assert "keras-jax needs jax, which is not installed: pip install -e '.[jax]'" in said


def test_other_backends_run_on_one_device_without_compile_flags():
    with pytest.raises(SweepError, match="one device"):
        plan(SweepOptions(frameworks=["keras-torch"], simulate_devices=2, quick=True))
    with pytest.raises(SweepError, match="--compile"):
        plan(SweepOptions(frameworks=["keras-torch"], compiled=True, quick=True))
    cells = plan(SweepOptions(frameworks=["keras-torch"], quick=True, best=True, variants=["cifar100-split"]))
    assert {(c.split_impl, c.fast_paths()) for c in cells} == {("grouped", "fp32"), ("towers", "fp32")}  # no compile
    assert not any(c.compiled for c in candidates(CellConfig("keras-jax", "cifar100-single", "train", 8), True))


def test_the_report_puts_every_backend_beside_native_pytorch(tmp_path):
    rng = np.random.default_rng(0)
    rates = {"torch": 20.0, "keras": 25.0, "keras-jax": 30.0, "keras-torch": 10.0}
    rows = [
        ok_row(CellConfig(framework, "cifar100-single", "train", 16), step_times(rng, 16 / rate, 10, 0.01))
        for framework, rate in rates.items()
    ]
    summary = summarize_cells(load_results([write_rows(tmp_path / "r.jsonl", rows)]).frame)
    table = backends_table(summary).frame
    assert list(table.columns[-5:]) == [
        "PyTorch img/s",
        "Keras img/s",
        "Keras on JAX img/s",
        "Keras on torch img/s",
        "fastest",
    ]
    assert table["Keras on JAX img/s"].iloc[0] == "30.0" and table["fastest"].iloc[0] == "Keras on JAX"
    assert backends_table(summary[summary["framework"].isin(["torch", "keras"])]) is None
