"""The parent of a sweep: one worker process per cell, each row saved the moment it finishes.

The parent never imports a framework. It launches ``benchmarks.worker`` (under torchrun for
PyTorch data-parallel cells), reads its one ``RESULT`` line, and turns anything else (a crash,
a kill, a timeout) into a failed row with its reason, so the sweep goes on.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path

from benchmarks.cell import CellConfig, keras_backend
from benchmarks.environment import ROOT
from benchmarks.results import append_row
from benchmarks.worker import RESULT_PREFIX


def worker_command(config: CellConfig, memory_limit_bytes: int | None = None) -> list[str]:
    command = [sys.executable]
    if config.framework == "torch" and config.parallel == "data":
        command += ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={config.devices}"]
    command += ["-m", "benchmarks.worker", "--config", config.to_json()]
    if memory_limit_bytes:
        command += ["--memory-limit-bytes", str(memory_limit_bytes)]
    return command


def worker_environment(config: CellConfig | None = None) -> dict[str, str]:
    """The environment of a worker process; ``config`` tunes threads for multi-process cells."""
    env = dict(os.environ)
    env.update(
        {
            "CUDA_DEVICE_ORDER": "PCI_BUS_ID",  # CUDA's device numbers then match NVML's
            # Keras picks its backend once, at import: each worker gets its cell's.
            "KERAS_BACKEND": (config and keras_backend(config.framework)) or env.get("KERAS_BACKEND", "tensorflow"),
            "TF_CPP_MIN_LOG_LEVEL": env.get("TF_CPP_MIN_LOG_LEVEL", "2"),
            "PYTHONUNBUFFERED": "1",
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")])),
        }
    )
    if config and config.framework == "torch" and config.parallel == "data" and not config.gpus:
        # Several processes share the CPU: give each its share of the cores, not all of them.
        env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // config.devices)))
    return env


def _failure_from_exit(returncode: int, stderr: str) -> tuple[str, str]:
    tail = " | ".join(line.strip() for line in stderr.strip().splitlines()[-3:])
    if returncode < 0:
        name = signal.Signals(-returncode).name
        reason = " (out of memory: the kernel's OOM killer, or kill -9)" if returncode == -signal.SIGKILL else ""
        return "killed", f"worker killed by {name}{reason}"
    return "crashed", f"worker exited with code {returncode} without a result: {tail or 'no output'}"


def run_worker(config: CellConfig, timeout_s: float, memory_limit_bytes: int | None = None) -> dict:
    """Run one cell; returns {'status', 'metrics'?, 'error'?} whatever happens to the worker."""
    return run_process(worker_command(config, memory_limit_bytes), worker_environment(config), timeout_s)


def run_process(command: list[str], env: dict[str, str], timeout_s: float) -> dict:
    """Run a worker command and read its RESULT line; a worker without one becomes a failure."""
    process = subprocess.Popen(
        command,
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group: a timeout or Ctrl-C kills torchrun's children too
    )
    try:
        stdout, stderr = process.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        _kill_group(process)
        return {"status": "timeout", "error": f"no result within {timeout_s:g} s; worker killed"}
    except BaseException:
        _kill_group(process)
        raise
    results = [line[len(RESULT_PREFIX) :] for line in stdout.splitlines() if line.startswith(RESULT_PREFIX)]
    if results:
        return json.loads(results[-1])
    status, error = _failure_from_exit(process.returncode, stderr)
    return {"status": status, "error": error}


def _kill_group(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait()


def make_row(config: CellConfig, result: dict, machine: dict, run_id: str, started: float) -> dict:
    metrics = result.get("metrics")
    framework_env = metrics.pop("environment", None) if metrics else None
    return {
        "key": config.key(),
        "run_id": run_id,
        "cell": asdict(config),
        "device_setup": config.device_setup,
        "devices": config.devices,
        "parallel": config.parallel,
        "simulated": config.simulate_devices >= 2,
        "status": result["status"],
        "error": result.get("error"),
        "traceback": result.get("traceback"),
        "metrics": metrics,
        "environment": {**machine, "framework": framework_env},
        "started_at": datetime.fromtimestamp(started, timezone.utc).isoformat(),
        "wall_s": time.time() - started,
    }


def run_sweep(
    cells: list[CellConfig],
    results_path: Path,
    machine: dict,
    *,
    timeout_s: float,
    memory_limit_bytes: int | None = None,
    on_start: Callable[[int, CellConfig], None] = lambda index, config: None,
    on_row: Callable[[dict], None] = lambda row: None,
) -> list[dict]:
    """Run every cell in order, appending each row to ``results_path`` as soon as it exists."""
    run_id = uuid.uuid4().hex[:12]
    rows = []
    for index, config in enumerate(cells):
        on_start(index, config)
        started = time.time()
        result = run_worker(config, timeout_s, memory_limit_bytes)
        row = make_row(config, result, machine, run_id, started)
        append_row(results_path, row)
        rows.append(row)
        on_row(row)
    return rows
