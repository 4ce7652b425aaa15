"""The results file: JSON Lines, one row per finished cell, appended and fsynced at once.

A row is never rewritten. A crash can at worst leave a torn last line, which the reader skips
with a warning; the writer starts its next row on a fresh line. Every row carries the schema
version, and a file written by another version is refused rather than misread.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

SCHEMA_VERSION = 1


class ResultsFileError(Exception):
    """The results file cannot be used; the message says why and what to do."""


@dataclass
class LoadedResults:
    rows: list[dict]
    warnings: list[str] = field(default_factory=list)


def check_writable(path: Path) -> None:
    """Fail before any cell runs if the results file cannot be appended to."""
    if path.exists() and path.is_dir():
        raise ResultsFileError(f"results path {path} is a directory; give a file name")
    parent = path.parent if str(path.parent) else Path(".")
    try:
        parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a", encoding="utf-8"):
            pass
    except OSError as error:
        raise ResultsFileError(f"cannot write results to {path}: {error.strerror or error}") from None


def read_results(path: Path) -> LoadedResults:
    """Rows of a results file. Unparseable lines are skipped with a warning; a row from another
    schema version raises :class:`ResultsFileError`."""
    if not path.exists():
        return LoadedResults([])
    loaded = LoadedResults([])
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            where = "last line" if number == len(lines) else f"line {number}"
            loaded.warnings.append(f"{path}: {where} is incomplete (a run was cut off) and was ignored")
            continue
        version = row.get("schema_version") if isinstance(row, dict) else None
        if version != SCHEMA_VERSION:
            raise ResultsFileError(
                f"{path} line {number} has results schema version {version!r}; this suite reads and writes "
                f"version {SCHEMA_VERSION}. Write to another file with --results."
            )
        loaded.rows.append(row)
    return loaded


def append_row(path: Path, row: dict) -> None:
    """Append one row and make it durable before returning."""
    row = {"schema_version": SCHEMA_VERSION, **row}
    line = json.dumps(row, sort_keys=True, allow_nan=False)
    with open(path, "a+b") as handle:
        handle.seek(0, os.SEEK_END)
        if handle.tell() > 0:
            handle.seek(-1, os.SEEK_END)
            if handle.read(1) != b"\n":  # a torn line from a crash: do not glue onto it
                handle.write(b"\n")
        handle.write(line.encode() + b"\n")
        handle.flush()
        os.fsync(handle.fileno())


def done_keys(rows: list[dict]) -> set[str]:
    """Keys of cells that finished successfully (``--resume`` skips these; failed cells run again)."""
    return {row["key"] for row in rows if row.get("status") == "ok" and "key" in row}
