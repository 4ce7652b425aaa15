"""The results file and its row: JSON Lines, one :class:`ResultRow` per finished job, appended and fsynced.

A row is never rewritten. A crash can at worst leave a torn last line, which the reader skips
with a warning; the writer starts its next row on a fresh line. Every row carries the schema
version, and a file written by another version is refused rather than misread.

Schema versions:
- 1: the first and current layout (key, run_id, cell, status, device_setup, devices, parallel,
  simulated, error, traceback, metrics, environment, started_at, wall_s), and later the optional
  ``paired`` (rows of ``bench.py ab``: the side, base or new, and the pair a row belongs to). A
  reader that predates a field drops it; a row without it reads as before.
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


class SchemaVersionError(RowError):
    """A row another version of the suite wrote: refused wherever it is, never misread or skipped."""


class OtherSchemaFileError(ResultsFileError):
    """A results file another version of the suite wrote; what to do depends on the command (write elsewhere, or
    read it with that version), so the command adds it."""


class Job(Protocol):
    """What a row needs to know of the job that produced it (a throughput cell, a training run)."""

    def key(self) -> str: ...

    def row_fields(self, framework_environment: dict | None) -> dict: ...


def job_key(config: dict) -> str:
    """Stable identity of a job's configuration (``--resume`` and ``compare`` match on it)."""
    text = json.dumps(config, sort_keys=True)
    return hashlib.sha1(text.encode()).hexdigest()[:16]


SIDES = ("base", "new")


def paired_key(cell_key: str, side: str, pair: int) -> str:
    """The key of a paired comparison's row: its cell's key, its side and its pair. A base row and a new row of one
    cell, or two pairs of one side, never share a key, so ``--resume``, "newest row per key" and de-duplication
    keep them all apart (a plain run's row of the same cell keeps the cell's own key)."""
    return job_key({"cell": cell_key, "side": side, "pair": pair})


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
    # ``bench.py ab``'s rows: {"side": "base" | "new", "pair": int, "order": "base-first" | "new-first", ...}.
    # The side and pair are part of the row's key (:func:`paired_key`), so no reader folds base into new.
    paired: dict | None = None
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
        if self.paired is not None:
            if not isinstance(self.paired, dict) or self.paired.get("side") not in SIDES:
                raise RowError(f"paired.side must be one of {', '.join(SIDES)}, got {self.paired!r}")
            pair = self.paired.get("pair")
            if not isinstance(pair, int) or isinstance(pair, bool):
                raise RowError(f"paired.pair must be int, got {pair!r}")

    @property
    def side(self) -> str:
        """'base' or 'new' for a row of a paired comparison (``bench.py ab``); '' for every other row."""
        return self.paired["side"] if self.paired else ""

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
            raise SchemaVersionError(
                f"results schema version {version!r}; this suite reads and writes version {SCHEMA_VERSION}"
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
        if data["paired"] is None:  # a plain row is written as it was before the field existed
            del data["paired"]
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
    damaged: list[int] = field(default_factory=list)  # lines inside the file that are not rows (a torn last one is not)


# A row is a few KB. A longer line is not a row: a file with no newline at all (a disk image, /dev/zero copied
# into place) would otherwise be one endless line read into memory before anything could be said about it.
MAX_LINE_BYTES = 1 << 20


class RowWriteError(ResultsFileError):
    """A row could not be written (a full disk); the file was left as it was before the row."""


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


def input_problem(path: Path) -> str | None:
    """Why ``path`` cannot be read as a results file, in words (None: it is a regular file, so it can be tried).

    A name too long for the file system, a device, a pipe and a folder each get their own words: "no results file"
    is only for a path where nothing is.
    """
    try:
        mode = path.stat().st_mode
    except (FileNotFoundError, NotADirectoryError):
        return f"no results file at {path}"
    except OSError as error:  # a name too long, a loop of links, no permission
        return f"cannot read {path}: {error.strerror or error}"
    if stat.S_ISDIR(mode):
        return f"{path} is a directory, not a results file; name a file in it"
    if not stat.S_ISREG(mode):
        return f"{path} is not a regular file (a device, pipe or socket), so not a results file"
    return None


def _why_not_writable(path: Path, error: OSError) -> str:
    """The words for an output that cannot be made: a folder on the way that is a file says so (the system's own
    words are "File exists" or "Not a directory")."""
    for folder in reversed(path.parents):
        try:
            if stat.S_ISDIR(folder.stat().st_mode):
                continue
        except OSError:
            break  # nothing there (or nothing that can be asked): the system's words say it
        return f"{folder} is a file, not a folder"
    return str(error.strerror or error)


def check_writable_folder(folder: Path, what: str) -> None:
    """Refuse an output folder that cannot be written, before the work that fills it."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as error:
        raise ResultsFileError(f"cannot write {what} to {folder}: {_why_not_writable(folder / 'x', error)}") from None


def check_writable(path: Path) -> None:
    """Fail before any job runs if the results file cannot be appended to; a file made to find out is removed
    again, so a command refused later leaves nothing behind (the first row creates it)."""
    _check_regular(path)
    parent = path.parent if str(path.parent) else Path(".")
    existed = path.exists()
    try:
        parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a", encoding="utf-8"):
            pass
        if not existed:
            path.unlink()
    except OSError as error:
        raise ResultsFileError(f"cannot write results to {path}: {_why_not_writable(path, error)}") from None


def _numbered_lines(handle) -> Iterator[tuple[int, bytes | None]]:
    """(line number, the line's bytes) one at a time; None for a line longer than MAX_LINE_BYTES, whose bytes are
    passed over without being held."""
    number = 0
    while chunk := handle.readline(MAX_LINE_BYTES + 1):
        number += 1
        if len(chunk) <= MAX_LINE_BYTES or chunk.endswith(b"\n"):
            yield number, chunk
            continue
        yield number, None  # before passing over the rest: a caller that stops here reads no further
        while (rest := handle.readline(MAX_LINE_BYTES)) and not rest.endswith(b"\n"):
            pass


def _row_of(raw: bytes | None, number: int) -> tuple[ResultRow | None, str]:
    """The line's row, or why it is not one."""
    if raw is None:
        return None, f"longer than {MAX_LINE_BYTES // 1024} KiB"
    text = raw.decode("utf-8", errors="replace").strip()
    try:
        data = json.loads(text, parse_int=_figure_int)
    except json.JSONDecodeError:
        return None, "cut off" if text.startswith('{"') else "not JSON"
    except ValueError as error:  # valid JSON holding a number no figure can be
        return None, str(error)
    try:
        return ResultRow.from_dict(data, line=number), ""
    except SchemaVersionError:
        raise
    except RowError as error:
        return None, str(error)


MAX_INT_DIGITS = 300  # a float holds about 1e308: a longer integer is no count, time or size the suite wrote


def _figure_int(text: str) -> int:
    """A JSON integer the reports can turn into a float (``float(10**400)`` raises OverflowError)."""
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise ValueError(f"an integer of {len(text.lstrip('-'))} digits, beyond any figure")
    return int(text)


def _not_a_row(problem: str) -> str:
    """Why a first line shows the file is not a results file, and what to do."""
    if problem == "not JSON":
        return " is not JSON: not a results file (give another file with --results)"
    if problem.startswith("longer than"):
        return f" is {problem}: not a results file (give another file with --results)"
    return f": {problem}"


def read_results(path: Path) -> LoadedResults:
    """Rows of a results file, each with its line number, read one line at a time (no line over MAX_LINE_BYTES).

    Three kinds of bad line are told apart. A first line that is not a row means the file is not a results file:
    :class:`ResultsFileError` at once, before the rest is read. A cut-off last line (a run killed mid-write) is
    skipped with a warning; the writer starts its next row on a fresh line. A damaged line inside the file is
    skipped with a warning naming it, the good rows stay readable, and ``damaged`` lists it so that no writer
    appends to the file (see :func:`check_appendable`).
    """
    _check_regular(path)
    if not path.exists():
        return LoadedResults([])
    loaded, first, pending = LoadedResults([]), True, None
    try:
        with open(path, "rb") as handle:
            for number, raw in _numbered_lines(handle):
                if raw is not None and not raw.strip():
                    continue
                try:
                    row, problem = _row_of(raw, number)
                except SchemaVersionError as error:  # another version's file: refused, never partly read
                    raise OtherSchemaFileError(f"{path} line {number}: {error}") from None
                if first and row is None and problem != "cut off":  # a first row cut off is a crashed first run
                    raise ResultsFileError(f"{path} line {number}{_not_a_row(problem)}")
                first = False
                if pending is not None:
                    _skip(loaded, path, *pending, last=False)
                    pending = None
                if row is None:
                    pending = (number, problem)
                    continue
                loaded.rows.append(row)
    except OSError as error:
        raise ResultsFileError(f"cannot read {path}: {error.strerror or error}") from None
    if pending is not None:
        _skip(loaded, path, *pending, last=True)
    return loaded


def _skip(loaded: LoadedResults, path: Path, number: int, problem: str, last: bool) -> None:
    """Say why a line was skipped. A row cut off by a crash is expected anywhere (the next run starts a fresh line
    after it); any other bad line is damage, which ``damaged`` records."""
    where = "last line" if last else f"line {number}"
    if problem == "cut off":
        loaded.warnings.append(f"{path}: {where} is incomplete (a run was cut off) and was ignored")
        return
    loaded.damaged.append(number)
    loaded.warnings.append(f"{path}: line {number} is damaged ({problem}) and was skipped; the other rows were read")


def check_appendable(path: Path, loaded: LoadedResults) -> None:
    """Refuse to append rows after a damaged line: a later reader could not tell the new rows from the damage."""
    if loaded.damaged:
        lines = ", ".join(map(str, loaded.damaged[:5]))
        raise ResultsFileError(
            f"{path} has damaged lines ({lines}); its good rows can still be read, but new rows are not appended to "
            "it: write to another file with --results"
        )


def append_row(path: Path, row: ResultRow) -> None:
    """Append one row and make it durable before returning.

    A write that fails part-way (a full disk, a quota) is undone: the file is cut back to where it was, so it
    never holds a fragment, and :class:`RowWriteError` says what happened in one line. The bytes go straight to
    the descriptor (no buffer that closing would flush after the failure).
    """
    data = json.dumps(row.to_dict(), sort_keys=True, allow_nan=False).encode() + b"\n"
    descriptor = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        size = os.fstat(descriptor).st_size
        if size > 0 and os.pread(descriptor, 1, size - 1) != b"\n":
            data = b"\n" + data  # a torn line from a crash: do not glue onto it
        try:
            written = 0
            while written < len(data):
                written += os.write(descriptor, data[written:])
            os.fsync(descriptor)
        except OSError as error:
            raise RowWriteError(
                f"cannot write a row to {path}: {error.strerror or error}; {_cut_back(descriptor, size)}"
            ) from None
    finally:
        os.close(descriptor)


def _cut_back(descriptor: int, size: int) -> str:
    """Truncate the file to ``size`` bytes after a failed write; the words that say what the file now holds."""
    try:
        os.ftruncate(descriptor, size)
    except OSError as error:
        return f"its last line is cut off ({error.strerror or error}) and is skipped when read; --resume runs the rest"
    return "the rows before it are kept, and --resume runs the cells still missing once there is room"


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
