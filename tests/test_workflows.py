"""The GitHub Actions workflows users copy: valid YAML, and every command they run is the README's.

They are audited here too, offline: zizmor (no finding at its most verbose persona) and check-jsonschema's
vendored GitHub-workflow schema. Both come with the dev extra; nothing here reaches the network or writes
outside pytest's tmp_path.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
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


def test_the_benchmark_job_runs_base_against_head_paired_into_the_summary_and_is_advisory():
    flow = workflow("benchmark-pr.yml")
    triggers = flow.get("on", flow.get(True))  # YAML 1.1 reads the key `on` as True
    assert "pull_request" in triggers
    job = next(iter(flow["jobs"].values()))
    assert job["continue-on-error"] is True
    invocations = bench_invocations(flow)
    assert [args[0] for args in invocations] == ["ab"]  # one paired command, no two separate runs
    ab = invocations[0]
    assert ab[ab.index("--base-tree") + 1] == "$RUNNER_TEMP/base"
    worktree = [step["run"] for step in steps(flow) if "git worktree add" in step.get("run", "")]
    assert len(worktree) == 1 and '"$RUNNER_TEMP/base"' in worktree[0]
    paired = [step["run"] for step in steps(flow) if "bench.py ab" in step.get("run", "")]
    assert len(paired) == 1 and "--markdown" in paired[0] and '>> "$GITHUB_STEP_SUMMARY"' in paired[0]


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


# --- zizmor and check-jsonschema ------------------------------------------------------------------------

WORKFLOW_NAMES = ("tests.yml", "benchmark-pr.yml")
PINNED = re.compile(r"^\s*(?:-\s+)?uses:\s+([\w.-]+/[\w./-]+)@([0-9a-f]{40}) # (v\d+\.\d+\.\d+)\s*$")


def zizmor_ran(done: subprocess.CompletedProcess) -> bool:
    """0: no finding; 10-14: findings (by worst severity); anything else: zizmor itself failed."""
    return done.returncode == 0 or 10 <= done.returncode <= 14


def zizmor_binary() -> Path:
    """zizmor is a Rust binary (no `python -m`): the one installed beside this interpreter, else PATH's."""
    for candidate in (Path(sys.executable).parent / "zizmor", Path(sys.executable).parent / "zizmor.exe"):
        if candidate.is_file():
            return candidate
    found = shutil.which("zizmor")
    if found is None:
        pytest.skip("zizmor is not installed: pip install -e '.[dev]' (it is in the dev extra)")
    return Path(found)


def sealed_env(tmp_path: Path) -> dict[str, str]:
    """No GitHub token (online audits need one), a proxy that refuses, and HOME/caches inside tmp_path."""
    env = {k: v for k, v in os.environ.items() if k not in {"GH_TOKEN", "GITHUB_TOKEN", "ZIZMOR_GITHUB_TOKEN"}}
    home = tmp_path / "home"
    env.update(
        HOME=str(home),
        XDG_CACHE_HOME=str(home / ".cache"),
        XDG_CONFIG_HOME=str(home / ".config"),
        HTTPS_PROXY="http://127.0.0.1:9",
        HTTP_PROXY="http://127.0.0.1:9",
        https_proxy="http://127.0.0.1:9",
        http_proxy="http://127.0.0.1:9",
        NO_PROXY="",
        no_proxy="",
        ZIZMOR_OFFLINE="true",
    )
    return env


def zizmor(tmp_path: Path, target: Path) -> list[dict]:
    """zizmor's findings (JSON) over `target`, offline, at the auditor persona (its most verbose)."""
    cmd = [str(zizmor_binary()), "--offline", "--format", "json", "--persona", "auditor", str(target)]
    done = subprocess.run(
        cmd, cwd=tmp_path, env=sealed_env(tmp_path), capture_output=True, text=True, timeout=120, check=False
    )
    assert zizmor_ran(done), (done.returncode, done.stderr)
    return json.loads(done.stdout)


def summary(findings: list[dict]) -> list[tuple[str, str, str, int]]:
    """(audit, severity, file, line) of each finding, for readable assertion messages."""
    rows = []
    for finding in findings:
        primary = next(
            (loc for loc in finding["locations"] if loc["symbolic"].get("kind") == "Primary"), finding["locations"][0]
        )
        key = primary["symbolic"]["key"]
        path = next(iter(key.values()))["verbatim_path"] if isinstance(key, dict) else str(key)
        row = primary["concrete"]["location"]["start_point"]["row"] + 1
        rows.append((finding["ident"], finding["determinations"]["severity"], Path(path).name, row))
    return rows


def copy_workflows(tmp_path: Path, edit=None) -> Path:
    """The workflows copied under tmp_path, `edit(name, text) -> text` applied to each."""
    target = tmp_path / "repo" / ".github" / "workflows"
    target.mkdir(parents=True)
    for name in WORKFLOW_NAMES:
        text = (WORKFLOWS / name).read_text(encoding="utf-8")
        (target / name).write_text(edit(name, text) if edit else text, encoding="utf-8")
    return target


def test_zizmor_finds_nothing_in_the_workflows(tmp_path):
    """No finding at all, even at the auditor persona. An accepted one would be ignored in
    .github/zizmor.yml (which zizmor reads from the repository) with a comment saying why; there is none."""
    findings = zizmor(tmp_path, WORKFLOWS)
    assert summary(findings) == [], f"zizmor findings (audit, severity, file, line): {summary(findings)}"
    home = tmp_path / "home"
    assert not home.exists() or not any(home.rglob("*")), "zizmor --offline wrote a cache or config"


def _inject_title(name, text):
    new = text.replace(
        "run: git worktree add", 'run: echo "${{ github.event.pull_request.title }}" && git worktree add'
    )
    return new if name == "benchmark-pr.yml" else text


def _unpin_checkout(name, text):
    return re.sub(r"actions/checkout@[0-9a-f]{40} # v[\d.]+", "actions/checkout@v4", text)


def _persist_credentials(name, text):
    return re.sub(r"\n\s+persist-credentials: false[^\n]*", "", text)


def _default_permissions(name, text):
    text = re.sub(r"\npermissions: \{\}[^\n]*", "", text)
    return re.sub(r"\n\s+permissions:\n\s+contents: read[^\n]*", "", text)


def _base_sha_in_run(name, text):
    if name != "benchmark-pr.yml":
        return text
    text = re.sub(r"\n\s+env:\n\s+BASE_SHA: [^\n]*", "", text)
    return text.replace('"$BASE_SHA"', '"${{ github.event.pull_request.base.sha }}"')


@pytest.mark.parametrize(
    ("edit", "audit"),
    [
        (_inject_title, "template-injection"),
        (_base_sha_in_run, "template-injection"),  # the old benchmark-pr.yml
        (_unpin_checkout, "unpinned-uses"),
        (_persist_credentials, "artipacked"),
        (_default_permissions, "excessive-permissions"),
    ],
    ids=lambda value: value if isinstance(value, str) else value.__name__.strip("_"),
)
def test_zizmor_reports_what_the_workflows_fixed_when_it_comes_back(tmp_path, edit, audit):
    """The audit can fail: undo one fix (or add an injection) in a copy, and zizmor reports it."""
    for name in WORKFLOW_NAMES:
        original = (WORKFLOWS / name).read_text(encoding="utf-8")
        if edit(name, original) != original:
            break
    else:
        pytest.fail(f"{edit.__name__} changes neither workflow: the workflows moved, update the edit")
    assert audit in {row[0] for row in summary(zizmor(tmp_path, copy_workflows(tmp_path, edit)))}


def test_zizmor_opens_no_network_connection_when_offline(tmp_path):
    """Traced where strace is available (Linux): --offline means no connect() to an internet address."""
    strace = shutil.which("strace")
    if strace is None:
        pytest.skip("strace is not installed: the offline check is traced only where it is")
    log = tmp_path / "strace.log"
    cmd = [strace, "-f", "-qq", "-e", "trace=connect", "-o", str(log), str(zizmor_binary())]
    cmd += ["--offline", "--format", "json", "--persona", "auditor", str(WORKFLOWS)]
    done = subprocess.run(
        cmd, cwd=tmp_path, env=sealed_env(tmp_path), capture_output=True, text=True, timeout=120, check=False
    )
    if not log.exists() or "ptrace" in done.stderr:
        pytest.skip(f"strace cannot trace here: {done.stderr.strip()[:200]}")
    assert zizmor_ran(done), (done.returncode, done.stderr)
    connects = [line for line in log.read_text(encoding="utf-8").splitlines() if "connect(" in line]
    assert not [line for line in connects if "AF_INET" in line], connects  # AF_INET6 included; AF_UNIX is local


def test_every_action_is_pinned_to_a_commit_with_its_version_in_a_comment():
    """zizmor checks the pin; this checks the comment a reader (and Dependabot/pinact) goes by."""
    for name in WORKFLOW_NAMES:
        lines = [line for line in (WORKFLOWS / name).read_text(encoding="utf-8").splitlines() if "uses:" in line]
        assert lines, name
        for line in lines:
            assert PINNED.match(line), f"{name}: {line.strip()!r} is not `uses: owner/repo@<40-hex sha> # vX.Y.Z`"


def check_jsonschema(tmp_path: Path, *files: Path) -> subprocess.CompletedProcess:
    pytest.importorskip("check_jsonschema", reason="check-jsonschema comes with the dev extra")
    cmd = [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.github-workflows"]
    return subprocess.run(
        [*cmd, *map(str, files)],
        cwd=tmp_path,
        env=sealed_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_workflows_match_the_vendored_github_workflow_schema(tmp_path):
    done = check_jsonschema(tmp_path, *(WORKFLOWS / name for name in WORKFLOW_NAMES))
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_schema_check_fails_on_a_broken_workflow(tmp_path):
    """A job without runs-on (renamed) is not a workflow GitHub accepts: the check says so."""
    broken = copy_workflows(tmp_path, lambda name, text: text.replace("runs-on:", "runs_on:"))
    done = check_jsonschema(tmp_path, broken / "tests.yml")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "tests.yml" in done.stdout + done.stderr
