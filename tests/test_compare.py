"""Regression checks between two sets of results: process-level tests, detectable change, verdicts."""

from __future__ import annotations

import io
import math
from pathlib import Path

import pytest
import results_factory as factory
from rich.console import Console
from scipy.stats import mannwhitneyu
from typer.testing import CliRunner

import bench
from benchmarks.cell import CellConfig
from benchmarks.matrix import CPU_DEFAULT, QUICK
from reports.compare import compare, judge, parse_threshold
from reports.compare_report import headline, render, to_markdown
from reports.load import load_results

SMALL = {"variants": ("imagenet-single",), "modes": ("train", "infer")}
DEFAULT_REPEATS = CPU_DEFAULT.repeats
# A machine like the one the suite runs on: steps vary 3% within a process, processes 3% between them.
NOISY = {"repeats": DEFAULT_REPEATS, "spread": 0.03, "process_spread": 0.03, **SMALL}


def _files(tmp_path: Path, base_rows: list[dict], new_rows: list[dict]) -> tuple[Path, Path]:
    return (
        factory.write_rows(tmp_path / "base.jsonl", base_rows),
        factory.write_rows(tmp_path / "new.jsonl", new_rows),
    )


def _folder(parent: Path, name: str) -> Path:
    (parent / name).mkdir()
    return parent / name


def test_the_default_preset_runs_enough_processes_for_compare_and_quick_one_per_cell() -> None:
    # --quick is a first look, one process per cell (issue 24): bench.py ab judges changes, pair by pair.
    assert CPU_DEFAULT.repeats >= 3 and QUICK.repeats == 1


def keras_train(cell: CellConfig) -> bool:
    return cell.framework == "keras" and cell.mode == "train"


def test_a_20_percent_slowdown_is_a_regression_at_the_default_settings(tmp_path: Path) -> None:
    slowed = factory.sweep(seed=2, slowdown=1.25, slowed=keras_train, **NOISY)
    base, new = _files(tmp_path, factory.sweep(seed=1, **NOISY), slowed)
    result = compare([base], [new])
    assert result.has_regressions
    (regression,) = result.regressions.itertuples()
    assert (regression.framework, regression.mode, regression.verdict) == ("keras", "train", "regression")
    assert regression.change == pytest.approx(-0.2, abs=0.05) and regression.p_value < 0.05
    assert (result.cells["base_processes"] == DEFAULT_REPEATS).all()
    assert abs(result.shift) < 0.05 and result.warnings == []


def test_a_whole_run_that_drifts_like_a_shared_machine_is_not_a_regression(tmp_path: Path) -> None:
    """Every cell 15% slower between two invocations of one build: the machine, not four regressions."""
    base, new = _files(tmp_path, factory.sweep(seed=1, **NOISY), factory.sweep(seed=2, slowdown=1 / 0.85, **NOISY))
    result = compare([base], [new])
    assert not result.has_regressions, result.cells[["change", "vs_run", "p_value", "verdict"]]
    assert result.shift == pytest.approx(-0.15, abs=0.03)
    assert (result.cells["vs_run"].abs() < 0.1).all()  # what is left is the processes' own noise
    assert "within the 25% a run of one build drifts" in headline(result)
    pooled = compare([base], [new], drift=0.0)  # a dedicated machine, whose runs do not drift
    assert set(pooled.cells["verdict"]) == {"regression (whole run)"}


def test_a_whole_run_twice_as_slow_is_a_regression_of_every_cell(tmp_path: Path) -> None:
    """Like the same sweep pinned to one core of two: beyond any drift between invocations."""
    base, new = _files(tmp_path, factory.sweep(seed=1, **NOISY), factory.sweep(seed=2, slowdown=2.0, **NOISY))
    result = compare([base], [new])
    assert result.has_regressions and set(result.cells["verdict"]) == {"regression (whole run)"}
    assert result.shift == pytest.approx(-0.5, abs=0.03) and "beyond the 25%" in headline(result)


def test_with_few_cells_only_a_change_beyond_the_drift_counts(tmp_path: Path) -> None:
    two = {**NOISY, "frameworks": ("keras",)}
    base, new = _files(tmp_path, factory.sweep(seed=1, **two), factory.sweep(seed=2, slowdown=1.25, **two))
    result = compare([base], [new])
    assert math.isnan(result.shift) and not result.has_regressions
    assert result.cells["verdict"].str.startswith("inconclusive: within the 25% drift").all()
    assert "Fewer than 4 cells" in headline(result)
    assert set(compare([base], [new], drift=0.1).cells["verdict"]) == {"regression"}


def test_a_and_a_with_between_process_noise_is_never_a_regression(tmp_path: Path) -> None:
    """Pooled steps call these pairs different (processes differ by ~5%); per-process medians do not."""
    noisy = {**NOISY, "process_spread": 0.05}
    pooled_false_alarms = 0
    for seed in range(5):
        folder = tmp_path / str(seed)
        folder.mkdir()
        base, new = _files(folder, factory.sweep(seed=10 + seed, **noisy), factory.sweep(seed=20 + seed, **noisy))
        result = compare([base], [new])
        assert not result.has_regressions, result.cells[["change", "p_value", "verdict"]]
        assert "no change" not in set(result.cells["verdict"])  # detectable > 5%: inconclusive, not "no change"
        assert result.cells["verdict"].str.startswith("inconclusive: need about").all()
        frames = load_results([base]).frame, load_results([new]).frame
        for (_, a), (_, b) in zip(frames[0].groupby("mode"), frames[1].groupby("mode"), strict=True):
            pooled_a, pooled_b = sum(a["step_times_s"], []), sum(b["step_times_s"], [])
            pooled_false_alarms += mannwhitneyu(pooled_a, pooled_b).pvalue < 0.05
    assert pooled_false_alarms >= 3  # the old test on pooled steps would have fired on this noise


def test_detectable_change_is_stated_and_shrinks_with_more_repeats(tmp_path: Path) -> None:
    few = compare(*[[p] for p in _files(tmp_path, factory.sweep(seed=1, **NOISY), factory.sweep(seed=2, **NOISY))])
    assert (few.cells["detectable"] > 0.05).all()
    # Each cell's estimate of the spread rests on its few processes: take the most cautious.
    needed = max(int(verdict.split("about ")[1].split()[0]) for verdict in few.cells["verdict"])
    assert DEFAULT_REPEATS < needed < 100
    many = {**NOISY, "repeats": needed}
    folder = tmp_path / "many"
    folder.mkdir()
    more = compare(*[[p] for p in _files(folder, factory.sweep(seed=3, **many), factory.sweep(seed=4, **many))])
    assert more.cells["detectable"].max() < few.cells["detectable"].median()
    assert more.cells["detectable"].median() < 0.05 * 1.3  # about the threshold, as promised
    assert "no change" in set(more.cells["verdict"]) and not more.has_regressions


def test_one_process_per_side_is_inconclusive_even_for_a_large_change(tmp_path: Path) -> None:
    single = {"repeats": 1, **SMALL}
    base, new = _files(tmp_path, factory.sweep(seed=1, **single), factory.sweep(seed=2, slowdown=1.25, **single))
    result = compare([base], [new])
    assert not result.has_regressions
    assert set(result.cells["verdict"]) == {"inconclusive: need at least 3 repeats"}
    assert result.cells["note"].str.contains("not independent").all()


def test_the_threshold_decides_a_significant_small_slowdown(tmp_path: Path) -> None:
    quiet = {"steps": 60, "spread": 0.01, "process_spread": 0.003, "repeats": 6, **SMALL}
    slowed = factory.sweep(seed=2, slowdown=1 / 0.97, slowed=keras_train, **quiet)
    base, new = _files(tmp_path, factory.sweep(seed=1, **quiet), slowed)
    at_5 = compare([base], [new], threshold=0.05)
    (line,) = at_5.cells[at_5.cells["mode"].eq("train") & at_5.cells["framework"].eq("keras")].itertuples()
    assert line.p_value < 0.05 and line.change == pytest.approx(-0.03, abs=0.006)  # the 3% slowdown is real ...
    assert (at_5.cells["detectable"] < 0.05).all()
    assert set(at_5.cells["verdict"]) == {"no change"} and not at_5.has_regressions  # ... but under 5%
    at_2 = compare([base], [new], threshold=0.02)
    assert list(at_2.regressions["framework"]) == ["keras"] and at_2.has_regressions
    uniform = factory.sweep(seed=2, slowdown=1 / 0.97, **quiet)  # every cell alike: a change of the whole run
    whole = compare(
        *[[p] for p in _files(_folder(tmp_path, "u"), factory.sweep(seed=1, **quiet), uniform)], 0.02, drift=0.0
    )
    assert set(whole.cells["verdict"]) == {"regression (whole run)"}


def test_a_speedup_is_improved_not_a_regression(tmp_path: Path) -> None:
    faster = factory.sweep(seed=2, slowdown=0.8, slowed=keras_train, **NOISY)
    result = compare(*[[p] for p in _files(tmp_path, factory.sweep(seed=1, **NOISY), faster)])
    assert list(result.cells["verdict"]).count("improved") == 1 and not result.has_regressions


def test_a_cell_slower_than_its_base_but_faster_than_its_run_is_not_a_regression() -> None:
    """The whole run lost 30%, this cell only 10%: against the run it gained, so neither verdict is claimed."""
    base = {"images_per_s": 100.0, "batch_size": 32, "samples": [0.32], "status": "ok"}
    new = {"images_per_s": 90.0, "batch_size": 32, "samples": [0.355], "status": "ok"}
    processes = [[0.320, 0.321], [0.319, 0.320], [0.321, 0.322]]
    slower = [[t / 0.9 for t in p] for p in processes]
    line = judge(base, new, 0.05, 0.05, processes, slower, cells=8, shift=-0.3)
    assert line["change"] == pytest.approx(-0.1, abs=0.01) and line["vs_run"] == pytest.approx(0.286, abs=0.01)
    assert line["p_value"] < 0.05 and line["verdict"] == "inconclusive: -10% against base, +29% against the run"


def test_judge_of_a_large_but_noisy_change_is_not_a_regression() -> None:
    base = {"images_per_s": 100.0, "batch_size": 32, "samples": [1.0, 0.2, 0.5], "status": "ok"}
    new = {"images_per_s": 80.0, "batch_size": 32, "samples": [0.25, 1.1, 0.6], "status": "ok"}
    processes = [[0.30, 0.32], [0.45, 0.41], [0.36, 0.38]]
    line = judge(base, new, 0.05, 0.05, processes, [[t * 1.25 for t in p] for p in processes[::-1]])
    assert line["change"] == pytest.approx(-0.2) and line["p_value"] > 0.05
    assert line["verdict"].startswith("inconclusive: need about") and line["detectable"] > 0.2


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
    markdown = to_markdown(result)
    assert "Only in the new results (added)" in markdown and "Only in the base results (removed)" in markdown


def test_no_common_cell_says_there_is_nothing_to_compare_and_lists_both_sides(tmp_path: Path) -> None:
    base_rows = factory.sweep(seed=1, frameworks=("torch",), variants=("imagenet-single",), modes=("infer",))
    new_rows = factory.sweep(seed=2, frameworks=("keras",), variants=("imagenet-split",), modes=("train",))
    base, new = _files(tmp_path, base_rows, new_rows)
    result = compare([base], [new])
    assert result.nothing_to_compare and not result.has_regressions
    console = Console(file=io.StringIO(), width=220)
    render(result, console)
    text = console.file.getvalue()
    assert "Nothing to compare" in text
    assert "base has 1 cells:" in text and "torch imagenet-single" in text
    assert "new has 1 cells:" in text and "keras imagenet-split" in text
    assert "Nothing to compare" in to_markdown(result)
    cli = CliRunner().invoke(bench.app, ["compare", str(base), str(new)])
    assert cli.exit_code == 2 and "nothing to compare" in cli.output and "Traceback" not in cli.output


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


MEASURED = {"images_per_s": 100.0, "batch_size": 32, "samples": [0.32], "status": "ok"}
UNMEASURED = {**MEASURED, "images_per_s": math.nan, "samples": []}  # status ok, every time zero (read as missing)
FAILED = {**UNMEASURED, "status": "oom"}


@pytest.mark.parametrize(
    "base,new,verdict,note",
    [
        (UNMEASURED, UNMEASURED, "not measured", "ok in both, without a measured time"),
        (MEASURED, UNMEASURED, "not measured", "base ok, new ok without a measured time"),
        (UNMEASURED, MEASURED, "not measured", "base ok without a measured time, new ok"),
        (FAILED, UNMEASURED, "not measured", "base oom, new ok without a measured time"),
        (UNMEASURED, FAILED, "broken", "base ok without a measured time, new oom"),
        (MEASURED, FAILED, "broken", "base ok, new oom"),
        (FAILED, MEASURED, "fixed", "base oom, new ok"),
        (FAILED, FAILED, "failed in both", "base oom, new oom"),
    ],
)
def test_a_side_without_a_figure_failed_only_when_its_status_says_so(base, new, verdict, note) -> None:
    """An ok row with no time above zero was not measured: not "failed", and not a regression of the other side."""
    line = judge(base, new, 0.05, 0.05)
    assert (line["verdict"], line["note"]) == (verdict, note)
    assert line["outcome"].outcome.regressed == (verdict == "broken")


def test_markdown_and_terminal_renderings_name_the_regressions(tmp_path: Path) -> None:
    slowed = factory.sweep(seed=2, slowdown=1.25, slowed=lambda cell: cell.mode == "train", **NOISY)
    result = compare(*[[p] for p in _files(tmp_path, factory.sweep(seed=1, **NOISY), slowed)])
    markdown = to_markdown(result)
    assert "| torch | imagenet-single | grouped | fp32 | train | 32 | cpu |" in markdown
    assert markdown.count("| regression |") == 2
    assert all(f"| {change:+.1%} |" in markdown for change in result.cells["change"])
    assert "t-test of the log per-process medians" in markdown and "vs run" in markdown
    console = Console(file=io.StringIO(), width=260)
    render(result, console)
    text = console.file.getvalue()
    assert text.count("regression") >= 2 and "2 regression" in text


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
