"""The parent of every job: one worker process per job, each row saved the moment it finishes.

The parent never imports a framework. It launches ``benchmarks.worker`` the way the job's
framework says (torchrun for PyTorch data-parallel cells), reads its one ``RESULT`` line, and
turns anything else (a crash, a kill, a timeout) into a failed row with its reason, so the sweep
goes on. The same loop runs throughput cells (``bench.py run``) and training runs (``bench.py
train``); ``run_selfcheck`` runs the harness-overhead check, which writes no row.

Workers never outlive the parent: each asks the kernel to kill it when its parent dies
(``benchmarks.lifeline``; torchrun's ranks when torchrun dies), and an interrupted parent
(Ctrl-C, SIGTERM) kills the worker's whole process group before it exits.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from benchmarks import frameworks
from benchmarks.cell import CellConfig
from benchmarks.lifeline import die_with_parent
from benchmarks.measure.environment import ROOT
from benchmarks.results import Job, ResultRow, append_row, new_run_id
from benchmarks.worker import RESULT_PREFIX


class WorkerJob(Job, Protocol):
    """A job a worker process runs: it names its framework and how the worker reads it."""

    framework: str
    worker_flag: str  # "--config" (a throughput cell) or "--train" (an accuracy run)

    def to_json(self) -> str: ...

    def launch_cell(self) -> CellConfig:
        """The cell whose launch settings start this job's worker (a cell is its own; a training run is a
        plain one-device cell): the framework's launch hooks always see every field they read."""
        ...


def worker_command(job: WorkerJob, memory_limit_bytes: int | None = None, *extra: str) -> list[str]:
    launcher = frameworks.get(job.framework).launcher(job.launch_cell())
    command = [sys.executable, *launcher, job.worker_flag, job.to_json(), *extra]
    if memory_limit_bytes:
        command += ["--memory-limit-bytes", str(memory_limit_bytes)]
    return command


def visible_devices(job: WorkerJob | None, gpu_uuids: Sequence[str]) -> str | None:
    """CUDA_VISIBLE_DEVICES for the job's worker: exactly the GPUs its cell uses; None: leave the parent's.

    A framework may place work on any GPU it sees, whatever the model code says (TensorFlow places ops when a step
    is traced), so a CPU cell sees none ("") and a GPU cell its first ``gpus`` GPUs, named by UUID: a UUID names
    the same device for CUDA and NVML whatever the enumeration order.
    """
    gpus = getattr(job, "gpus", None)
    if gpus is None:
        return None  # not a throughput cell: a training run keeps the parent's view
    if gpus == 0:
        return ""
    if len(gpu_uuids) < gpus:
        return None  # the host's GPUs are unknown here; the worker checks the count it sees
    return ",".join(gpu_uuids[:gpus])


def worker_environment(job: WorkerJob | None = None, gpu_uuids: Sequence[str] = ()) -> dict[str, str]:
    """The environment of a worker process: the parent's, plus what the job's framework needs."""
    env = dict(os.environ)
    env.update(
        {
            "CUDA_DEVICE_ORDER": "PCI_BUS_ID",  # CUDA's device numbers then match NVML's
            "KERAS_BACKEND": env.get("KERAS_BACKEND", "tensorflow"),
            "TF_CPP_MIN_LOG_LEVEL": env.get("TF_CPP_MIN_LOG_LEVEL", "2"),
            "PYTHONUNBUFFERED": "1",
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")])),
        }
    )
    visible = visible_devices(job, gpu_uuids)
    if visible is not None:
        env["CUDA_VISIBLE_DEVICES"] = visible  # before any framework loads: the worker imports none yet
    if job is not None:
        env.update(frameworks.get(job.framework).worker_environment(job.launch_cell()))
    return env


def _failure_from_exit(returncode: int, stderr: str) -> tuple[str, str]:
    tail = " | ".join(line.strip() for line in stderr.strip().splitlines()[-3:])
    if returncode < 0:
        name = signal.Signals(-returncode).name
        reason = " (out of memory: the kernel's OOM killer, or kill -9)" if returncode == -signal.SIGKILL else ""
        return "killed", f"worker killed by {name}{reason}"
    return "crashed", f"worker exited with code {returncode} without a result: {tail or 'no output'}"


@dataclass(frozen=True)
class Ended:
    """How a bounded process ended: its exit code (None: killed at the time limit) and its output."""

    returncode: int | None
    stdout: str
    stderr: str


def run_bounded(command: list[str], env: dict[str, str], timeout_s: float, keep_stdout: bool = True) -> Ended:
    """Run ``command`` from the project's root in its own process group, tied to this process
    (``benchmarks.lifeline``), for at most ``timeout_s``; past it, or on Ctrl-C, the whole group is
    killed (a launcher and the processes it started), never left behind."""
    parent = os.getpid()
    process = subprocess.Popen(
        command,
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE if keep_stdout else subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group: a timeout or Ctrl-C kills torchrun's children too
        preexec_fn=lambda: die_with_parent(parent),
    )
    try:
        stdout, stderr = process.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        _kill_group(process)
        return Ended(None, "", "")
    except BaseException:
        _kill_group(process)
        raise
    return Ended(process.returncode, stdout or "", stderr or "")


def run_process(
    command: list[str],
    env: dict[str, str],
    timeout_s: float,
    explain: Callable[[str], tuple[str, str] | None] = lambda stderr: None,
) -> dict:
    """Run a worker command and read its RESULT line; a worker without one becomes a failure.

    ``explain`` may name the failure from the launcher's last words (a node that never joined).
    """
    ended = run_bounded(command, env, timeout_s)
    if ended.returncode is None:
        return {"status": "timeout", "error": f"no result within {timeout_s:g} s; worker killed"}
    results = [line[len(RESULT_PREFIX) :] for line in ended.stdout.splitlines() if line.startswith(RESULT_PREFIX)]
    if results:
        return json.loads(results[-1])
    status, error = explain(ended.stderr) or _failure_from_exit(ended.returncode, ended.stderr)
    return {"status": status, "error": error}


def _kill_group(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait()


def run_worker(
    job: WorkerJob, timeout_s: float, memory_limit_bytes: int | None = None, env: dict[str, str] | None = None
) -> dict:
    """Run one job; returns {'status', 'metrics'?, 'error'?} whatever happens to the worker."""
    explain = frameworks.get(job.framework).explain_exit
    return run_process(
        worker_command(job, memory_limit_bytes),
        env or worker_environment(job),
        timeout_s,
        lambda err: explain(job.launch_cell(), err),
    )


def run_sweep(
    jobs: Sequence[WorkerJob],
    results_path: Path,
    machine: dict,
    *,
    timeout_s: float,
    memory_limit_bytes: int | None = None,
    gpu_uuids: Sequence[str] = (),
    on_start: Callable[[int, WorkerJob], None] = lambda index, job: None,
    on_row: Callable[[ResultRow], None] = lambda row: None,
) -> list[ResultRow]:
    """Run every job in order, appending each row to ``results_path`` as soon as it exists.

    ``gpu_uuids``: the host's GPUs in CUDA's order (``benchmarks.host.Host``); each cell's worker sees only its own.
    Every row records the devices its worker could see (``environment.cuda_visible_devices``).
    """
    run_id = new_run_id()
    rows = []
    for index, job in enumerate(jobs):
        on_start(index, job)
        started = time.time()
        env = worker_environment(job, gpu_uuids)
        result = run_worker(job, timeout_s, memory_limit_bytes, env)
        seen = {"cuda_visible_devices": env.get("CUDA_VISIBLE_DEVICES")}  # None: every GPU of the machine
        row = ResultRow.from_result(job, result, {**machine, **seen}, run_id, started)
        append_row(results_path, row)
        rows.append(row)
        on_row(row)
    return rows


def run_selfcheck(cell: CellConfig, timeout_s: float = 1800) -> dict:
    """The harness-overhead check of one cell (``benchmarks.measure.selfcheck``), in its own worker."""
    return run_process(worker_command(cell, None, "--selfcheck"), worker_environment(cell), timeout_s)
