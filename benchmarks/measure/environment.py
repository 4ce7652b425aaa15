"""Where a result was measured: machine, software and code version, recorded with every row.

The parent collects the machine side without importing a framework; each worker adds its
framework's versions, CUDA/cuDNN and thread counts (see ``torch_cell`` and ``keras_cell``).
"""

from __future__ import annotations

import os
import platform
import socket
import subprocess
from pathlib import Path

from benchmarks.measure.memory import nvml_gpus

ROOT = Path(__file__).resolve().parents[2]  # the project root, where bench.py is


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def git_commit() -> dict[str, object]:
    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "dirty": bool(status) if status is not None else None}


def machine_environment() -> dict[str, object]:
    """Machine facts the parent can read without loading a framework."""
    gpus, gpu_error = nvml_gpus()
    driver = None
    if gpus:
        import pynvml

        pynvml.nvmlInit()
        driver = pynvml.nvmlSystemGetDriverVersion()
        driver = driver.decode() if isinstance(driver, bytes) else driver
        pynvml.nvmlShutdown()
    return {
        "hostname": socket.gethostname(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "gpus": gpus,
        "gpu_driver": driver,
        "gpu_probe": gpu_error,
        "git": git_commit(),
    }


def machine_id(environment: dict) -> str:
    """What makes two results comparable: same host, CPU and GPUs."""
    gpus = ",".join(environment.get("gpus") or []) or "no-gpu"
    return f"{environment.get('hostname')}|{environment.get('cpu_model')}|{gpus}"
