"""The parent of every job: one worker process per job, each row saved the moment it finishes.

The parent never imports a framework. It launches ``benchmarks.worker`` the way the job's
framework says (torchrun for PyTorch data-parallel cells), reads its one ``RESULT`` line
(``benchmarks.process``, the protocol of every child), and turns anything else (a crash, a kill,
a timeout) into a failed row with its reason, so the sweep goes on. The same loop runs throughput
cells (``bench.py run``) and training runs (``bench.py train``); ``run_selfcheck`` runs the
harness-overhead check, which writes no row.

Workers never outlive the parent: each asks the kernel to kill it when its parent dies
(``benchmarks.lifeline``; torchrun's ranks when torchrun dies), and an interrupted parent
(Ctrl-C, SIGTERM) kills the worker's whole process group before it exits.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

from benchmarks import frameworks
from benchmarks.cell import CellConfig
from benchmarks.process import ROOT, run_bounded, run_process  # noqa: F401  run_bounded: benchmarks.follower's
from benchmarks.results import Job, ResultRow, append_row, new_run_id
from implementations.keras_backend import default_keras_backend


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
            "KERAS_BACKEND": default_keras_backend(env),
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
