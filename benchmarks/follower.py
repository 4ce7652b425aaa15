"""A node other than the first in a multi-node run: it takes part in every cell and writes no row.

Its processes join each cell's rendezvous and train in lockstep with the first node's; the first
node's reporting process measures and writes the row, and learns from the collective itself when
a node fails. Here each cell's launcher is run to its end (bounded by the cell timeout, killed
with its whole process group past it) and its exit code is handed back for the console.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from benchmarks import frameworks
from benchmarks.cell import CellConfig
from benchmarks.runner import run_bounded, worker_command, worker_environment


@dataclass(frozen=True)
class Part:
    """How this node's share of one cell ended."""

    cell: CellConfig
    status: str  # "ok", "failed" (the launcher's exit code says), or what the framework reads in its last words
    detail: str


def take_part(cell: CellConfig, timeout_s: float) -> Part:
    """Run this node's processes of ``cell`` to the end; never longer than ``timeout_s``."""
    ended = run_bounded(worker_command(cell), worker_environment(cell), timeout_s, keep_stdout=False)
    if ended.returncode is None:
        return Part(cell, "timeout", f"still running after {timeout_s:g} s; killed")
    if ended.returncode == 0:
        return Part(cell, "ok", "took part")
    if explained := frameworks.get(cell.framework).explain_exit(cell.launch_cell(), ended.stderr):
        return Part(cell, *explained)
    tail = " | ".join(line.strip() for line in ended.stderr.strip().splitlines()[-2:])
    return Part(cell, "failed", f"exit code {ended.returncode}: {tail[:300] or 'no output'}")


def take_part_in_all(
    cells: Sequence[CellConfig], timeout_s: float, on_part: Callable[[int, Part], None] = lambda i, part: None
) -> list[Part]:
    """Every cell in plan order, as the first node runs them."""
    parts = []
    for index, cell in enumerate(cells):
        parts.append(take_part(cell, timeout_s))
        on_part(index, parts[-1])
    return parts
