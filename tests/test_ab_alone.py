"""``bench.py ab`` end to end: a new tree whose PyTorch step does real extra work is flagged on the CPU, with the
two trees' step servers taking turns (the default when both have one).

This measures timing, which other processes beside it disturb (the point of the paired command), so it is marked
``alone``: run it in a plain ``pytest`` session, never beside other tests under a parallel runner (``pytest -m
alone`` runs it by itself). It takes about a minute on two cores; ``tests/test_paired.py`` and
``tests/test_interleave.py`` cover the pairing, the statistics and row identity with synthetic numbers.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.results import read_results
from tests.slower_tree import make_slower_tree

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.alone

# The smallest cell: CIFAR shapes, the split network, inference, batch 2; 3x the FLOPs a step is what it must see.
CELL = ("-f", "torch", "-v", "cifar100-split", "-m", "infer", "-b", "2", "--steps", "5", "--warmup", "3")
EXTRA = 2.0


def test_ab_flags_a_step_that_does_real_extra_work(tmp_path):
    pytest.importorskip("torch")
    slower = make_slower_tree(ROOT, tmp_path / "new", EXTRA)
    results, summary = tmp_path / "ab.jsonl", tmp_path / "ab.json"
    command = [sys.executable, str(slower / "bench.py"), "ab", "--base-tree", str(ROOT), *CELL]
    command += ["--time-budget", "1", "--budget", "120"]
    command += ["--results", str(results), "--summary", str(summary)]
    done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=900)
    said = f"--- stdout\n{done.stdout[-4000:]}\n--- stderr\n{done.stderr[-4000:]}"
    assert done.returncode == 1, said  # a regression
    cells = json.loads(summary.read_text())["cells"]
    assert [cell["verdict"] for cell in cells] == ["regression"], said
    assert cells[0]["change"] < -0.1, said  # well beyond the 5% threshold (1.0 extra: about -20% here)
    rows = read_results(results).rows
    assert {row.side for row in rows} == {"base", "new"}
    assert len({row.key for row in rows}) == len(rows)  # no row folds into another
    assert {row.paired["mode"] for row in rows} == {"interleaved-steps"}  # both trees have the step server
    assert all(row.paired["tree"] == str((slower if row.side == "new" else ROOT).resolve()) for row in rows)
