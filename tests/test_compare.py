"""Regression checks between two sets of results: threshold, significance, environments, added/removed."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import results_factory as factory
from rich.console import Console

from benchmarks.cell import CellConfig
from reports.compare import compare, judge, parse_threshold

SMALL = {"variants": ("imagenet-single",), "modes": ("train", "infer")}


def _files(tmp_path: Path, base_rows: list[dict], new_rows: list[dict]) -> tuple[Path, Path]:
    return (
        factory.write_rows(tmp_path / "base.jsonl", base_rows),
        factory.write_rows(tmp_path / "new.jsonl", new_rows),
    )


def test_a_20_percent_slowdown_is_a_regression(tmp_path: Path) -> None:
    base, new = _files(tmp_path, factory.sweep(seed=1, **SMALL), factory.sweep(seed=2, slowdown=1.25, **SMALL))
    result = compare([base], [new])
    assert result.has_regressions
    assert list(result.cells["verdict"]) == ["regression"] * 4
    assert result.cells["change"].tolist() == pytest.approx([-0.2] * 4, abs=0.03)
    assert (result.cells["p_value"] < 1e-6).all()
    assert result.warnings == []


def test_two_runs_of_the_same_distribution_show_no_regression(tmp_path: Path) -> None:
    base, new = _files(tmp_path, factory.sweep(seed=1, **SMALL), factory.sweep(seed=2, **SMALL))
    result = compare([base], [new])
    assert not result.has_regressions
    assert set(result.cells["verdict"]) == {"no change"}
    assert (result.cells["change"].abs() < 0.05).all()


def test_the_threshold_decides_a_significant_small_slowdown(tmp_path: Path) -> None:
    quiet = {"steps": 200, "spread": 0.01, **SMALL}
    base, new = _files(tmp_path, factory.sweep(seed=1, **quiet), factory.sweep(seed=2, slowdown=1 / 0.97, **quiet))
    at_5 = compare([base], [new], threshold=0.05)
    assert (at_5.cells["p_value"] < 0.05).all()  # the 3% slowdown is real ...
    assert at_5.cells["change"].tolist() == pytest.approx([-0.03] * 4, abs=0.005)
    assert set(at_5.cells["verdict"]) == {"no change"} and not at_5.has_regressions  # ... but under 5%
    at_2 = compare([base], [new], threshold=0.02)
    assert set(at_2.cells["verdict"]) == {"regression"} and at_2.has_regressions


def test_a_speedup_is_improved_not_a_regression(tmp_path: Path) -> None:
    base, new = _files(tmp_path, factory.sweep(seed=1, **SMALL), factory.sweep(seed=2, slowdown=0.8, **SMALL))
    result = compare([base], [new])
    assert set(result.cells["verdict"]) == {"improved"} and not result.has_regressions


def test_a_large_but_noisy_change_is_not_a_regression() -> None:
    base = {"images_per_s": 100.0, "samples": [1.0, 0.2, 0.5], "status": "ok"}
    new = {"images_per_s": 80.0, "samples": [0.25, 1.1, 0.6], "status": "ok"}
    line = judge(base, new, threshold=0.05, alpha=0.05)
    assert line["change"] == pytest.approx(-0.2) and line["p_value"] > 0.05
    assert line["verdict"] == "no change" and "too few steps" in line["note"]


def test_different_environments_warn(tmp_path: Path) -> None:
    base, new = _files(
        tmp_path,
        factory.sweep(seed=1, host=factory.machine("bench-a"), **SMALL),
        factory.sweep(seed=2, host=factory.machine("bench-b"), **SMALL),
    )
    result = compare([base], [new])
    assert len(result.warnings) == 1
    assert "environments differ" in result.warnings[0] and "bench-a" in result.warnings[0]


def test_cells_on_one_side_only_are_added_or_removed(tmp_path: Path) -> None:
    base_rows = factory.sweep(seed=1, variants=("imagenet-single", "imagenet-split"), modes=("infer",))
    new_rows = factory.sweep(seed=2, variants=("imagenet-single",), modes=("infer", "train"))
    result = compare(*[[p] for p in _files(tmp_path, base_rows, new_rows)])
    assert len(result.cells) == 2
    assert set(result.removed["variant"]) == {"imagenet-split"} and set(result.removed["mode"]) == {"infer"}
    assert set(result.added["mode"]) == {"train"} and len(result.added) == 2
    markdown = result.to_markdown()
    assert "Only in the new results (added)" in markdown and "Only in the base results (removed)" in markdown


def test_a_cell_that_now_fails_is_broken_and_counts_as_a_regression(tmp_path: Path) -> None:
    base_rows = factory.sweep(seed=1, frameworks=("torch",), **SMALL)
    config = CellConfig("torch", "imagenet-single", "train", 32, steps=30)
    new_rows = [factory.failed_row(config, "oom")] + factory.sweep(
        seed=2, frameworks=("torch",), modes=("infer",), variants=("imagenet-single",)
    )
    result = compare(*[[p] for p in _files(tmp_path, base_rows, new_rows)])
    broken = result.regressions
    assert list(broken["verdict"]) == ["broken"] and broken.iloc[0]["mode"] == "train"
    assert "new oom" in broken.iloc[0]["note"]
    assert result.has_regressions


def test_markdown_and_terminal_renderings_name_the_regressions(tmp_path: Path) -> None:
    base, new = _files(tmp_path, factory.sweep(seed=1, **SMALL), factory.sweep(seed=2, slowdown=1.25, **SMALL))
    result = compare([base], [new])
    markdown = result.to_markdown()
    assert "| torch | imagenet-single | grouped | fp32 | train | 32 | cpu |" in markdown
    assert markdown.count("| regression |") == 4 and "-20." in markdown
    assert "two-sided Mann-Whitney U" in markdown
    console = Console(file=io.StringIO(), width=220)
    result.render(console)
    text = console.file.getvalue()
    assert text.count("regression") >= 4 and "4 regression" in text


def test_a_threshold_outside_zero_to_one_is_refused(tmp_path: Path) -> None:
    base, new = _files(tmp_path, factory.sweep(seed=1, **SMALL), factory.sweep(seed=2, **SMALL))
    with pytest.raises(ValueError, match="threshold"):
        compare([base], [new], threshold=5)


def test_parse_threshold() -> None:
    assert parse_threshold("5%") == pytest.approx(0.05)
    assert parse_threshold("0.05") == pytest.approx(0.05)
    assert parse_threshold(" 2.5% ") == pytest.approx(0.025)
    for wrong in ("5", "abc", "150%", "-1%"):
        with pytest.raises(ValueError, match="threshold"):
            parse_threshold(wrong)
