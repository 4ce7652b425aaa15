"""How busy the machine was while a cell was timed: other processes' CPU time and the hypervisor's steal.

A shared machine can slow a cell by 4x while one other process runs (PyTorch's OpenMP threads
spin against it), and nothing in the step times says so. So the worker reads the kernel's CPU
counters (``/proc/stat``) and its own CPU time around the timed steps: what the machine's CPUs
spent busy, minus what this process spent, is the other tenants' load; ``steal`` is time the
hypervisor gave this VM's CPUs to other guests. Both are reported in cores (CPU-seconds per
second of wall time), so "1.0" means one other core's worth of work ran beside the cell.
Where ``/proc/stat`` does not exist (not Linux), the row says the load was not measured.
"""

from __future__ import annotations

import os
import resource
import time
from dataclasses import dataclass
from pathlib import Path

PROC_STAT = Path("/proc/stat")
# Other tenants' load above this (in cores, averaged over the timed steps) makes the figures suspect: on two
# cores, a quarter of a core taken away is already a visible share. Findings and compare warn from here.
BUSY_CORES = 0.25


@dataclass(frozen=True)
class CpuCounters:
    """The machine's CPU time (all CPUs) by kind, and this process's, in seconds, at one instant."""

    busy_s: float  # user, nice, system, irq, softirq: work done by anyone
    steal_s: float  # time the hypervisor ran other guests on this VM's CPUs
    own_s: float  # this process's CPU time, all its threads
    wall_s: float


def read_counters(stat_path: Path = PROC_STAT) -> CpuCounters | None:
    """The counters now, or None where the kernel does not publish them."""
    try:
        first = stat_path.read_text().splitlines()[0].split()
    except (OSError, IndexError):
        return None
    if first[0] != "cpu" or len(first) < 9:
        return None
    ticks = os.sysconf("SC_CLK_TCK")
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) / ticks for v in first[1:9])
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return CpuCounters(
        busy_s=user + nice + system + irq + softirq,
        steal_s=steal,
        own_s=usage.ru_utime + usage.ru_stime,
        wall_s=time.monotonic(),
    )


def load_between(before: CpuCounters | None, after: CpuCounters | None) -> dict:
    """Other processes' CPU use and steal between two readings, in cores, and whether that makes the machine busy."""
    if before is None or after is None or after.wall_s <= before.wall_s:
        return {"measured": False, "why": "no /proc/stat on this machine"}
    wall = after.wall_s - before.wall_s
    others = max(0.0, (after.busy_s - before.busy_s) - (after.own_s - before.own_s)) / wall
    steal = max(0.0, after.steal_s - before.steal_s) / wall
    return {
        "measured": True,
        "other_processes_cores": others,
        "steal_cores": steal,
        "seconds": wall,
        "busy": others + steal > BUSY_CORES,
        "busy_threshold_cores": BUSY_CORES,
    }


class LoadMeter:
    """``with LoadMeter() as meter: ...`` then ``meter.report()``: the machine's load while the block ran."""

    def __init__(self, stat_path: Path = PROC_STAT) -> None:
        self.stat_path = stat_path
        self.before: CpuCounters | None = None
        self.after: CpuCounters | None = None

    def __enter__(self) -> LoadMeter:
        self.before = read_counters(self.stat_path)
        return self

    def __exit__(self, *exc: object) -> None:
        self.after = read_counters(self.stat_path)

    def report(self) -> dict:
        return load_between(self.before, self.after)
