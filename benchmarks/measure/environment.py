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
from benchmarks.process import ROOT


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo; where there is none (not Linux), what ``platform`` knows."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        lines = []
    for line in lines:
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
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


RUN_SETTING_PREFIXES = ("OMP_", "KMP_", "MKL_", "OPENBLAS_", "TF_NUM_", "TF_ENABLE_ONEDNN", "DNNL_", "ONEDNN_")


def cpu_run_settings(environ: dict[str, str] | None = None, root: Path = Path("/")) -> dict[str, object]:
    """CPU settings that change results: thread variables, a preloaded allocator, affinity, frequency governor."""
    environ = dict(os.environ) if environ is None else environ
    governor_file = root / "sys/devices/system/cpu/cpu0/cpufreq/scaling_governor"
    try:
        governor = governor_file.read_text().strip()
    except OSError:
        governor = None  # not readable here (containers, VMs)
    affinity = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    return {
        "thread_variables": {k: v for k, v in sorted(environ.items()) if k.startswith(RUN_SETTING_PREFIXES)},
        "ld_preload": environ.get("LD_PRELOAD") or None,  # e.g. jemalloc or tcmalloc
        "affinity": affinity,
        "governor": governor,
    }


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
        "cpu_run_settings": cpu_run_settings(),
    }


def machine_id(environment: dict) -> str:
    """What makes two results comparable: same host, CPU and GPUs."""
    gpus = ",".join(environment.get("gpus") or []) or "no-gpu"
    return f"{environment.get('hostname')}|{environment.get('cpu_model')}|{gpus}"
