"""Child processes: how the suite starts them, bounds them, and hears from them. Imports nothing of the suite's but
``benchmarks.lifeline``, so every layer above can use it.

One protocol serves every child (the measuring worker, the training-parity worker, the address exchange): the
child prints one line ``RESULT {json}`` on stdout, a dict with a ``status`` ("ok", or what went wrong) and what it
has to say (``metrics``, ``error``, ...); everything else on stdout and stderr is chatter. The last such line wins.
A child that ends without one, is killed, or runs past its time has its ending turned into a status by the parent.

Every child runs in its own process group, tied to its parent (``benchmarks.lifeline``): at its time limit, or when
the parent is interrupted, the whole group is killed (a launcher and the processes it started), never left behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from benchmarks.lifeline import die_with_parent

ROOT = Path(__file__).resolve().parents[1]  # the project root, where bench.py is; children run from here
RESULT_PREFIX = "RESULT "


def write_result(result: dict) -> None:
    """The child's side: its one result line (JSON without NaN, so every reader can parse it)."""
    sys.stdout.write(RESULT_PREFIX + json.dumps(result, allow_nan=False) + "\n")
    sys.stdout.flush()


def read_result(stdout: str) -> dict | None:
    """The parent's side: the child's last result line, or None when it printed none."""
    results = [line[len(RESULT_PREFIX) :] for line in stdout.splitlines() if line.startswith(RESULT_PREFIX)]
    return json.loads(results[-1]) if results else None


@dataclass(frozen=True)
class Ended:
    """How a bounded process ended: its exit code (None: killed at the time limit) and its output."""

    returncode: int | None
    stdout: str
    stderr: str


def run_bounded(
    command: list[str], env: dict[str, str], timeout_s: float, keep_stdout: bool = True, cwd: Path = ROOT
) -> Ended:
    """Run ``command`` from the project's root (or ``cwd``) in its own process group, tied to this process
    (``benchmarks.lifeline``), for at most ``timeout_s``; past it, or on Ctrl-C, the whole group is
    killed (a launcher and the processes it started), never left behind."""
    parent = os.getpid()
    process = subprocess.Popen(
        command,
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE if keep_stdout else subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group: a timeout or Ctrl-C kills torchrun's children too
        preexec_fn=lambda: die_with_parent(parent),
    )
    try:
        stdout, stderr = process.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        kill_group(process)
        return Ended(None, "", "")
    except BaseException:
        kill_group(process)
        raise
    return Ended(process.returncode, stdout or "", stderr or "")


def kill_group(process: subprocess.Popen) -> None:
    """Kill a child's whole process group (it leads its own: ``start_new_session``) and reap it."""
    with contextlib.suppress(ProcessLookupError):  # the group is gone already: nothing is left to kill
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def failure_from_exit(returncode: int, stderr: str) -> tuple[str, str]:
    """(status, error) of a worker that ended without a result line: killed by a signal, or exited on its own."""
    tail = " | ".join(line.strip() for line in stderr.strip().splitlines()[-3:])
    if returncode < 0:
        name = signal.Signals(-returncode).name
        reason = " (out of memory: the kernel's OOM killer, or kill -9)" if returncode == -signal.SIGKILL else ""
        return "killed", f"worker killed by {name}{reason}"
    return "crashed", f"worker exited with code {returncode} without a result: {tail or 'no output'}"


def run_process(
    command: list[str],
    env: dict[str, str],
    timeout_s: float,
    explain: Callable[[str], tuple[str, str] | None] = lambda stderr: None,
) -> dict:
    """Run a worker command and read its result line; a worker without one becomes a failure.

    ``explain`` may name the failure from the launcher's last words (a node that never joined).
    """
    ended = run_bounded(command, env, timeout_s)
    if ended.returncode is None:
        return {"status": "timeout", "error": f"no result within {timeout_s:g} s; worker killed"}
    result = read_result(ended.stdout)
    if result is not None:
        return result
    status, error = explain(ended.stderr) or failure_from_exit(ended.returncode, ended.stderr)
    return {"status": status, "error": error}
