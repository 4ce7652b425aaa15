"""A new framework joins through the registry alone: planned, measured, tried in --best, reported."""

import json
import os
import subprocess
import sys
from pathlib import Path

from benchmarks import frameworks
from benchmarks.matrix import SweepOptions, plan

ROOT = Path(__file__).resolve().parent.parent


def test_a_registered_framework_is_planned_with_its_own_fast_paths_only(monkeypatch):
    assert "numpy-fake" not in frameworks.names()
    monkeypatch.delitem(sys.modules, "tests.fake_framework", raising=False)  # it registers on its first import only
    problems = frameworks.load_plugins("tests.fake_framework")
    try:
        assert problems == [] and frameworks.label("numpy-fake") == "NumPy (fake)"
        cells = plan(SweepOptions(frameworks=["numpy-fake"], quick=True, best=True, variants=["cifar100-split"]))
        assert {(c.split_impl, c.fast_paths()) for c in cells} == {
            ("towers", "fp32"),
            ("grouped", "fp32"),
            ("towers", "compiled"),
        }
    finally:
        frameworks.unregister("numpy-fake")


def test_a_module_that_does_not_import_is_reported_not_raised():
    (problem,) = frameworks.load_plugins("tests.no_such_framework_module")
    assert "cannot import tests.no_such_framework_module" in problem


def test_a_plugin_that_raises_keyboard_interrupt_on_import_is_one_warning(tmp_path):
    (tmp_path / "hostile_plugin.py").write_text("raise KeyboardInterrupt\n")
    env = {**os.environ, frameworks.PLUGINS_VARIABLE: "hostile_plugin", "PYTHONPATH": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "bench.py", "variants"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    assert "cannot import hostile_plugin: KeyboardInterrupt" in done.stderr and "cifar100-split" in done.stdout


def test_the_fake_framework_runs_a_quick_best_sweep_and_appears_in_the_report(tmp_path):
    results, report = tmp_path / "r.jsonl", tmp_path / "report"
    env = {**os.environ, frameworks.PLUGINS_VARIABLE: "tests.fake_framework"}
    command = [sys.executable, "bench.py", "run", "-f", "numpy-fake", "--quick", "--best", "-v", "cifar100-split"]
    command += ["--repeats", "1", "--time-budget", "0", "--results", str(results), "--report", str(report)]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    rows = [json.loads(line) for line in results.read_text().splitlines()]
    assert len(rows) == 6 and {row["status"] for row in rows} == {"ok"}  # 2 modes x (base, other impl, compiled)
    assert {row["environment"]["framework"]["framework"] for row in rows} == {"numpy-fake"}
    assert "Fastest configuration per framework" in done.stdout and "numpy-fake" in done.stdout
    markdown = (report / "report.md").read_text()
    fast_paths = markdown[markdown.index("## Fast paths") :]
    assert "numpy-fake" in fast_paths.split("\n## ")[0]  # tried in --best: in the report's fast-path table
    assert "NumPy (fake)" in markdown  # the registry's label, in the findings and tables
