"""The sweep plan and the results file, without running any framework."""

import json
from dataclasses import replace

import pytest

from benchmarks.cell import CellConfig
from benchmarks.matrix import CPU_DEFAULT, QUICK, SweepError, SweepOptions, device_setups, plan
from benchmarks.results import (
    SCHEMA_VERSION,
    ResultRow,
    ResultsFileError,
    append_row,
    check_writable,
    done_keys,
    read_results,
)


def test_default_cpu_plan_covers_every_paper_variant_mode_and_framework():
    cells = plan(SweepOptions())
    assert len(cells) == 4 * 2 * 2 * CPU_DEFAULT.repeats
    assert [c.repeat for c in cells[:16]] == [0] * 16  # repeats outermost: one pass of the sweep, then another
    assert {c.variant for c in cells} == {"imagenet-single", "imagenet-split", "cifar100-single", "cifar100-split"}
    assert {(c.framework, c.split_impl) for c in cells if "split" in c.variant} == {
        ("torch", "grouped"),
        ("keras", "towers"),
    }
    assert {c.batch_size for c in cells} == {32} and {c.gpus for c in cells} == {0}


def test_quick_plan_is_small_and_both_split_impls_can_be_asked_for():
    cells = plan(SweepOptions(quick=True, split_impls=["grouped", "towers"]))
    assert {c.variant for c in cells} == {"cifar100-single", "cifar100-split"}
    split = [c for c in cells if c.variant == "cifar100-split"]
    assert len(split) == 2 * 2 * 2 * QUICK.repeats  # modes x frameworks x formulations x processes
    assert all(c.steps == 5 and c.batch_size == 16 for c in cells)


def test_two_gpus_also_run_one_for_scaling_and_pick_the_parallelism():
    assert device_setups(SweepOptions(gpus=2)) == [(1, 0), (2, 0)]
    cells = plan(SweepOptions(gpus=2, frameworks=["torch"], modes=["train"]))
    two = {c.variant: c.parallel for c in cells if c.devices == 2}
    assert two == {
        "imagenet-single": "data",
        "imagenet-split": "model",
        "cifar100-single": "data",
        "cifar100-split": "model",
    }
    assert {c.batch_size for c in cells} == {128}


def test_simulated_devices_are_labelled():
    cell = plan(SweepOptions(simulate_devices=2, quick=True))[0]
    assert cell.device_setup == "2 simulated (cpu)" and cell.devices == 2


@pytest.mark.parametrize(
    "options,message",
    [
        (SweepOptions(frameworks=["jax"]), "unknown framework 'jax'; valid: torch, keras"),
        (SweepOptions(variants=["vgg16"]), "unknown variant 'vgg16'"),
        (SweepOptions(modes=["eval"]), "unknown mode 'eval'"),
        (SweepOptions(batch_sizes=[0]), "batch size must be at least 1, got 0"),
        (SweepOptions(batch_sizes=[-4]), "got -4"),
        (SweepOptions(gpus=-1), "--gpus must be 0"),
        (SweepOptions(simulate_devices=1), "at least 2 devices"),
        (SweepOptions(simulate_devices=2, gpus=2), "cannot be combined"),
        (SweepOptions(steps=0), "--steps must be at least 1"),
    ],
)
def test_bad_options_are_refused_with_the_reason(options, message):
    with pytest.raises(SweepError, match=message):
        plan(options)


def test_cell_key_is_stable_and_config_round_trips():
    cell = CellConfig("torch", "cifar100-split", "train", 8, "towers")
    again = CellConfig.from_dict(json.loads(cell.to_json()))
    assert again == cell and again.key() == cell.key()
    assert cell.key() != CellConfig("torch", "cifar100-split", "train", 8, "grouped").key()
    with pytest.raises(ValueError, match="unknown cell fields: colour"):
        CellConfig.from_dict({**json.loads(cell.to_json()), "colour": "red"})


def row(key: str, status: str = "ok") -> ResultRow:
    cell = CellConfig("torch", "cifar100-single", "infer", 2)
    result = {"status": status, "metrics": {"images_per_s": 1.0} if status == "ok" else None}
    return replace(ResultRow.from_result(cell, result, {}, "run", 0.0), key=key)


def test_rows_are_appended_durably_and_read_back_with_their_lines(tmp_path):
    path = tmp_path / "r.jsonl"
    failed = row("b", "oom")
    append_row(path, row("a"))
    append_row(path, failed)
    loaded = read_results(path)
    assert [(r.key, r.line) for r in loaded.rows] == [("a", 1), ("b", 2)] and not loaded.warnings
    assert all(r.schema_version == SCHEMA_VERSION for r in loaded.rows)
    assert loaded.rows[1] == failed  # every field survives the round trip
    assert done_keys(loaded.rows) == {"a"}  # failed cells run again on --resume


def test_torn_last_line_is_skipped_with_a_warning_and_not_glued_to(tmp_path):
    path = tmp_path / "r.jsonl"
    append_row(path, row("a"))
    with open(path, "a") as handle:
        handle.write('{"schema_version": 1, "key": "tor')  # a crash mid-write
    loaded = read_results(path)
    assert [r.key for r in loaded.rows] == ["a"]
    assert "last line is incomplete" in loaded.warnings[0]
    append_row(path, row("c"))
    loaded = read_results(path)
    assert [(r.key, r.line) for r in loaded.rows] == [("a", 1), ("c", 3)]
    assert "line 2 is incomplete" in loaded.warnings[0]


@pytest.mark.parametrize(
    "content,message",
    [
        (b"\x00\x01\xffELF binary\nmore\n", "line 1 is not JSON: not a results file"),
        (b"[1, 2]\n", "a row must be a JSON object"),
        (json.dumps({**row("a").to_dict(), "cell": {**row("a").cell, "batch_size": "big"}}).encode(), "batch_size"),
        (json.dumps({**row("a").to_dict(), "metrics": None}).encode(), "must have its figures"),
    ],
)
def test_what_is_not_a_results_file_is_refused_naming_the_line(tmp_path, content, message):
    path = tmp_path / "r.jsonl"
    path.write_bytes(content)
    with pytest.raises(ResultsFileError, match=message):
        read_results(path)


def test_another_schema_version_is_refused(tmp_path):
    path = tmp_path / "old.jsonl"
    path.write_text(json.dumps({**row("a").to_dict(), "schema_version": 0}) + "\n")
    with pytest.raises(ResultsFileError, match="schema version 0; this suite reads and writes version 1"):
        read_results(path)


def test_unwritable_results_paths_are_refused(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(ResultsFileError, match="cannot write results"):
        check_writable(blocker / "results.jsonl")
    with pytest.raises(ResultsFileError, match="is a directory"):
        check_writable(tmp_path)
