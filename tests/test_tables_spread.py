"""Tables state the run-to-run spread they saw, and their ratio intervals widen with it."""

from __future__ import annotations

import re

import pandas as pd
import results_factory as factory

from reports.cell_summary import summarize_cells
from reports.load import frame_from_rows
from reports.tables import framework_table

ONE = {"variants": ("imagenet-single",), "modes": ("infer",)}


def _table(**options):
    rows = factory.sweep(seed=1, **ONE, **options)
    return framework_table(summarize_cells(frame_from_rows(rows)))


def _width(table) -> float:
    low, high = (float(x) for x in table.frame["95% interval"].iloc[0].split("–"))
    return high - low


def test_the_ratio_interval_widens_with_the_spread_between_processes():
    quiet, noisy = _table(repeats=4), _table(repeats=4, process_spread=0.08)
    assert _width(noisy) > 3 * _width(quiet)


def test_the_table_states_the_spread_it_saw_or_that_it_saw_none():
    noisy = _table(repeats=4, process_spread=0.08)
    note = next(n for n in noisy.notes if n.startswith("run-to-run spread"))
    median = float(re.search(r"median ([0-9.]+)%", note).group(1)) / 100
    assert 0.02 < median < 0.2  # about the 8% the rows were made with
    single = _table(repeats=1)
    assert any("not measured (one process per cell)" in n for n in single.notes)
    assert isinstance(single.frame, pd.DataFrame) and not single.frame.empty
