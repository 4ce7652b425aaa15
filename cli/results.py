"""The commands that read results files: ``report`` and ``compare``."""

from pathlib import Path
from typing import Annotated

import typer

from benchmarks.request import RESULTS
from cli.common import console, fail, warn, write_and_announce_report
from cli.options import Opt

ResultsFiles = Annotated[
    list[Path] | None,
    typer.Argument(help="Results files (JSON Lines) or pytest-benchmark JSON. Default: results/results.jsonl."),
]
Out = Opt(Path, "--out", help="Folder for report.md, report.html, results.csv/parquet and PNGs.")
Base = Annotated[Path, typer.Argument(help="Results file of the baseline.")]
New = Annotated[Path, typer.Argument(help="Results file to judge against it.")]
Threshold = Opt(str, "--threshold", help="Slowdown that counts as a regression, e.g. 5% or 0.05.")
DRIFT = (
    "How far a whole run of one build moves between invocations on this machine (every cell alike); a whole-run "
    "change within it is not called a regression. Default: 25%, what shared CPUs showed; lower it on a dedicated "
    "machine."
)
Drift = Opt(str, "--drift", help=DRIFT)
Markdown = Opt(bool, "--markdown", help="Print Markdown (for a PR comment) instead of a table.")


def report(results: ResultsFiles = None, out: Out = Path("results/report")) -> None:
    """Write the comparison report: Markdown, self-contained HTML with plots, CSV/Parquet, PNGs."""
    paths = results or [RESULTS]
    refuse_unreadable(paths, "; run `python bench.py run` first or name a file")
    write_and_announce_report(paths, out)


def refuse_unreadable(paths: list[Path], missing_advice: str = "") -> None:
    """One line for the first path that cannot be a results file (nothing there, a device, a name too long)."""
    from benchmarks.results import input_problem

    for path in paths:
        if problem := input_problem(path):
            raise fail(problem + (missing_advice if problem.startswith("no results file") else ""))


def compare(
    base: Base, new: New, threshold: Threshold = "5%", drift: Drift = "25%", markdown: Markdown = False
) -> None:
    """Per cell, the change in images/s, a test over per-process medians and the smallest change it could see.

    Exits 1 when a significant slowdown exceeds the threshold (or a cell that worked now fails). A
    cell whose detectable change is above the threshold is "inconclusive: need about N repeats".
    Each cell is judged against the whole run's shift (the median change over the cells); the
    shift itself counts only beyond --drift.
    """
    from benchmarks.results import ResultsFileError
    from reports.compare import compare, parse_threshold
    from reports.compare_report import render, to_markdown

    refuse_unreadable([base, new])
    try:
        result = compare([base], [new], threshold=parse_threshold(threshold), drift=parse_threshold(drift, "drift"))
    except (ResultsFileError, ValueError) as error:
        raise fail(str(error)) from None
    for warning in result.warnings:  # on stderr, as every warning: the machines differ, a side ran beside other load
        warn(warning)
    if markdown:
        print(to_markdown(result))
    else:
        render(result, console)
    if result.nothing_to_compare:
        raise fail(f"nothing to compare: {base} and {new} have no cell in common")
    raise typer.Exit(1 if result.has_regressions else 0)
