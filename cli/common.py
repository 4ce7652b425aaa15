"""What every command does alike: its consoles, one-line errors and notes, running a sweep, announcing a report."""

import os
import re
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape

# Tables are wide; when output goes to a file or pipe, do not wrap them at 80 columns.
console = Console(width=None if Console().is_terminal else 160)
err_console = Console(stderr=True, soft_wrap=True)


# A run of text without a space this long is something the user typed or named (a variant, a path), never the
# suite's own words: a message shows its start and end and how long it is, not 100 KB of it.
LONGEST_WORD = 200


def shorten(message: str) -> str:
    """``message`` with every word over LONGEST_WORD characters cut to its start and end, saying how long it was."""

    def cut(match: re.Match) -> str:
        word = match.group()
        return f"{word[:60]}…{word[-20:]} ({len(word):,} characters)"

    return re.sub(rf"[^\s'\":;,]{{{LONGEST_WORD + 1},}}", cut, message)  # a quoted name: its quotes stay


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print one line for a user mistake and return the exit to raise (no traceback)."""
    err_console.print(f"[red]error:[/] {escape(shorten(message))}", highlight=False)
    return typer.Exit(code)


def warn(message: str) -> None:
    err_console.print(f"[yellow]warning:[/] {escape(shorten(message))}", highlight=False)


def note(message: str) -> None:
    """A line on stderr about what was chosen for the user, e.g. a framework left out because it is not installed."""
    err_console.print(f"note: {escape(message)}", highlight=False)


def default_frameworks(given: list[str] | None, candidates: list[str]) -> list[str]:
    """The frameworks the user named; else those of ``candidates`` this installation has, one line for each left out."""
    from benchmarks.request import RequestError, resolve_frameworks

    try:
        return resolve_frameworks(given, candidates, note)
    except RequestError as error:
        raise fail(str(error)) from None


def quiet_frameworks() -> None:
    """Keep TensorFlow's start-up chatter out of the tables, and Keras on its default backend unless asked."""
    from implementations.keras_backend import default_keras_backend

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    default_keras_backend(os.environ)


def execute(planned, noun: str) -> list:
    """Run a planned sweep under a progress display; a results file in use, or Ctrl-C, ends it in one line."""
    from benchmarks.request import run_request
    from benchmarks.results import ResultsFileError
    from reports.console import progress_callbacks

    try:
        with progress_callbacks(console, noun, len(planned.sweep.todo)) as (on_start, on_row):
            return run_request(planned, on_start, on_row)
    except ResultsFileError as error:
        raise fail(str(error)) from None
    except KeyboardInterrupt:
        raise fail(f"interrupted; every finished {noun} is saved in {planned.sweep.results}", code=130) from None


def write_and_announce_report(paths: list[Path], out: Path) -> None:
    from benchmarks.results import ResultsFileError
    from reports.build import write_report

    try:
        files = write_report(paths, out)
    except ResultsFileError as error:
        raise fail(str(error)) from None
    except OSError as error:
        raise fail(f"cannot write the report to {out}: {error.strerror or error}") from None
    for warning in files.warnings:
        warn(warning)
    for line in files.notes:
        console.print(f"note: {escape(line)}", highlight=False)
    written = [files.markdown, files.html, files.csv, *([files.parquet] if files.parquet else [])]
    listed = escape(", ".join(str(path) for path in written))
    console.print(f"report: {listed} (+{len(files.plots)} plots)", highlight=False)
