"""CPU run settings recorded with every sweep: thread variables, allocator, affinity, governor."""

import os
from pathlib import Path

import pytest

from benchmarks.measure.environment import cpu_run_settings


@pytest.fixture(params=[True, False], ids=["affinity", "no-affinity"])
def cpu_affinity(request, monkeypatch: pytest.MonkeyPatch) -> list[int] | None:
    """The cores this process may run on, where the OS says (Linux); None where it cannot (macOS)."""
    if request.param:
        monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {3, 1}, raising=False)
        return [1, 3]
    monkeypatch.delattr(os, "sched_getaffinity", raising=False)
    return None


def test_thread_variables_allocator_and_governor_are_recorded(tmp_path: Path, cpu_affinity) -> None:
    governor = tmp_path / "sys/devices/system/cpu/cpu0/cpufreq/scaling_governor"
    governor.parent.mkdir(parents=True)
    governor.write_text("performance\n")
    environ = {"OMP_NUM_THREADS": "2", "KMP_AFFINITY": "compact", "LD_PRELOAD": "libjemalloc.so", "HOME": "/x"}
    settings = cpu_run_settings(environ, root=tmp_path)
    assert settings["thread_variables"] == {"KMP_AFFINITY": "compact", "OMP_NUM_THREADS": "2"}
    assert settings["ld_preload"] == "libjemalloc.so" and settings["governor"] == "performance"
    assert settings["affinity"] == cpu_affinity


def test_an_unreadable_governor_and_no_preload_are_none(tmp_path: Path) -> None:
    settings = cpu_run_settings({}, root=tmp_path)
    assert settings["governor"] is None and settings["ld_preload"] is None and settings["thread_variables"] == {}
