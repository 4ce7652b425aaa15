"""The results file and its row: JSON Lines, one :class:`ResultRow` per finished job, appended and fsynced.

A row is never rewritten. A crash can at worst leave a torn last line, which the reader skips
with a warning; the writer starts its next row on a fresh line. Every row carries the schema
version, and a file written by another version is refused rather than misread.

Schema versions:
- 1: the first and current layout (key, run_id, cell, status, device_setup, devices, parallel,
  simulated, error, traceback, metrics, environment, started_at, wall_s).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import stat
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import MISSING, Field, asdict, dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Protocol

SCHEMA_VERSION = 1
STATUSES = ("ok", "failed", "oom", "timeout", "killed", "crashed")


class ResultsFileError(Exception):
    """The results file cannot be used; the message says why and what to do."""


class RowError(ResultsFileError):
    """A row that does not have the layout of this schema version; the message names the field."""


class Job(Protocol):
    """What a row needs to know of the job that produced it (a throughput cell, a training run)."""

    def key(self) -> str: ...

    def row_fields(self, framework_environment: dict | None) -> dict: ...


def job_key(config: dict) -> str:
    """Stable identity of a job's configuration (``--resume`` and ``compare`` match on it)."""
    text = json.dumps(config, sort_keys=True)
    return hashlib.sha1(text.encode()).hexdigest()[:16]


def known_fields(cls: type, data: dict, what: str) -> dict:
    """``data`` for a job dataclass ``cls``; a field it does not have is an error naming ``what``."""
    unknown = set(data) - {f.name for f in fields(cls)}
    if unknown:
        raise ValueError(f"unknown {what} fields: {', '.join(sorted(unknown))}")
    return data


def new_run_id() -> str:
    """One id per ``bench.py`` invocation, shared by all the rows it writes."""
    return uuid.uuid4().hex[:12]


_CELL_TYPES = {"framework": str, "variant": str, "mode": str, "batch_size": int}


@dataclass(frozen=True)
class ResultRow:
    """One finished job: its configuration (``cell``), status, figures and where it ran."""

    key: str
    run_id: str
    cell: dict
    status: str
    device_setup: str
    environment: dict
    devices: int = 1
    parallel: str = "none"
    simulated: bool = False
    error: str | None = None
    traceback: str | None = None
    metrics: dict | None = None
    started_at: str | None = None
    wall_s: float | None = None
    schema_version: int = SCHEMA_VERSION
    line: int | None = field(default=None, compare=False)  # where the row was read from, if it was

    def __post_init__(self) -> None:
        _expect(self, "key", str)
        _expect(self, "run_id", str)
        _expect(self, "status", str)
        _expect(self, "device_setup", str)
        _expect(self, "cell", dict)
        _expect(self, "environment", dict)
        _expect(self, "devices", int)
        for name, kind in _CELL_TYPES.items():
            value = self.cell.get(name)
            if not isinstance(value, kind) or isinstance(value, bool):
                raise RowError(f"cell.{name} must be {kind.__name__}, got {value!r}")
        if self.metrics is not None and not isinstance(self.metrics, dict):
            raise RowError(f"metrics must be an object, got {type(self.metrics).__name__}")
        if self.status == "ok" and self.metrics is None:
            raise RowError("a row with status ok must have its figures (metrics)")

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @classmethod
    def from_result(cls, job: Job, result: dict, machine: dict, run_id: str, started: float) -> ResultRow:
        """The row of a job from its worker's result (``status``, ``metrics``, ``error``, ``traceback``)."""
        metrics = dict(result["metrics"]) if result.get("metrics") is not None else None
        framework_environment = metrics.pop("environment", None) if metrics else None
        return cls(
            key=job.key(),
            run_id=run_id,
            status=result["status"],
            error=result.get("error"),
            traceback=result.get("traceback"),
            metrics=metrics,
            environment={**machine, "framework": framework_environment},
            started_at=datetime.fromtimestamp(started, timezone.utc).isoformat(),
            wall_s=time.time() - started,
            **job.row_fields(framework_environment),
        )

    @classmethod
    def from_dict(cls, data: object, line: int | None = None) -> ResultRow:
        if not isinstance(data, dict):
            raise RowError(f"a row must be a JSON object, got {type(data).__name__}")
        version = data.get("schema_version")
        if version != SCHEMA_VERSION:
            raise RowError(
                f"results schema version {version!r}; this suite reads and writes version {SCHEMA_VERSION}. "
                "Write to another file with --results."
            )
        known = {f.name for f in fields(cls)} - {"line"}
        missing = [f.name for f in fields(cls) if f.name in known and f.name not in data and _required(f)]
        if missing:
            raise RowError(f"row is missing required field(s): {', '.join(missing)}")
        try:
            return cls(**{name: value for name, value in data.items() if name in known}, line=line)
        except TypeError as error:
            raise RowError(str(error)) from None

    def to_dict(self) -> dict:
        data = asdict(self)
        del data["line"]
        return data


def _required(f: Field) -> bool:
    return f.default is MISSING and f.default_factory is MISSING


def _expect(row: ResultRow, name: str, kind: type) -> None:
    value = getattr(row, name)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise RowError(f"{name} must be {kind.__name__}, got {value!r}")


@dataclass
class LoadedResults:
    rows: list[ResultRow]
    warnings: list[str] = field(default_factory=list)


def _check_regular(path: Path) -> None:
    """Only a regular file is a results file: /dev/zero or a FIFO would be read without end."""
    try:
        mode = path.stat().st_mode
    except (FileNotFoundError, NotADirectoryError):
        return  # a new file; whether it can be created is the writer's question
    except OSError as error:
        raise ResultsFileError(f"cannot use {path} as a results file: {error.strerror or error}") from None
    if stat.S_ISDIR(mode):
        raise ResultsFileError(f"results path {path} is a directory; give a file name")
    if not stat.S_ISREG(mode):
        raise ResultsFileError(f"results path {path} is not a regular file (a device, pipe or socket); name a file")


def check_writable_folder(folder: Path, what: str) -> None:
    """Refuse an output folder that cannot be written, before the work that fills it."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as error:
        raise ResultsFileError(f"cannot write {what} to {folder}: {error.strerror or error}") from None


def check_writable(path: Path) -> None:
    """Fail before any job runs if the results file cannot be appended to."""
    _check_regular(path)
    parent = path.parent if str(path.parent) else Path(".")
    try:
        parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a", encoding="utf-8"):
            pass
    except OSError as error:
        raise ResultsFileError(f"cannot write results to {path}: {error.strerror or error}") from None


def read_results(path: Path) -> LoadedResults:
    """Rows of a results file, each with its line number.

    A torn row (a run cut off mid-write: a JSON object that stops short) is skipped with a
    warning; the writer starts the next row on a fresh line, so it may sit anywhere. Anything else
    that is not a row of this schema version (another version, a wrong field, a binary file)
    raises :class:`ResultsFileError` naming the line: it is not a results file this suite wrote.
    """
    _check_regular(path)
    if not path.exists():
        return LoadedResults([])
    loaded = LoadedResults([])
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    last = max((number for number, line in enumerate(lines, start=1) if line.strip()), default=0)
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
        except json.JSONDecodeError:
            if line.startswith('{"'):
                where = "last line" if number == last else f"line {number}"
                loaded.warnings.append(f"{path}: {where} is incomplete (a run was cut off) and was ignored")
                continue
            raise ResultsFileError(
                f"{path} line {number} is not JSON: not a results file (give another file with --results)"
            ) from None
        try:
            loaded.rows.append(ResultRow.from_dict(data, line=number))
        except RowError as error:
            raise ResultsFileError(f"{path} line {number}: {error}") from None
    return loaded


def append_row(path: Path, row: ResultRow) -> None:
    """Append one row and make it durable before returning."""
    line = json.dumps(row.to_dict(), sort_keys=True, allow_nan=False)
    with open(path, "a+b") as handle:
        handle.seek(0, os.SEEK_END)
        if handle.tell() > 0:
            handle.seek(-1, os.SEEK_END)
            if handle.read(1) != b"\n":  # a torn line from a crash: do not glue onto it
                handle.write(b"\n")
        handle.write(line.encode() + b"\n")
        handle.flush()
        os.fsync(handle.fileno())


def done_keys(rows: list[ResultRow]) -> set[str]:
    """Keys of jobs that finished successfully (``--resume`` skips these; failed ones run again)."""
    return {row.key for row in rows if row.ok}


@contextmanager
def lock_results(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` for a sweep: two runs on one file would disturb each
    other's measurements and write the same cells twice."""
    with open(path, "a", encoding="utf-8") as handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ResultsFileError(
                f"{path} is in use by another bench.py run; wait for it or write to another file with --results"
            ) from None
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
