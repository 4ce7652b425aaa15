"""``bench.py run``: the benchmark matrix, each cell in its own process; rows, tables, findings and a report."""

import os

import typer
from rich.markup import escape

from benchmarks.request import SweepRequest
from benchmarks.results import ResultsFileError
from cli.common import console, execute, fail, note, warn, write_and_announce_report
from cli.options import command
from cli.run_options import RUN_OPTIONS


@command(SweepRequest, RUN_OPTIONS)
def run(**options) -> None:
    """Measure training and inference throughput and memory, each cell in its own process.

    Every finished cell is appended to --results at once (JSON Lines); a failed cell becomes a row
    with its status and the sweep goes on. Ctrl-C or SIGTERM keeps every finished row.
    """
    run_sweep(SweepRequest(**options))


def run_sweep(request) -> None:
    """Plan the request on this host, run it, and show what it measured."""
    from benchmarks.host import Host
    from benchmarks.request import RequestError, plan_run
    from benchmarks.sweep import latest_rows
    from reports.summary import render_sweep

    try:
        planned = plan_run(request, Host.detect(), os.environ, left_out=note)
    except RequestError as error:
        raise fail(str(error)) from None
    if planned.sweep is None:  # a node other than the first: it takes part and writes nothing
        raise typer.Exit(take_part(planned))
    if planned.report_to is not None:
        from reports.build import check_report_inputs

        try:
            check_report_inputs([request.results], planned.report_to)
        except ResultsFileError as error:
            raise fail(str(error)) from None
    for warning in planned.warnings:
        warn(warning)
    for line in planned.notes:
        console.print(escape(line), highlight=False)
    execute(planned, "cell")
    rows = latest_rows(planned.sweep)
    render_sweep(rows, console, best=request.best)
    failed = [row for row in rows if not row.ok]
    console.print(f"{len(rows)} cells, {len(failed)} failed; rows in {escape(str(request.results))}")
    if planned.report_to is not None:
        write_and_announce_report([request.results], planned.report_to)
    if failed:
        raise typer.Exit(1)


def take_part(planned) -> int:
    """A node other than the first: take part in every cell and write nothing (node 0 writes the rows); exit 1 when
    a part did not finish, as a run with a failed cell does."""
    from benchmarks.follower import take_part_in_all
    from reports.console import follower_header, part_line

    cells, setup = planned.cells, planned.setup
    console.print(follower_header(len(cells), setup.node_rank, setup.nodes, setup.endpoint), highlight=False)

    def on_part(index: int, part: object) -> None:
        console.print(part_line(index, len(cells), part), highlight=False)

    parts = take_part_in_all(cells, planned.timeout_s, on_part)
    return 0 if all(part.status == "ok" for part in parts) else 1
