"""Worker processes die with their parent: the kernel's parent-death signal (Linux ``PR_SET_PDEATHSIG``).

A worker that outlives its sweep keeps computing, re-parented to PID 1, and skews every later
measurement on the machine. Every child is linked to its parent between fork and exec
(``benchmarks.process.run_bounded``); the worker links itself to whatever started it (torchrun,
for data-parallel cells), so torchrun's ranks die with torchrun, which dies with the sweep.
Elsewhere than Linux both are no-ops.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1  # linux/prctl.h


def _ask_kernel() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def die_with_parent(parent_pid: int) -> None:
    """SIGKILL this process when its parent ``parent_pid`` dies; exit at once if it is already gone.

    Runs in the child between fork and exec, where the parent's pid is known.
    """
    if not sys.platform.startswith("linux"):
        return
    _ask_kernel()
    if os.getppid() != parent_pid:
        os._exit(1)


def die_with_current_parent() -> None:
    """The same link from inside a started process, toward whichever process started it.

    A parent that died before this call has left the process to PID 1 (or a subreaper): exit then.
    """
    if not sys.platform.startswith("linux"):
        return
    parent = os.getppid()
    _ask_kernel()
    if parent == 1 or os.getppid() != parent:
        os._exit(1)
