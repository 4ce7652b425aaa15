"""``bench.py run --shard i/n``: a deterministic share of a sweep, so n machines (or CI jobs) cover it together.

Cells are dealt round-robin in plan order, the plan order being a pure function of the options:
every machine given the same options computes the same plan and takes the same share, without
talking to the others, and the shares differ in size by at most one cell (a hash of each key
modulo n would be as stable but can leave one machine twice the work of another).

All repeats of a cell go to the same shard: ``compare`` judges a cell by the spread of its
per-process medians, and rows of different machines are never pooled, so a cell whose repeats were
spread over machines could never be judged.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace

from benchmarks.cell import CellConfig


class ShardError(ValueError):
    """A --shard value that names no share; the message says what is valid."""


@dataclass(frozen=True)
class Shard:
    index: int  # 1-based, as users count machines
    count: int

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def parse_shard(text: str) -> Shard:
    """``"i/n"`` with 1 <= i <= n, or a one-line error."""
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if not match:
        raise ShardError(f"--shard takes i/n (e.g. 1/2), got {text!r}")
    index, count = int(match.group(1)), int(match.group(2))
    if count < 1 or not 1 <= index <= count:
        raise ShardError(f"--shard i/n needs 1 <= i <= n, got {index}/{count}")
    return Shard(index, count)


def take_shard(cells: Sequence[CellConfig], shard: Shard) -> list[CellConfig]:
    """The cells of ``shard``: distinct cells (repeats aside) dealt round-robin in plan order."""
    position: dict[CellConfig, int] = {}
    for cell in cells:
        position.setdefault(replace(cell, repeat=0), len(position))
    return [cell for cell in cells if position[replace(cell, repeat=0)] % shard.count == shard.index - 1]
