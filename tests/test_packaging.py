"""`pip install .` gives a working `alexnet-bench` console script, usable from any directory."""

from __future__ import annotations

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


def test_pip_install_gives_a_console_script_that_works_from_any_directory(tmp_path):
    source, prefix, elsewhere = tmp_path / "source", tmp_path / "prefix", tmp_path / "elsewhere"
    for name in tracked_files():
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, source / name)
    elsewhere.mkdir()
    # No dependencies and no build isolation: torch, TensorFlow and setuptools are already installed here.
    install = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation"]
    done = subprocess.run([*install, "--prefix", str(prefix), str(source)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
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
