"""The harness-overhead check: passes a cheap harness, catches a costly one."""

import time

import pytest

from benchmarks import frameworks
from benchmarks.cell import CellConfig, PreparedCell
from benchmarks.measure.selfcheck import measure_overhead


def fake_cell(sync_cost_s: float) -> PreparedCell:
    return PreparedCell(
        step=lambda: time.sleep(0.01), sync=lambda: time.sleep(sync_cost_s), images_per_step=4, environment={}
    )


@pytest.mark.parametrize("sync_cost_s,within", [(0.0, True), (0.004, False)])
def test_overhead_is_measured_against_a_bare_loop(monkeypatch, sync_cost_s, within):
    """A per-step synchronisation that costs 40% of a step is what the check must catch."""
    monkeypatch.setattr(frameworks.get("torch"), "prepare", lambda config: fake_cell(sync_cost_s))
    result = measure_overhead(CellConfig("torch", "cifar100-single", "infer", 4, steps=10, warmup=1), rounds=3)
    assert result["within_tolerance"] is within
    if within:
        assert abs(result["overhead"]) < 0.02
    else:
        assert result["overhead"] > 0.2
    assert result["bare_images_per_s"] == pytest.approx(4 / (0.01 + sync_cost_s / 10), rel=0.2)
