"""The typer app: every command in the order ``--help`` lists them, and ``main``, the console script."""

import signal
import sys

import typer
from rich.markup import escape

from benchmarks import frameworks
from cli import ab, checks, results, run, train
from cli.common import err_console, warn

app = typer.Typer(
    help="AlexNet (Krizhevsky et al. 2012) in Keras 3 and PyTorch: prove they are the same network, then measure them.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.command()(checks.variants)
app.command()(checks.parity)
app.command("check-model")(checks.check_model)
app.command()(run.run)
app.command()(train.train)
app.command()(checks.selfcheck)
app.command()(results.report)
app.command("compare")(results.compare)
app.command("ab")(ab.ab)


def _terminate(signum: int, frame: object) -> None:
    """SIGTERM (``timeout``, CI cancellation, ``docker stop``) stops a sweep the way Ctrl-C does."""
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> None:
    """The command line: one line on stderr and exit code 2 for a usage mistake, never a traceback."""
    signal.signal(signal.SIGTERM, _terminate)
    for problem in frameworks.PLUGIN_PROBLEMS:
        warn(problem)
    try:
        code = app(args=argv, standalone_mode=False)
    except typer.TyperException as error:  # typer's usage errors: a bad option, a bad value
        code = getattr(error, "exit_code", 2)
        if type(error).__name__ != "NoArgsIsHelpError":  # that one has printed the help already
            context = getattr(error, "ctx", None)
            command = context.command_path if context else "bench.py"
            err_console.print(
                f"[red]error:[/] {escape(error.format_message())} (see {escape(command)} --help)", highlight=False
            )
    except (typer.Abort, KeyboardInterrupt):
        err_console.print("[red]error:[/] interrupted", highlight=False)
        code = 130
    sys.exit(code or 0)
