"""The machine's load beside a cell: other processes' CPU time and steal, from the kernel's counters."""

import os
import types

import pytest

from benchmarks.measure import machine_load
from benchmarks.measure.machine_load import BUSY_CORES, LoadMeter

TICKS = os.sysconf("SC_CLK_TCK")


def write_stat(path, user=0, system=0, idle=0, steal=0):
    """A /proc/stat whose first line has these totals (in seconds, written as clock ticks)."""
    fields = [user, 0, system, idle, 0, 0, 0, steal, 0, 0]
    path.write_text("cpu  " + " ".join(str(int(v * TICKS)) for v in fields) + "\ncpu0 0 0 0 0\n")


@pytest.fixture
def clock(monkeypatch):
    """This process's CPU time and the wall clock, set by the test."""
    now = {"own": 0.0, "wall": 100.0}
    usage = lambda who: types.SimpleNamespace(ru_utime=now["own"], ru_stime=0.0)  # noqa: E731
    monkeypatch.setattr(machine_load.resource, "getrusage", usage)
    monkeypatch.setattr(machine_load.time, "monotonic", lambda: now["wall"])
    return now


@pytest.mark.parametrize(
    "others,steal,busy",
    [(0.0, 0.0, False), (0.1, 0.0, False), (1.0, 0.0, True), (0.0, 0.5, True)],
    ids=["quiet", "a-little", "one-other-core", "stolen"],
)
def test_other_processes_and_steal_are_told_from_the_cells_own_cpu_time(tmp_path, clock, others, steal, busy):
    stat = tmp_path / "stat"
    write_stat(stat, user=1000, system=100, idle=5000, steal=10)
    with LoadMeter(stat) as meter:
        own = 3.8  # the cell kept two cores busy for 2 s, minus a little
        clock["own"] += own
        clock["wall"] += 2.0
        write_stat(stat, user=1000 + own + others * 2.0, system=100, idle=5000, steal=10 + steal * 2.0)
    load = meter.report()
    assert load["measured"] and load["seconds"] == pytest.approx(2.0)
    assert load["other_processes_cores"] == pytest.approx(others, abs=0.01)
    assert load["steal_cores"] == pytest.approx(steal, abs=0.01)
    assert load["busy"] is busy and load["busy_threshold_cores"] == BUSY_CORES


def test_without_the_kernels_counters_the_load_is_said_to_be_unmeasured(tmp_path):
    with LoadMeter(tmp_path / "absent") as meter:
        pass
    assert meter.report() == {"measured": False, "why": "no /proc/stat on this machine"}


@pytest.mark.skipif(not machine_load.PROC_STAT.exists(), reason="the real counters exist on Linux only")
def test_the_real_counters_give_a_load():
    with LoadMeter() as meter:
        sum(i * i for i in range(200_000))
    load = meter.report()
    assert load["measured"] and load["other_processes_cores"] >= 0 and load["steal_cores"] >= 0
