"""The --best table and the device ceiling, on crafted results files (no framework runs)."""

from dataclasses import replace

import numpy as np
import pytest

from benchmarks.cell import CellConfig
from reports.best import best_frame, best_table
from reports.build import write_report
from reports.load import load_results
from tests.results_factory import failed_row, machine, ok_row, step_times, write_rows

GFLOP = 1e9


def _row(config: CellConfig, rate: float, ceiling_gflops: float, host: dict | None = None, seed: int = 0) -> dict:
    times = step_times(np.random.default_rng(seed), config.batch_size / rate, 20, spread=0.01)
    return ok_row(config, times, host, ceiling_flops_per_s=ceiling_gflops * GFLOP)


@pytest.fixture
def best_rows(tmp_path):
    base = CellConfig("torch", "cifar100-split", "train", 16, "grouped")
    keras = CellConfig("keras", "cifar100-split", "train", 16, "towers")
    rows = [
        _row(replace(base, split_impl="towers"), 22.0, 100.0, seed=1),  # not the baseline, though first
        _row(base, 20.0, 100.0),
        _row(replace(base, compiled=True), 30.0, 100.0, seed=2),
        _row(keras, 25.0, 200.0, seed=3),  # TensorFlow's matmul is faster on this device
        _row(replace(keras, compiled=True), 20.0, 200.0, seed=4),
        failed_row(CellConfig("torch", "cifar100-single", "train", 16), status="oom"),
    ]
    return load_results([write_rows(tmp_path / "best.jsonl", rows)]).frame


def test_the_winner_is_the_fastest_and_each_ratio_is_to_the_baseline(best_rows):
    best = best_frame(best_rows).query("variant == 'cifar100-split'").set_index("framework")
    assert best.loc["torch", "winner"] == "grouped+compiled"
    assert best.loc["torch", "vs_baseline"] == pytest.approx(1.5, rel=0.02)
    assert "towers+fp32 1.10x" in best.loc["torch", "others"]
    assert best.loc["keras", "winner"] == "towers+fp32"
    assert best.loc["keras", "vs_baseline"] == pytest.approx(1.0)
    assert "towers+compiled 0.80x" in best.loc["keras", "others"]
    nothing = best_frame(best_rows).query("variant == 'cifar100-single'").iloc[0]
    assert nothing["winner"] == "none finished" and "fp32 oom" in nothing["others"]


def test_the_ceiling_is_the_best_either_framework_measured_on_the_device(best_rows):
    best = best_frame(best_rows).query("variant == 'cifar100-split'").set_index("framework")
    assert best["device_ceiling_gflops"].tolist() == pytest.approx([200.0, 200.0])
    flops_per_image = best_rows["flops_per_image"].iloc[0]
    expected = 30.0 * flops_per_image / GFLOP / 200.0  # torch is held to TensorFlow's matmul, not its own
    assert best.loc["torch", "fraction_of_ceiling"] == pytest.approx(expected, rel=0.02)


def test_ceilings_are_not_shared_across_machines_precisions_or_device_kinds(tmp_path):
    cpu = CellConfig("torch", "cifar100-single", "train", 16)
    rows = [
        _row(cpu, 20.0, 100.0),
        _row(CellConfig("keras", "cifar100-single", "train", 16), 20.0, 300.0, host=machine("bench-b")),
        _row(replace(cpu, precision="bf16"), 20.0, 400.0),
        _row(replace(cpu, gpus=1), 2000.0, 50_000.0),
    ]
    frame = load_results([write_rows(tmp_path / "mixed.jsonl", rows)]).frame
    from reports.ceilings import device_ceiling

    assert device_ceiling(frame).tolist() == pytest.approx([100.0, 300.0, 400.0, 50_000.0])


def test_the_report_has_the_fast_path_table_only_when_there_were_alternatives(best_rows, tmp_path):
    assert best_table(best_rows) is not None
    single = best_rows[best_rows["fast_path"] == "fp32"]
    single = single[single["split_impl"] == single["framework"].map({"torch": "grouped", "keras": "towers"})]
    assert best_table(single) is None
    files = write_report([tmp_path / "best.jsonl"], tmp_path / "report")
    markdown = files.markdown.read_text()
    fast = markdown[markdown.index("## Fast paths") :]
    assert "| torch | cifar100-split | train | 16 | cpu | grouped+compiled |" in fast
    assert "of device ceiling" in markdown
