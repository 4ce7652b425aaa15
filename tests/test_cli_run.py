"""``bench.py run`` as a user meets it: one-line errors, exit codes, the table, resume, Ctrl-C."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from benchmarks.cell import CellConfig
from tests.results_factory import ok_row

ROOT = Path(__file__).resolve().parent.parent


def bench(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "bench.py", *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout
    )


def one_line(text: str) -> str:
    return " ".join(text.split())


@pytest.mark.parametrize(
    "args,message",
    [
        (["--gpus", "2"], "asked for 2 GPUs but found 0"),
        (["--gpus", "-1"], "--gpus must be 0 (CPU) or more, got -1"),
        (["-f", "jax"], "unknown framework 'jax'; valid: torch, keras"),
        (["-v", "resnet50"], "unknown variant 'resnet50'"),
        (["-m", "eval"], "unknown mode 'eval'; valid: train, infer"),
        (["-b", "0"], "batch size must be at least 1, got 0"),
        (["--results", "bench.py/results.jsonl"], "cannot write results to bench.py/results.jsonl"),
    ],
)
def test_user_mistakes_exit_two_with_one_line_and_no_traceback(args, message):
    result = bench("run", *args)
    assert result.returncode == 2, result.stderr
    assert message in one_line(result.stderr)
    assert "Traceback" not in result.stderr + result.stdout


def test_run_plans_for_the_host_it_finds(host_gpus, host_bf16, monkeypatch, tmp_path):
    """The GPUs NVML finds and the CPU's bf16 decide the default devices, the GPU check and --best's bf16.

    In this process, with the sweep's execution stubbed: no worker starts (``bench.py run`` above
    runs the real thing on this machine, which the suite shows as a CPU without native bf16).
    """
    import bench
    import cli.run
    from benchmarks.matrix import default_cell_timeout
    from tests.fakes_gpu import UUIDS

    started = {}

    def execute(planned, noun):
        started.update(cells=planned.sweep.jobs, timeout_s=planned.timeout_s, gpu_uuids=planned.gpu_uuids)
        raise typer.Exit(0)

    monkeypatch.setattr(cli.run, "execute", execute)
    args = ["run", "-f", "torch", "-v", "cifar100-single", "-m", "infer", "-b", "8", "--repeats", "1", "--best"]
    args += ["--no-report", "--results", str(tmp_path / "r.jsonl")]
    done = CliRunner().invoke(bench.app, args)
    assert done.exit_code == 0, done.output
    cells = started["cells"]
    assert {cell.gpus for cell in cells} == ({1, 2} if host_gpus else {0})  # all found, and one for scaling
    assert started["gpu_uuids"] == (UUIDS if host_gpus else ())
    assert started["timeout_s"] == default_cell_timeout(len(host_gpus))
    bf16 = bool(host_gpus) or host_bf16  # GPUs compute bf16 natively
    assert any(cell.precision == "bf16" for cell in cells) is bf16
    assert ("note: bf16 not tried: this CPU has no native bf16" in one_line(done.output)) is not bf16

    too_many = CliRunner().invoke(bench.app, [*args, "--gpus", "3"])
    assert too_many.exit_code == 2 and "Traceback" not in too_many.output
    seen = "found 2 (Fake GPU A, Fake GPU B)" if host_gpus else "found 0: NVML unavailable: NVML Shared Library"
    assert f"asked for 3 GPUs but {seen}" in one_line(too_many.output)


def test_a_results_file_of_another_schema_is_refused_and_left_alone(tmp_path):
    path = tmp_path / "old.jsonl"
    content = json.dumps({"schema_version": 0, "key": "x"}) + "\n"
    path.write_text(content)
    result = bench("run", "--quick", "--results", str(path))
    assert result.returncode == 2
    assert "schema version 0" in one_line(result.stderr)
    assert path.read_text() == content


def test_a_small_sweep_prints_the_table_writes_rows_and_resumes(tmp_path):
    path = tmp_path / "r.jsonl"
    args = [
        "run",
        "-f",
        "torch",
        "-v",
        "cifar100-split",
        "-m",
        "infer",
        "-b",
        "4",
        "--steps",
        "2",
        "--warmup",
        "1",
        "--repeats",
        "1",
        "--time-budget",
        "0",
        "--results",
        str(path),
    ]
    first = bench(*args)
    assert first.returncode == 0, first.stderr
    assert "Throughput, images/s" in first.stdout and "cifar100-split" in first.stdout
    assert "1 cells, 0 failed" in first.stdout
    assert "Findings" in first.stdout and "PyTorch reached at most" in first.stdout  # the device ceiling finding
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(rows) == 1 and rows[0]["status"] == "ok"

    again = bench(*args, "--resume")
    assert again.returncode == 0
    assert "resuming: 1 of 1 cells already done" in again.stdout
    assert len(path.read_text().splitlines()) == 1


def test_ctrl_c_keeps_every_finished_row_and_exits_130(tmp_path):
    path = tmp_path / "r.jsonl"
    earlier = ok_row(CellConfig("torch", "cifar100-single", "infer", 2), [0.1, 0.1])
    finished = json.dumps(earlier) + "\n"
    path.write_text(finished)
    process = subprocess.Popen(
        [
            sys.executable,
            "bench.py",
            "run",
            "-f",
            "torch",
            "-v",
            "cifar100-single",
            "-m",
            "train",
            "--steps",
            "100000",
            "--results",
            str(path),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # A shell's background jobs inherit SIGINT as ignored; at a terminal, Ctrl-C is not ignored.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.monotonic() + 120
    while not worker_children(process.pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    workers = worker_children(process.pid)
    assert workers, "the sweep never started a worker"
    time.sleep(1)  # mid-cell
    os.kill(process.pid, signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130
    assert "interrupted; every finished cell is saved" in one_line(stderr)
    assert path.read_text() == finished
    assert not [pid for pid in workers if Path(f"/proc/{pid}").exists()]  # the worker went with the sweep


def worker_children(parent: int) -> list[int]:
    """Live processes whose parent is ``parent`` and that run the benchmark worker."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            cmdline = (stat.parent / "cmdline").read_bytes()
        except OSError:
            continue
        if int(fields[1]) == parent and b"benchmarks.worker" in cmdline and fields[0] != "Z":
            found.append(int(stat.parent.name))
    return found
