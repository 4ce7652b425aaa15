"""``bench.py check-model``'s table: the port's layers against the spec's, and the verdict."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from benchmarks import frameworks
from implementations.check_model import CheckReport
from reports.parity_table import _count, _shape


def render_check(report: CheckReport, console: Console) -> None:
    framework = frameworks.label(report.framework)
    table = Table(title=f"{report.target} ({framework}) against {report.variant}", title_justify="left")
    for header in ("spec layer", "spec shape (CHW)", "spec params", "your layer", "your shape (CHW)", "your params"):
        table.add_column(header, justify="right" if "params" in header else "left")
    table.add_column("max |diff| (relative)", justify="right")
    table.add_column("verdict")
    for check in report.layers:
        port = check.port
        diff = "not compared" if check.max_abs_diff is None else f"{check.max_abs_diff:.2e} ({check.rel_diff:.1e})"
        table.add_row(
            check.name,
            _shape(check.spec_shape),
            _count(check.spec_params),
            escape(port.name) if port else "—",
            _shape(port.output_shape) if port else "—",
            _count(port.params) if port else "—",
            diff,
            "[green]ok[/]" if check.ok else f"[red]{escape('; '.join(check.problems))}[/]",
        )
    for port in report.extra:
        table.add_row(
            "—", "", "", escape(port.name), _shape(port.output_shape), _count(port.params), "", "[red]extra[/]"
        )
    table.add_section()
    port_total = sum(c.port.params for c in report.layers if c.port) + sum(p.params for p in report.extra)
    table.add_row("total", "", _count(sum(c.spec_params for c in report.layers)), "", "", _count(port_total), "", "")
    console.print(table)
    if not report.compared:
        console.print(f"  outputs not compared: {escape(report.not_compared_because)}", highlight=False)
    first = report.first_failing
    if report.ok:
        console.print("  verdict: [green]PASS[/]: same shapes, parameters and outputs as the spec")
    elif first is not None:
        console.print(f"  verdict: [red]FAIL[/] at {first.name}: {escape(first.problems[0])}", highlight=False)
    else:
        console.print(f"  verdict: [red]FAIL[/]: {len(report.extra)} layer(s) beyond the spec's last", highlight=False)
