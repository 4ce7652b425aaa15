"""`pip install .` gives a working `alexnet-bench` console script, usable from any directory."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def tracked_files() -> list[str]:
    """The project's files as a fresh clone has them (git's list when available, else the source folders)."""
    done = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT, capture_output=True, text=True
    )
    if done.returncode == 0 and done.stdout.strip():
        return [name for name in done.stdout.split() if (ROOT / name).is_file()]
    folders = ("implementations", "benchmarks", "reports")
    return [
        "pyproject.toml",
        "README.md",
        "bench.py",
        *[str(p.relative_to(ROOT)) for f in folders for p in (ROOT / f).glob("*")],
    ]


def installed_distributions() -> list[tuple[str, str, str]]:
    """(name, version, location) of every distribution this interpreter sees, as a fresh process reads them."""
    code = (
        "import importlib.metadata as m, json; "
        "print(json.dumps(sorted((d.metadata['Name'], d.version, str(d.locate_file(''))) for d in m.distributions())))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return [tuple(entry) for entry in json.loads(done.stdout)]


def test_pip_install_gives_a_console_script_that_works_from_any_directory(tmp_path):
    source, prefix, elsewhere = tmp_path / "source", tmp_path / "prefix", tmp_path / "elsewhere"
    for name in tracked_files():
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, source / name)
    elsewhere.mkdir()
    # No dependencies and no build isolation: torch, TensorFlow and setuptools are already installed here.
    # --ignore-installed: without it pip first uninstalls this environment's own alexnet-bench (the README's
    # editable install) before writing into the prefix. No cache: nothing is written outside tmp_path.
    install = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation"]
    install += ["--ignore-installed", "--no-cache-dir", "--disable-pip-version-check"]
    before = installed_distributions()
    done = subprocess.run([*install, "--prefix", str(prefix), str(source)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert installed_distributions() == before, "installing into a prefix changed the running environment"
    purelib = sysconfig.get_path("purelib", vars={"base": str(prefix), "platbase": str(prefix)})
    script = Path(sysconfig.get_path("scripts", vars={"base": str(prefix), "platbase": str(prefix)})) / "alexnet-bench"
    assert script.is_file()
    env = {**os.environ, "PYTHONPATH": purelib}
    ran = subprocess.run([str(script), "variants"], capture_output=True, text=True, cwd=elsewhere, env=env, timeout=120)
    assert ran.returncode == 0, ran.stderr
    assert "imagenet-split" in ran.stdout and "60,965,224" in ran.stdout and "62,378,344" in ran.stdout
    # The installed modules answered, not this checkout's.
    where = subprocess.run(
        [
            sys.executable,
            "-c",
            "import bench, reports.findings; print(bench.__file__); print(reports.findings.__file__)",
        ],
        capture_output=True,
        text=True,
        cwd=elsewhere,
        env=env,
    )
    assert where.returncode == 0, where.stderr
    assert all(Path(line).is_relative_to(prefix) for line in where.stdout.split())
    mistake = subprocess.run(
        [str(script), "parity", "-v", "no-such"], capture_output=True, text=True, cwd=elsewhere, env=env
    )
    assert mistake.returncode == 2 and "unknown variant" in mistake.stderr
