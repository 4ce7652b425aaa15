"""bench.py as a user meets it: tables, exit codes, and one-line errors for mistakes."""

import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

import bench

ROOT = Path(__file__).resolve().parent.parent
runner = CliRunner()


def test_variants_lists_parameters_and_flops():
    result = runner.invoke(bench.app, ["variants"])
    assert result.exit_code == 0
    for figure in ("60,965,224", "62,378,344", "28,938,724", "30,351,844", "29,038,480"):
        assert figure in result.output
    assert "tutorial-cifar100: cannot be built: conv2: 7x7 kernel does not fit its 6x6 input map" in result.output


def test_parity_passes_for_one_variant_and_both_formulations():
    result = runner.invoke(bench.app, ["parity", "--variant", "cifar100-split"])
    assert result.exit_code == 0, result.output
    assert "cifar100-split (grouped)" in result.output and "cifar100-split (towers)" in result.output
    assert "All parity checks passed" in result.output


def test_parity_failure_exits_one_and_names_the_layer(monkeypatch):
    from implementations import parity

    correct = parity.torch_to_keras

    def broken_fc6(weights, arch):
        converted = correct(weights, arch)
        converted["fc6"]["kernel"] = weights["fc6"]["kernel"].T.copy()
        return converted

    monkeypatch.setattr(parity, "torch_to_keras", broken_fc6)
    result = runner.invoke(bench.app, ["parity", "-v", "cifar100-single"])
    assert result.exit_code == 1
    assert "FAIL at fc6" in result.output


@pytest.mark.parametrize(
    "args,message",
    [
        (["parity", "-v", "alexnet-xl"], "unknown variant 'alexnet-xl'; valid variants: imagenet-single"),
        (["parity", "-v", "tutorial-cifar100"], "conv2: 7x7 kernel does not fit its 6x6 input map"),
        (["parity", "--split-impl", "diagonal"], "unknown split implementation 'diagonal'"),
    ],
)
def test_user_mistakes_get_one_line_and_exit_two(args, message):
    """Run as a real process: the exit code and stderr a user sees, and no traceback."""
    result = subprocess.run([sys.executable, "bench.py", *args], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 2
    assert message in " ".join(result.stderr.split())
    assert "Traceback" not in result.stderr + result.stdout


def test_a_cell_line_shows_its_fast_path_literally():
    from rich.console import Console

    from benchmarks.cell import CellConfig
    from benchmarks.results import ResultRow
    from reports.console import cell_line
    from tests.results_factory import failed_row, ok_row

    cell = CellConfig("torch", "cifar100-split", "train", 16, compiled=True)
    console = Console(record=True, width=200)
    console.print(cell_line(ResultRow.from_dict(ok_row(cell, [0.5, 0.5]))))
    console.print(cell_line(ResultRow.from_dict({**failed_row(cell), "error": "bad [bold]input[/]"})))
    text = console.export_text()
    assert "cifar100-split/grouped [compiled] train" in text  # not swallowed as a style tag
    assert "bad [bold]input[/]" in text
