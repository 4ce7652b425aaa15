"""Every bad input a new or hostile user tried, through the command line: one line, exit 2, no traceback.

Each case must be refused before any worker starts (so each takes about a second), and must leave
every file it was given byte for byte as it was. ``{tmp}`` in an argument is the case's folder,
filled by :func:`workspace` with a valid results file, a FIFO, garbage and broken inputs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from benchmarks.cell import CellConfig
from benchmarks.matrix import SweepOptions, model_parallel_note, plan
from tests.results_factory import ok_row

ROOT = Path(__file__).resolve().parent.parent
RUN = ("run", "-f", "torch", "-v", "cifar100-single", "-m", "infer", "--repeats", "1", "--no-report")
OK = "{tmp}/rows.jsonl"  # a valid results file with one row
LONG = "x" * 300  # a long name: the error line must not be wrapped when stderr is piped


def workspace(folder: Path) -> None:
    """The files the cases point at."""
    row = ok_row(CellConfig("torch", "cifar100-single", "infer", 2), [0.1, 0.11, 0.1])
    (folder / "rows.jsonl").write_text(json.dumps(row) + "\n")
    (folder / "results.csv").write_text(json.dumps(row) + "\n")  # a results file named as a report output
    other = ok_row(CellConfig("keras", "cifar100-split", "train", 4, split_impl="towers"), [0.2, 0.2, 0.21])
    (folder / "other.jsonl").write_text(json.dumps(other) + "\n")
    marked = ok_row(CellConfig("keras", "cifar100-split", "train", 4), [0.2, 0.2, 0.21])
    marked["cell"]["variant"] = "[/]"
    (folder / "markup.jsonl").write_text(json.dumps(marked) + "\n")
    wrong_type = json.loads(json.dumps(row))
    wrong_type["cell"]["batch_size"] = "big"
    (folder / "wrong_type.jsonl").write_text(json.dumps(wrong_type) + "\n")
    (folder / "not_objects.json").write_text(json.dumps({"benchmarks": [1]}))
    (folder / "no_stats.json").write_text(json.dumps({"benchmarks": [{"name": "x"}]}))
    stats = {"median": 0.1, "q1": 0.09, "q3": 0.11, "iqr": 0.02, "rounds": 3, "data": [0.1, 0.09, 0.11]}
    info = {"framework": "keras-jax", "variant": "cifar100-single", "mode": "infer"}  # and no batch size
    (folder / "no_batch.json").write_text(
        json.dumps({"benchmarks": [{"name": "s", "stats": stats, "extra_info": info}]})
    )
    (folder / "schema99.jsonl").write_text(json.dumps({**row, "schema_version": 99}) + "\n")
    # readable files naming what this suite does not know: a benchmark's group as its variant, a retired variant, a
    # plugin framework no longer installed; and rows that ran (status ok) with no time above zero
    grouped = {
        "name": "s",
        "group": "g",
        "stats": stats,
        "extra_info": {"framework": "torch", "mode": "infer", "batch_size": 2},
    }
    (folder / "group_variant.json").write_text(json.dumps({"benchmarks": [grouped]}))
    retired = {**json.loads(json.dumps(row)), "key": "retired"}
    retired["cell"]["variant"] = "retired-split"
    (folder / "retired_variant.jsonl").write_text(json.dumps(retired) + "\n")
    plugin = {**json.loads(json.dumps(row)), "key": "plugin"}
    plugin["cell"]["framework"] = "gone-plugin"
    (folder / "gone_framework.jsonl").write_text(json.dumps(plugin) + "\n")
    done = SweepOptions(frameworks=["torch"], variants=["cifar100-single"], modes=["infer"], batch_sizes=[2], gpus=0)
    done_row = ok_row(plan(replace(done, repeats=1))[0], [0.1, 0.11, 0.1])
    (folder / "resume.jsonl").write_text("".join(json.dumps(r) + "\n" for r in (done_row, retired, plugin)))
    zero = json.loads(json.dumps(row))
    zero["metrics"].update(step_times_s=[0.0] * 3, median_step_s=0.0, images_per_s=0.0, achieved_flops_per_s=0.0)
    (folder / "zero_times.jsonl").write_text(json.dumps(zero) + "\n")
    (folder / "garbage.bin").write_bytes(bytes(range(256)) * 64)
    (folder / "text.txt").write_text("hello\nworld\n")
    (folder / "empty_dir").mkdir()
    os.mkfifo(folder / "fifo")


CASES = {
    # results paths that are not regular files: /dev/full and /dev/zero used to be read without end
    "results /dev/full": ([*RUN, "--results", "/dev/full"], "not a regular file"),
    "results /dev/zero": ([*RUN, "--results", "/dev/zero"], "not a regular file"),
    "results /dev/null": ([*RUN, "--results", "/dev/null"], "not a regular file"),
    "results fifo": ([*RUN, "--results", "{tmp}/fifo"], "not a regular file"),
    "results directory": ([*RUN, "--results", "{tmp}/empty_dir"], "is a directory"),
    "report /dev/zero": (["report", "/dev/zero", "--out", "{tmp}/out"], "/dev/zero is not a regular file (a device"),
    "compare fifo": (["compare", OK, "{tmp}/fifo"], "{tmp}/fifo is not a regular file"),
    "report a directory": (["report", "{tmp}/empty_dir", "--out", "{tmp}/out"], "empty_dir is a directory, not a"),
    "results under a file": ([*RUN, "--results", "{tmp}/text.txt/x"], "{tmp}/text.txt is a file, not a folder"),
    # a name longer than the file system allows (255 bytes)
    "compare a 300-character name": (["compare", OK, f"{{tmp}}/{LONG}"], "characters): File name too long"),
    "report a 300-character name": (["report", LONG, "--out", "{tmp}/out"], "(300 characters): File name too long"),
    "check-model a 300-character name": (["check-model", f"{LONG}.py:build"], "File name too long"),
    "check-model a directory": (["check-model", "{tmp}/empty_dir:build"], "empty_dir is a directory; name the Python"),
    "ab with an unknown primitive cache": (
        ["ab", "--base-tree", ".", "--primitive-cache", "off", "--results", "{tmp}/ab.jsonl"],
        "unknown primitive cache 'off'; valid: fresh, kept",
    ),
    # garbage given as results: refused, nothing appended
    "run on binary results": ([*RUN, "--results", "{tmp}/garbage.bin"], "not a results file"),
    "run on text results": ([*RUN, "--results", "{tmp}/text.txt"], "not a results file"),
    "report on binary": (["report", "{tmp}/garbage.bin", "--out", "{tmp}/out"], "not a results file"),
    "compare with binary": (["compare", OK, "{tmp}/garbage.bin"], "not a results file"),
    # a row of this schema with a wrong field type
    "report wrong field type": (["report", "{tmp}/wrong_type.jsonl", "--out", "{tmp}/out"], "batch_size must be int"),
    "compare wrong field type": (["compare", OK, "{tmp}/wrong_type.jsonl"], "batch_size must be int"),
    "run wrong field type": ([*RUN, "--results", "{tmp}/wrong_type.jsonl"], "line 1: cell.batch_size"),
    # malformed pytest-benchmark JSON
    "report benchmarks [1]": (["report", "{tmp}/not_objects.json", "--out", "{tmp}/out"], "not pytest-benchmark"),
    "compare benchmarks [1]": (["compare", "{tmp}/not_objects.json", OK], "not pytest-benchmark"),
    "report benchmark without stats": (["report", "{tmp}/no_stats.json", "--out", "{tmp}/out"], "no stats.median"),
    "report benchmark without batch size": (["report", "{tmp}/no_batch.json", "--out", "{tmp}/out"], "no batch size"),
    "compare benchmark without batch size": (["compare", "{tmp}/no_batch.json", OK], "no batch size"),
    # another version's rows: compare says what fixes it (not --results, which it does not have)
    "compare another schema": (["compare", OK, "{tmp}/schema99.jsonl"], "read it with the version of the suite that"),
    "run on another schema": ([*RUN, "--results", "{tmp}/schema99.jsonl"], "write to another file with --results"),
    # impossible numbers
    "cell-timeout inf": ([*RUN, "--results", OK, "--cell-timeout", "inf"], "positive number of seconds"),
    "cell-timeout nan": ([*RUN, "--results", OK, "--cell-timeout", "nan"], "positive number of seconds"),
    "cell-timeout 0": ([*RUN, "--results", OK, "--cell-timeout", "0"], "positive number of seconds"),
    "cell-timeout -5": ([*RUN, "--results", OK, "--cell-timeout", "-5"], "positive number of seconds"),
    "train timeout nan": (["train", "--results", OK, "--timeout", "nan"], "positive number of seconds"),
    "memory-limit inf": ([*RUN, "--results", OK, "--memory-limit-gb", "inf"], "at least 0.5"),
    "memory-limit 0": ([*RUN, "--results", OK, "--memory-limit-gb", "0"], "at least 0.5"),
    "memory-limit negative": ([*RUN, "--results", OK, "--memory-limit-gb", "-1"], "at least 0.5"),
    "memory-limit tiny": ([*RUN, "--results", OK, "--memory-limit-gb", "0.01"], "at least 0.5"),
    # nan and inf parse as floats and pass range checks: every float option refuses them before anything runs
    "time-budget nan": ([*RUN, "--results", OK, "--time-budget", "nan"], "must be a finite number, got nan"),
    "time-budget inf": ([*RUN, "--results", OK, "--time-budget", "inf"], "must be a finite number, got inf"),
    "target-precision nan": ([*RUN, "--results", OK, "--target-precision", "nan"], "must be a finite number"),
    "selfcheck time-budget inf": (["selfcheck", "--time-budget", "inf"], "must be a finite number, got inf"),
    "train learning-rate inf": (["train", "--results", OK, "--learning-rate", "inf"], "must be a finite number"),
    "train warmup inf": (["train", "--results", OK, "--warmup-epochs", "inf"], "must be a finite number"),
    "train target-top1 nan": (["train", "--results", OK, "--target-top1", "nan"], "Invalid value for '--target-top1'"),
    "check-model rtol nan": (["check-model", "x.py:build", "--rtol", "nan"], "must be a finite number"),
    "parity rtol nan": (["parity", "--rtol", "nan"], "must be a finite number, got nan"),
    "compare threshold nan": (["compare", OK, OK, "--threshold", "nan"], "is not a finite number"),
    "compare threshold negative": (["compare", OK, OK, "--threshold", "-5%"], "'-5%' is negative"),
    # device setups the plan cannot run: the split needs exactly one device per tower
    "simulate 3 devices, split": (
        ["run", "-f", "torch", "-v", "cifar100-split", "--simulate-devices", "3", "--results", OK, "--no-report"],
        "2 towers",
    ),
    "simulate 1 device": ([*RUN, "--simulate-devices", "1", "--results", OK], "at least 2 devices"),
    "gpus on a CPU host": ([*RUN, "--gpus", "3", "--results", OK], "asked for 3 GPUs but found 0"),
    # training mistakes found before any worker
    "train the tutorial on digits": (
        ["train", "-f", "torch", "-v", "tutorial", "--dataset", "digits", "--results", OK],
        "takes 224x224 images",
    ),
    "train without the CIFAR archive": (
        ["train", "-f", "torch", "--dataset", "cifar100", "--data-dir", "{tmp}/empty_dir", "--results", OK],
        "CIFAR-100 not found in {tmp}/empty_dir",
    ),
    "train data-dir is a file": (
        ["train", "-f", "torch", "--dataset", "cifar100", "--data-dir", "{tmp}/text.txt", "--results", OK],
        "is not a folder",
    ),
    # an unwritable report folder, found before the sweep
    "run report under a file": (
        [*RUN[:-1], "--results", OK, "--report", "{tmp}/text.txt/report"],
        "cannot write the report to {tmp}/text.txt/report: {tmp}/text.txt is a file, not a folder",
    ),
    # nothing the user owns is written over, and a refused run leaves no file behind
    "report over its input": (["report", "{tmp}/results.csv", "--out", "{tmp}"], "would write {tmp}/results.csv over"),
    "run report over its input": (
        [*RUN[:-1], "--results", "{tmp}/results.csv", "--report", "{tmp}"],
        "would write {tmp}/results.csv over its input",
    ),
    "run new results, report under a file": (
        [*RUN[:-1], "--results", "{tmp}/new.jsonl", "--report", "{tmp}/text.txt/report"],
        "cannot write the report",
    ),
    # rich markup in user text: escaped, named exactly
    "markup variant [/]": (["run", "-v", "[/]", "--results", OK], "unknown variant '[/]'"),
    "markup variant [bold]x": (["run", "-v", "[bold]x", "--results", OK], "unknown variant '[bold]x'"),
    "markup in a missing report file": (["report", "{tmp}/[bold]gone.jsonl"], "no results file at {tmp}/[bold]gone"),
    # compare with no cell in common is a normal case: say so
    "compare without common cell": (["compare", OK, "{tmp}/other.jsonl"], "nothing to compare"),
    # typer's usage errors: one line, not a box
    "steps not a number": ([*RUN, "--steps", "many", "--results", OK], "Invalid value for '--steps'"),
    "unknown option": ([*RUN, "--turbo", "--results", OK], "No such option: --turbo"),
    "missing compare argument": (["compare", OK], "Missing argument"),
    "compare drift beyond 1": (["compare", OK, OK, "--drift", "150%"], "drift '150%' must be a fraction below 1"),
    "compare drift not a number": (["compare", OK, OK, "--drift", "lots"], "drift 'lots' is not a number"),
    "parity of one framework": (
        ["train", "--check-parity", "-f", "torch", "--dataset", "digits"],
        "--check-parity trains torch and keras side by side",
    ),
    "unknown command": (["benchmark"], "No such command"),
    # a long name must stay on one line when stderr is a pipe, and is shown by its start, its end and its length
    "long variant name": (["run", "-v", LONG, "--results", OK], f"unknown variant '{LONG[:60]}…{LONG[:20]} (300 "),
    "100 KB variant name": (
        ["run", "-v", "v" * 100_000, "--results", OK],
        "…vvvvvvvvvvvvvvvvvvvv (100,000 characters)'",
    ),
}


# Readable files with something this suite does not know in them: the command does its work (exit code as given),
# says what is unusual in at most one warning line per file read, and writes nothing but its output folder ``out``.
# (args, exit code, the stderr lines, in order, by a part of each; a part of standard output)
UNKNOWN_VARIANT = "is not one this suite knows (valid variants: imagenet-single"
RESUME = ("run", "-f", "torch", "-v", "cifar100-single", "-m", "infer", "-b", "2", "--gpus", "0", "--repeats", "1")
READABLE = {
    "report, benchmark named by its group": (
        ["report", "{tmp}/group_variant.json", "--out", "{tmp}/out"],
        0,
        [
            f"{{tmp}}/group_variant.json benchmark 1 ('s', no extra_info['variant'], named by its group): variant 'g' "
            f"{UNKNOWN_VARIANT}"
        ],
        "report: {tmp}/out/report.md",
    ),
    "compare, benchmark named by its group": (
        ["compare", "{tmp}/group_variant.json", "{tmp}/group_variant.json", "--markdown"],
        0,
        ["warning: base: {tmp}/group_variant.json benchmark 1", "warning: new: {tmp}/group_variant.json benchmark 1"],
        "| torch | g | grouped |",
    ),
    "report, retired variant": (
        ["report", "{tmp}/retired_variant.jsonl", "--out", "{tmp}/out"],
        0,
        [f"warning: {{tmp}}/retired_variant.jsonl line 1: variant 'retired-split' {UNKNOWN_VARIANT}"],
        "report: {tmp}/out/report.md",
    ),
    "compare, retired variant": (
        ["compare", "{tmp}/retired_variant.jsonl", "{tmp}/retired_variant.jsonl", "--markdown"],
        0,
        ["warning: base: {tmp}/retired_variant.jsonl line 1", "warning: new: {tmp}/retired_variant.jsonl line 1"],
        "| torch | retired-split |",
    ),
    "report, framework not installed": (
        ["report", "{tmp}/gone_framework.jsonl", "--out", "{tmp}/out"],
        0,
        [],
        "report: {tmp}/out/report.md",
    ),
    "compare, framework not installed": (
        ["compare", "{tmp}/gone_framework.jsonl", "{tmp}/gone_framework.jsonl", "--markdown"],
        0,
        [],
        "| gone-plugin | cifar100-single |",
    ),
    "run --resume beside a retired variant and a framework not installed": (
        [*RESUME, "--results", "{tmp}/resume.jsonl", "--resume", "--report", "{tmp}/out"],
        0,
        [f"warning: {{tmp}}/resume.jsonl line 2: variant 'retired-split' {UNKNOWN_VARIANT}"],
        "resuming: 1 of 1 cells already done",
    ),
    # rich markup in a row's variant: escaped, named exactly, in the warning and in the error
    "markup in a compared row": (
        ["compare", OK, "{tmp}/markup.jsonl"],
        2,
        [f"warning: new: {{tmp}}/markup.jsonl line 1: variant '[/]' {UNKNOWN_VARIANT}", "error: nothing to compare"],
        "keras [/]",
    ),
    # zero times are not measurements: such a cell was not measured, and it did not fail
    "compare rows with zero times": (
        ["compare", "{tmp}/zero_times.jsonl", "{tmp}/zero_times.jsonl", "--markdown"],
        0,
        [],
        "| not measured | ok in both, without a measured time",
    ),
}


@pytest.fixture
def bench(monkeypatch, capsys):
    """``bench(folder, args)``: ``bench.py`` with ``args`` (``{tmp}`` is ``folder``), run in ``folder``, in this
    process through ``bench.main`` (the refusals start no worker, so a fresh interpreter would add only its start-up;
    tests/test_cli.py keeps real-process cases)."""
    import signal

    import bench as entry

    def run(folder: Path, args: list[str]) -> subprocess.CompletedProcess:
        argv = [arg.replace("{tmp}", str(folder)) for arg in args]
        monkeypatch.chdir(folder)  # relative paths in the messages are the user's, not the project's
        capsys.readouterr()
        handler = signal.getsignal(signal.SIGTERM)
        try:
            with pytest.raises(SystemExit) as exit_:
                entry.main(argv)
        finally:
            signal.signal(signal.SIGTERM, handler)
        out, err = capsys.readouterr()
        return subprocess.CompletedProcess(argv, exit_.value.code, out, err)

    return run


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every regular file under ``folder`` and its bytes (a FIFO is not read)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("args,message", list(CASES.values()), ids=list(CASES))
def test_a_bad_input_gives_one_line_exit_two_and_touches_nothing(tmp_path, args, message, bench):
    workspace(tmp_path)
    before = snapshot(tmp_path)
    result = bench(tmp_path, args)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert "Traceback" not in result.stdout + result.stderr, result.stderr
    assert len(lines) == 1, result.stderr
    assert message.replace("{tmp}", str(tmp_path)) in lines[0]
    assert len(lines[0]) < 1000, "user input echoed in full"
    assert result.returncode == 2, result.stderr
    assert "start  cell" not in result.stdout, "refused only after a worker started"
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("args,code,warnings,shown", list(READABLE.values()), ids=list(READABLE))
def test_a_readable_file_naming_the_unknown_is_read_with_a_warning(tmp_path, args, code, warnings, shown, bench):
    workspace(tmp_path)
    before = snapshot(tmp_path)
    result = bench(tmp_path, args)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert "Traceback" not in result.stdout + result.stderr, result.stderr
    assert len(lines) == len(warnings), result.stderr
    for line, warning in zip(lines, warnings, strict=True):
        assert warning.replace("{tmp}", str(tmp_path)) in line, result.stderr
    assert shown.replace("{tmp}", str(tmp_path)) in result.stdout, result.stdout
    assert result.returncode == code, result.stderr
    assert "start  cell" not in result.stdout, "a cell already in the results was measured again"
    assert {name: data for name, data in snapshot(tmp_path).items() if not name.startswith("out/")} == before


def test_report_keeps_stderr_empty_when_matplotlib_has_no_cache_folder(tmp_path):
    """matplotlib logs several lines when the home folder is not writable; the report must not pass them on."""
    workspace(tmp_path)
    home = tmp_path / "text.txt"  # a file: no folder can be made under it
    env = {k: v for k, v in os.environ.items() if k not in ("MPLCONFIGDIR", "XDG_CONFIG_HOME", "XDG_CACHE_HOME")}
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench.py"), "report", OK.replace("{tmp}", str(tmp_path)), "--out", "out"],
        cwd=tmp_path,
        env={**env, "HOME": str(home)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == ""
    assert (tmp_path / "out" / "report.md").is_file()


def test_split_variants_take_one_gpu_per_tower_when_more_gpus_are_asked_for():
    """``--gpus 4`` (the default on a 4-GPU host) must not refuse the split: it runs model-parallel on 2 and says so."""
    options = SweepOptions(
        frameworks=["torch"], variants=["cifar100-split", "cifar100-single"], modes=["infer"], gpus=4, repeats=1
    )
    setups = {(cell.variant, cell.gpus, cell.parallel) for cell in plan(options)}
    assert setups == {
        ("cifar100-split", 1, "none"),
        ("cifar100-split", 2, "model"),
        ("cifar100-single", 1, "none"),
        ("cifar100-single", 4, "data"),
    }
    assert "cifar100-split run model-parallel on 2 of the 4 GPUs" in (model_parallel_note(options) or "")
    assert model_parallel_note(replace(options, gpus=2)) is None


def test_rows_with_zero_step_times_are_shown_as_not_measured_without_warnings(tmp_path):
    """A zero time would be divided by (10-26 RuntimeWarning lines): it is not a measurement, so it is missing."""
    import warnings

    from reports.build import write_report
    from reports.compare import compare
    from reports.load import load_results

    rows = []
    for framework in ("torch", "keras"):
        row = ok_row(CellConfig(framework, "cifar100-single", "infer", 2), [0.1, 0.1, 0.1])
        row["metrics"]["step_times_s"] = [0.0, 0.0, 0.0]
        for name in ("median_step_s", "images_per_s", "images_per_s_q25", "images_per_s_q75", "achieved_flops_per_s"):
            row["metrics"][name] = 0.0
        rows.append(row)
    path = tmp_path / "zero.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        frame = load_results([path]).frame
        assert frame["images_per_s"].isna().all() and frame["step_times_s"].isna().all()
        write_report([path], tmp_path / "out")
        compare([path], [path])
    assert "| cifar100-single | infer | 2 | cpu | fp32 | — |" in (tmp_path / "out" / "report.md").read_text()
