"""The runner's fault handling with real worker processes: every failure becomes a row."""

import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from benchmarks import runner
from benchmarks.cell import CellConfig
from benchmarks.results import read_results
from benchmarks.worker import classify

TINY = CellConfig("torch", "cifar100-single", "infer", 2, steps=1, warmup=1)


def test_a_real_cell_gives_figures_and_its_environment(tmp_path):
    path = tmp_path / "r.jsonl"
    rows = runner.run_sweep([TINY], path, {"hostname": "test"}, timeout_s=300)
    row = read_results(path).rows[0]
    assert row == rows[0] and row.line == 1
    assert row.status == "ok", row.error
    metrics = row.metrics
    assert len(metrics["step_times_s"]) == 1 and metrics["images_per_s"] > 0
    assert metrics["memory"]["peak_rss_bytes"] > 100 * 2**20
    nvml = metrics["memory"]["nvml"]  # a CPU cell's worker sees no GPU, on any machine, and says why
    assert (nvml["available"], nvml["devices"]) == (False, []) and nvml["error"]
    assert row.environment["framework"]["torch"].startswith("2.")
    assert row.cell["variant"] == "cifar100-single" and row.key == TINY.key()
    load = metrics["machine_load"]  # how busy the machine was beside the timed steps
    assert load["processes_in_cell"] == 1 and (load["measured"] is (Path("/proc/stat").exists()))


def test_out_of_memory_becomes_an_oom_row():
    cell = CellConfig("torch", "imagenet-single", "infer", 256, steps=1, warmup=1)
    result = runner.run_worker(cell, timeout_s=300, memory_limit_bytes=int(1.5 * 2**30))
    assert result["status"] == "oom"
    assert "allocate" in result["error"]


def test_an_exception_in_the_cell_becomes_a_failed_row_with_the_message():
    result = runner.run_worker(CellConfig("torch", "cifar100-single", "infer", 2, gpus=1), timeout_s=300)
    assert result["status"] == "failed"
    assert "asked for 1 GPUs, PyTorch sees 0" in result["error"]


def test_a_worker_killed_with_sigkill_mid_cell_is_recorded_and_the_sweep_goes_on(tmp_path, monkeypatch):
    started: list[subprocess.Popen] = []
    real_popen = subprocess.Popen

    def recording_popen(*args, **kwargs):
        process = real_popen(*args, **kwargs)
        started.append(process)
        return process

    monkeypatch.setattr(subprocess, "Popen", recording_popen)  # the one every child starts with

    def kill_first_worker():
        while not started:
            time.sleep(0.05)
        time.sleep(1.0)  # mid-cell: the worker is importing PyTorch or building the model
        started[0].send_signal(signal.SIGKILL)

    killer = threading.Thread(target=kill_first_worker)
    killer.start()
    path = tmp_path / "r.jsonl"
    long_cell = CellConfig("torch", "cifar100-single", "train", 8, steps=10_000, warmup=1)
    runner.run_sweep([long_cell, TINY], path, {}, timeout_s=300)
    killer.join()
    rows = read_results(path).rows
    assert [row.status for row in rows] == ["killed", "ok"]
    assert "SIGKILL" in rows[0].error and rows[0].metrics is None


def test_a_cell_past_its_timeout_is_killed_and_recorded(tmp_path):
    cell = CellConfig("torch", "cifar100-single", "train", 8, steps=10_000, warmup=1)
    result = runner.run_worker(cell, timeout_s=3)
    assert result == {"status": "timeout", "error": "no result within 3 s; worker killed"}


def test_a_worker_that_dies_without_a_result_is_a_crash_with_its_last_words(monkeypatch):
    command = [sys.executable, "-c", "import sys; sys.stderr.write('segfault-ish\\n'); sys.exit(3)"]
    monkeypatch.setattr(runner, "worker_command", lambda config, limit=None, *extra: command)
    result = runner.run_worker(TINY, timeout_s=60)
    assert result["status"] == "crashed"
    assert "exited with code 3" in result["error"] and "segfault-ish" in result["error"]


@pytest.mark.parametrize(
    "error,status",
    [
        (MemoryError(), "oom"),
        (RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB"), "oom"),
        (RuntimeError("ResourceExhaustedError: OOM when allocating tensor"), "oom"),
        (ValueError("batch size 3 does not split over 2 devices"), "failed"),
    ],
)
def test_failures_are_classified(error, status):
    assert classify(error) == status


def test_data_parallel_torch_cells_are_launched_by_torchrun():
    cell = CellConfig("torch", "cifar100-single", "train", 8, simulate_devices=2)
    command = runner.worker_command(cell)
    assert command[1:4] == ["-m", "torch.distributed.run", "--standalone"]
    assert "--nproc_per_node=2" in command
    assert runner.worker_command(CellConfig("torch", "cifar100-split", "train", 8, simulate_devices=2))[1:3] == [
        "-m",
        "benchmarks.worker",
    ]


# Both frameworks on two simulated devices, data- and model-parallel, for real: the README's
# `run --simulate-devices 2 --quick` and `run --gpus 2` (tests/test_readme_commands.py), which check each row's devices.
