"""The GitHub Actions workflows users copy: valid YAML, and every command they run is the README's."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import typer

yaml = pytest.importorskip("yaml", reason="PyYAML comes with the dev extra: pip install -e '.[dev]'")

ROOT = Path(__file__).resolve().parent.parent
WORKFLOWS = ROOT / ".github" / "workflows"
README = (ROOT / "README.md").read_text(encoding="utf-8")


def workflow(name: str) -> dict:
    return yaml.safe_load((WORKFLOWS / name).read_text(encoding="utf-8"))


def steps(flow: dict) -> list[dict]:
    return [step for job in flow["jobs"].values() for step in job["steps"]]


def readme_test_command() -> str:
    """The fenced block after the test-command marker (what .ci/run runs)."""
    after = README.split("<!-- test-command -->", 1)[1]
    return re.search(r"```bash\n(.*?)\n```", after, re.S).group(1).strip()


def bench_invocations(flow: dict) -> list[list[str]]:
    """The arguments after ``bench.py`` of every command the workflow runs."""
    found = []
    for step in steps(flow):
        for line in step.get("run", "").splitlines():
            words = shlex.split(line.split(">>")[0])
            found += [words[i + 1 :] for i, word in enumerate(words) if word.endswith("bench.py")]
    return found


@pytest.mark.parametrize("name", ["tests.yml", "benchmark-pr.yml"])
def test_workflows_parse_and_cache_pip(name):
    flow = workflow(name)
    assert flow["jobs"] and all(job["runs-on"] for job in flow["jobs"].values())
    setup = [s for s in steps(flow) if s.get("uses", "").startswith("actions/setup-python")]
    assert setup and setup[0]["with"]["cache"] == "pip"


def test_the_test_workflow_runs_the_readme_test_command():
    runs = [step.get("run", "").strip() for step in steps(workflow("tests.yml"))]
    assert readme_test_command() in runs


def test_the_benchmark_job_runs_quick_on_base_and_head_compares_into_the_summary_and_is_advisory():
    flow = workflow("benchmark-pr.yml")
    triggers = flow.get("on", flow.get(True))  # YAML 1.1 reads the key `on` as True
    assert "pull_request" in triggers
    job = next(iter(flow["jobs"].values()))
    assert job["continue-on-error"] is True
    invocations = bench_invocations(flow)
    runs = [args for args in invocations if args[0] == "run"]
    assert len(runs) == 2 and all("--quick" in args for args in runs)
    assert {args[args.index("--results") + 1] for args in runs} == {
        "$RUNNER_TEMP/base.jsonl",
        "$RUNNER_TEMP/head.jsonl",
    }
    compare = [step["run"] for step in steps(flow) if "bench.py compare" in step.get("run", "")]
    assert len(compare) == 1 and "--markdown" in compare[0] and '>> "$GITHUB_STEP_SUMMARY"' in compare[0]


def test_every_bench_command_in_the_workflows_exists_and_is_in_the_readme():
    import bench

    group = typer.main.get_command(bench.app)
    for name in ("tests.yml", "benchmark-pr.yml"):
        for args in bench_invocations(workflow(name)):
            command = group.commands[args[0]]  # KeyError: no such command
            options = {opt for param in command.params for opt in getattr(param, "opts", [])}
            used = [word for word in args[1:] if word.startswith("--")]
            assert set(used) <= options, (args, options)
            assert f"bench.py {args[0]}" in README
            for option in used:
                assert option in README, f"{option} of bench.py {args[0]} is not described in the README"
