"""A sweep from the command line to its rows: plan, resume, run, and the rows that answer it.

``bench.py run`` and ``bench.py train`` both go through here, so checking the results file,
skipping finished jobs and picking the newest row per job are written once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.results import (
    LoadedResults,
    OtherSchemaFileError,
    ResultRow,
    check_appendable,
    check_writable,
    done_keys,
    lock_results,
    read_results,
)
from benchmarks.runner import WorkerJob, run_sweep


@dataclass
class Sweep:
    """The jobs asked for, the ones still to run, and what reading the results file found."""

    jobs: list[WorkerJob]
    todo: list[WorkerJob]
    results: Path
    warnings: list[str] = field(default_factory=list)

    @property
    def skipped(self) -> int:
        return len(self.jobs) - len(self.todo)


def open_sweep(jobs: Sequence[WorkerJob], results: Path, resume: bool = False) -> Sweep:
    """Check the results file before any worker starts; with ``resume``, drop jobs already done."""
    check_writable(results)
    try:
        existing: LoadedResults = read_results(results)
    except OtherSchemaFileError as error:
        raise OtherSchemaFileError(f"{error}; write to another file with --results") from None
    check_appendable(results, existing)
    done = done_keys(existing.rows) if resume else set()
    todo = [job for job in jobs if job.key() not in done]
    return Sweep(list(jobs), todo, results, existing.warnings)


def execute(sweep: Sweep, machine: dict, **options: Any) -> list[ResultRow]:
    """Run the sweep's remaining jobs under an exclusive lock on its results file.

    ``options`` are :func:`benchmarks.runner.run_sweep`'s: the timeout, the memory cap, the GPUs,
    the progress callbacks.
    """
    with lock_results(sweep.results):
        return run_sweep(sweep.todo, sweep.results, machine, **options)


def latest_rows(sweep: Sweep) -> list[ResultRow]:
    """The newest row of every job in the sweep (a job run again supersedes its older rows)."""
    keys = {job.key() for job in sweep.jobs}
    latest = {row.key: row for row in read_results(sweep.results).rows if row.key in keys}
    return list(latest.values())
