"""With no ``-f``, the commands plan the default frameworks this installation has, and say which they left out."""

import pytest
import typer
from typer.testing import CliRunner

import bench
import cli.run
from cli.common import default_frameworks


def one_line(text: str) -> str:
    return " ".join(text.split())


@pytest.fixture(params=[True, False], ids=["both-installed", "torch-only"])
def keras_installed(request, installed_packages) -> bool:
    installed_packages(torch=True, tensorflow=request.param, keras=request.param)
    return request.param


def planned_frameworks(monkeypatch, *args: str) -> tuple[set[str], str, int]:
    """The frameworks of the cells ``bench.py run ARGS`` would start (nothing runs), its output and exit code."""
    started = {}

    def execute(planned, noun):
        started["cells"] = planned.sweep.jobs
        raise typer.Exit(0)

    monkeypatch.setattr(cli.run, "execute", execute)
    done = CliRunner().invoke(bench.app, ["run", "--quick", "--no-report", *args])
    return {cell.framework for cell in started.get("cells", [])}, one_line(done.output), done.exit_code


def test_run_plans_the_installed_defaults_and_names_each_left_out(keras_installed, monkeypatch, tmp_path):
    planned, output, code = planned_frameworks(monkeypatch, "--results", str(tmp_path / "r.jsonl"))
    assert code == 0, output
    assert planned == ({"torch", "keras"} if keras_installed else {"torch"})
    left_out = "note: keras needs keras, tensorflow, which is not installed"
    assert (left_out in output) is not keras_installed
    assert "Traceback" not in output


def test_asking_for_a_framework_that_is_not_installed_stays_an_error(keras_installed, monkeypatch, tmp_path):
    planned, output, code = planned_frameworks(monkeypatch, "-f", "keras", "--results", str(tmp_path / "r.jsonl"))
    if keras_installed:
        assert code == 0 and planned == {"keras"}
    else:
        assert code == 2 and "keras needs keras, tensorflow, which is not installed" in output
        assert "left out" not in output


def test_train_and_selfcheck_take_the_installed_defaults_too(installed_packages):
    installed_packages(torch=True, tensorflow=False, keras=False)
    assert default_frameworks(None, ["torch", "keras"]) == ["torch"]
    assert default_frameworks(["keras"], ["torch", "keras"]) == ["keras"]  # named: checked where it is used
    installed_packages(torch=False)
    with pytest.raises(typer.Exit) as ended:
        default_frameworks(None, ["torch", "keras"])
    assert ended.value.exit_code == 2
