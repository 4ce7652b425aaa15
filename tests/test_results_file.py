"""The results file as the source of truth: bounded reads, damage told apart from a cut-off row, no torn writes."""

import errno
import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import results
from benchmarks.results import (
    MAX_LINE_BYTES,
    ResultsFileError,
    RowWriteError,
    append_row,
    check_appendable,
    read_results,
)
from benchmarks.sweep import open_sweep
from tests.test_matrix_and_results import row

ROOT = Path(__file__).resolve().parent.parent


def test_a_damaged_line_inside_is_named_and_the_good_rows_stay_readable(tmp_path):
    path = tmp_path / "r.jsonl"
    for key in "abc":
        append_row(path, row(key))
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(lines[0] + b"\x00\x00 not a row\n" + b"".join(lines[1:]))
    loaded = read_results(path)
    assert [r.key for r in loaded.rows] == ["a", "b", "c"]
    assert loaded.damaged == [2]
    assert "line 2 is damaged (not JSON)" in loaded.warnings[0]
    with pytest.raises(ResultsFileError, match=r"damaged lines \(2\).*another file with --results"):
        open_sweep([], path)
    assert read_results(path).rows == loaded.rows  # refusing appended nothing


def test_a_row_cut_off_by_a_crash_is_not_damage_wherever_it_is(tmp_path):
    path = tmp_path / "r.jsonl"
    append_row(path, row("a"))
    with open(path, "a") as handle:
        handle.write('{"schema_version": 1, "key": "tor')
    append_row(path, row("b"))  # the next run starts a fresh line
    loaded = read_results(path)
    assert [r.key for r in loaded.rows] == ["a", "b"] and not loaded.damaged
    check_appendable(path, loaded)


def test_an_over_long_line_is_damage_and_never_held_whole(tmp_path):
    path = tmp_path / "r.jsonl"
    append_row(path, row("a"))
    with open(path, "ab") as handle:
        handle.write(b"x" * (3 * MAX_LINE_BYTES) + b"\n")
    append_row(path, row("b"))
    loaded = read_results(path)
    assert [r.key for r in loaded.rows] == ["a", "b"] and loaded.damaged == [2]
    assert "longer than 1024 KiB" in loaded.warnings[0]


def test_a_first_line_that_is_not_a_row_refuses_the_file_without_reading_on(tmp_path, monkeypatch):
    path = tmp_path / "r.bin"
    path.write_bytes(b"\x00" * (MAX_LINE_BYTES + 10) + b"\n" + b"{}\n" * 1000)
    calls = []
    real = results._numbered_lines

    def counted(handle):
        for item in real(handle):
            calls.append(item[0])
            yield item

    monkeypatch.setattr(results, "_numbered_lines", counted)
    with pytest.raises(ResultsFileError, match="line 1 is longer than 1024 KiB: not a results file"):
        read_results(path)
    assert calls == [1]


def test_a_huge_sparse_file_is_refused_in_one_line_under_a_memory_limit(tmp_path):
    huge = tmp_path / "huge.jsonl"
    with open(huge, "wb") as handle:
        handle.truncate(50 << 30)  # 50 GB of NUL bytes, no newline, sparse: no disk used
    limit = 3 << 30  # address space for the interpreter, pandas and matplotlib, far below the file

    def cap_memory() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    for args in (["report", str(huge), "--out", str(tmp_path / "out")], ["compare", str(huge), str(huge)]):
        done = subprocess.run(
            [sys.executable, str(ROOT / "bench.py"), *args],
            capture_output=True,
            text=True,
            timeout=120,
            preexec_fn=cap_memory,
        )
        assert done.returncode == 2, done.stderr
        assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr
        assert "not a results file" in done.stderr


class PartWriteThenFull:
    """os.write that writes part of what it is given, then fails as a full disk does."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, descriptor: int, data: bytes) -> int:
        self.calls += 1
        if self.calls == 1:
            return os.write(descriptor, data[: len(data) // 2])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_a_full_disk_mid_row_leaves_the_file_as_it_was(tmp_path, monkeypatch):
    path = tmp_path / "r.jsonl"
    append_row(path, row("a"))
    before = path.read_bytes()
    monkeypatch.setattr(results.os, "write", PartWriteThenFull())
    with pytest.raises(RowWriteError, match="No space left on device; the rows before it are kept"):
        append_row(path, row("b"))
    monkeypatch.undo()
    assert path.read_bytes() == before
    append_row(path, row("b"))
    assert [r.key for r in read_results(path).rows] == ["a", "b"]


def test_a_row_holding_an_integer_no_float_can_hold_is_damage_and_skipped(tmp_path):
    """``10**400`` is valid JSON; reading it as a figure raised OverflowError in report, compare and --resume."""
    path = tmp_path / "r.jsonl"
    for key in "ab":
        append_row(path, row(key))
    lines = path.read_bytes().splitlines(keepends=True)
    huge = lines[1].replace(b'"images_per_s": 1.0', b'"images_per_s": ' + str(10**400).encode())
    assert huge != lines[1]
    path.write_bytes(lines[0] + huge + lines[1])
    loaded = read_results(path)
    assert [r.key for r in loaded.rows] == ["a", "b"] and loaded.damaged == [2]
    assert "line 2 is damaged (an integer of 401 digits, beyond any figure)" in loaded.warnings[0]
