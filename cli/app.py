"""The typer app: every command in the order ``--help`` lists them, and ``main``, the console script.

Every command gets the same endings from here, whichever command it is: a usage mistake is one line and exit code 2,
Ctrl-C (or SIGTERM) is "interrupted" and exit code 130, and standard output that cannot be written never stops a
command half-way (see :class:`Output`).
"""

import errno
import functools
import inspect
import os
import signal
import sys
from collections.abc import Callable

import typer
from rich.markup import escape

from benchmarks import frameworks
from cli import ab, checks, results, run, train
from cli.common import err_console, shorten, warn


class Interrupted(Exception):
    """Ctrl-C inside a command, carried past typer (which turns KeyboardInterrupt into a silent exit 130) to main."""


_started: list[str] = []  # the command whose body began: an exit 130 after it is its own (it said why)


def guarded(command: Callable) -> Callable:
    """``command`` with Ctrl-C turned into :class:`Interrupted`, so that main says "interrupted" for every command."""

    @functools.wraps(command)
    def body(*args, **kwargs):
        _started.append(command.__name__)
        try:
            return command(*args, **kwargs)
        except KeyboardInterrupt:
            raise Interrupted from None

    return body


app = typer.Typer(
    help="AlexNet (Krizhevsky et al. 2012) in Keras 3 and PyTorch: prove they are the same network, then measure them.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def help_text(command: Callable) -> str:
    """The command's docstring with each paragraph on one line: typer keeps a docstring's line breaks inside a
    paragraph, so ``--help`` broke sentences wherever the source wrapped them."""
    paragraphs = inspect.cleandoc(command.__doc__ or "").split("\n\n")
    return "\n\n".join(" ".join(paragraph.split()) for paragraph in paragraphs)


for name, command in (
    ("variants", checks.variants),
    ("parity", checks.parity),
    ("check-model", checks.check_model),
    ("run", run.run),
    ("train", train.train),
    ("selfcheck", checks.selfcheck),
    ("report", results.report),
    ("compare", results.compare),
    ("ab", ab.ab),
):
    app.command(name, help=help_text(command))(guarded(command))


class Output:
    """Standard output that a command cannot fail on half-way.

    A reader that closes the pipe early (``bench.py compare ... | head -1``) or a full device (``> /dev/full``) used
    to raise in the middle of a command: a traceback, or typer's silent exit 1, which reads as a regression. Here the
    first failed write is recorded and the rest of the output is dropped (the descriptor now points at /dev/null, so
    the bytes still buffered do not fail again at exit); the command runs to its end and keeps its own exit code, and
    what it writes to files (a sweep's rows, a report) is complete. :func:`main` says afterwards what was lost.
    """

    def __init__(self, stream) -> None:
        self._stream = stream
        self.failure: OSError | None = None

    def write(self, text: str) -> int:
        if self.failure is None:
            try:
                return self._stream.write(text)
            except OSError as error:
                self._drop(error)
        return len(text)

    def flush(self) -> None:
        if self.failure is None:
            try:
                self._stream.flush()
            except OSError as error:
                self._drop(error)

    def _drop(self, error: OSError) -> None:
        self.failure = error
        try:
            descriptor = self._stream.fileno()
        except (OSError, ValueError):  # no descriptor (an in-memory stream): nothing is left to fail at exit
            return
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, descriptor)
        finally:
            os.close(devnull)

    def __getattr__(self, name: str):
        return getattr(self._stream, name)


def _terminate(signum: int, frame: object) -> None:
    """SIGTERM (``timeout``, CI cancellation, ``docker stop``) stops a sweep the way Ctrl-C does."""
    raise KeyboardInterrupt


def interrupted() -> int:
    err_console.print("[red]error:[/] interrupted", highlight=False)
    return 130


def main(argv: list[str] | None = None) -> None:
    """The command line: one line on stderr and exit code 2 for a usage mistake, never a traceback."""
    signal.signal(signal.SIGTERM, _terminate)
    output = sys.stdout = Output(sys.stdout)
    try:
        code = run_app(argv)
        if output.failure is not None and output.failure.errno != errno.EPIPE:
            # A closed pipe is the reader's choice (``| head``): nothing to say, and the command's own exit code stands.
            reason = output.failure.strerror or output.failure
            err_console.print(
                f"[red]error:[/] standard output could not be written ({escape(str(reason))}): the rest of it was "
                "dropped; the command ran to its end, and the files it writes (rows, reports) are complete",
                highlight=False,
            )
            code = code or 2
    finally:
        sys.stdout = output._stream
    sys.exit(code or 0)


def run_app(argv: list[str] | None) -> int:
    """Run the command; its exit code, with the one line that says why when typer would have said nothing."""
    for problem in frameworks.PLUGIN_PROBLEMS:
        warn(problem)
    _started.clear()
    try:
        code = app(args=argv, standalone_mode=False)
    except typer.TyperException as error:  # typer's usage errors: a bad option, a bad value
        code = getattr(error, "exit_code", 2)
        if type(error).__name__ != "NoArgsIsHelpError":  # that one has printed the help already
            context = getattr(error, "ctx", None)
            command = context.command_path if context else "bench.py"
            err_console.print(
                f"[red]error:[/] {escape(shorten(error.format_message()))} (see {escape(command)} --help)",
                highlight=False,
            )
    except (typer.Abort, KeyboardInterrupt, Interrupted):
        code = interrupted()
    if code == 130 and not _started:  # Ctrl-C while typer read the options: typer returns 130 and says nothing
        code = interrupted()
    return code or 0
