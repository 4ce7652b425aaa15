"""A cell's worker that steps on request: one side of ``bench.py ab``'s step-by-step interleaving.

    python -m benchmarks.step_server --config '<cell json>'

It prepares the cell exactly as the measuring worker does (``benchmarks.worker.prepare``: the framework adapter's
``prepare``; then the first step and the warm-up steps), says ``READY {json}`` on stdout, and then reads commands,
one a line, on stdin:

- ``step K``: runs K timed steps, each bracketed by the device's synchronisation (``timing.time_steps``, the
  normal worker's clock), and answers ``STEPS {"times": [...]}``;
- ``cell {json}`` (protocol 2): closes the cell it holds and prepares this one as at the start, answering
  ``READY``; so one pair of servers can measure every cell of a framework in turn without paying for a process,
  its imports and its framework's start-up per cell;
- ``quit`` (or the end of stdin): closes the cell and exits 0.

    python -m benchmarks.step_server --fork-server FRAMEWORK

(protocol 3) imports what that framework's workers need (``Framework.preload_modules``: about 2 s for PyTorch,
6 s for TensorFlow on two cores), says ``READY``, and then forks a step server on each ``fork {cell json}``. The
child takes over the pipes and serves as above; the fork server waits for it, then says ``ENDED {"code"}`` and
reads its next command. So every pair of ``bench.py ab`` still gets fresh processes, without paying for their
imports each time. A forked child shifts where its heap and mapped memory begin by a random number of pages
(``shift_layout``), as a fresh process's start is shifted, so that children of one fork server do not all share
one memory layout, and with it one lucky or unlucky set of cache conflicts.

Between commands it only waits on the pipe, so it never runs while the other side runs. A failure answers
``FAILED {"status", "error"}`` and exits 1. Every protocol line starts with its word; everything else on stdout is
the frameworks' chatter, which the parent skips. ``benchmarks.paired`` detects the protocol in a tree by this
file's presence (it never runs a base's code to find out) and the protocol version in ``READY``.
"""

from __future__ import annotations

import argparse
import importlib
import json
import mmap
import os
import random
import sys
import time
import traceback

PROTOCOL = 3
READY, STEPS, FAILED, ENDED = "READY ", "STEPS ", "FAILED ", "ENDED "
MAX_STEPS_PER_TURN = 10_000
LAYOUT_SHIFT_PAGES = 256  # mapped memory moves by up to 1 MiB: past an L2 cache's span, so its sets change too
HEAP_SHIFT_PAGES = 31  # below malloc's mmap threshold (128 KiB): these come from the heap, moving what follows
_layout_shift: tuple[mmap.mmap, bytearray] | None = None


def say(word: str, payload: dict) -> None:
    sys.stdout.write(word + json.dumps(payload, allow_nan=False) + "\n")
    sys.stdout.flush()


def serve(config_json: str, commands=None) -> int:
    """Prepare the cell, answer ``commands`` (stdin's lines by default) until ``quit``; the exit code."""
    from benchmarks.cell import CellConfig
    from benchmarks.measure.timing import time_steps
    from benchmarks.worker import classify, prepare

    commands = sys.stdin if commands is None else commands
    config, cell = None, None

    def ready(config_json: str) -> None:
        nonlocal config, cell
        if cell is not None and cell.close:
            cell.close()
        cell = None
        config = CellConfig.from_dict(json.loads(config_json))
        started = time.perf_counter()
        cell = prepare(config)
        build_s = time.perf_counter() - started
        first_step_s = time_steps(cell.step, cell.sync, 1)[0]
        warmup = time_steps(cell.step, cell.sync, max(config.warmup - 1, 0))
        say(READY, {"protocol": PROTOCOL, "pid": os.getpid(), "build_s": build_s, "first_step_s": first_step_s,
                    "warmup_step_s": warmup, "images_per_step": cell.images_per_step,
                    "environment": cell.environment})  # fmt: skip

    try:
        ready(config_json)
        for line in commands:
            words = line.split(maxsplit=1)
            if not words:
                continue
            if words == ["quit"]:
                break
            if words[0] == "cell" and len(words) == 2:
                ready(words[1])
                continue
            words = line.split()
            if len(words) == 2 and words[0] == "step" and words[1].isdigit():
                count = min(int(words[1]), MAX_STEPS_PER_TURN)
                say(STEPS, {"times": time_steps(cell.step, cell.sync, count)})
                continue
            raise ValueError(f"unknown command {line.strip()!r}: expected 'step K', 'cell JSON' or 'quit'")
    except BaseException as error:  # the parent must hear what happened, whatever it was
        if isinstance(error, KeyboardInterrupt):
            raise
        say(FAILED, {"status": classify(error, config), "error": f"{type(error).__name__}: {error}"[:2000],
                     "traceback": traceback.format_exc()[-4000:]})  # fmt: skip
        return 1
    finally:
        if cell is not None and cell.close:
            cell.close()
    return 0


def shift_layout(rng: random.Random | None = None) -> None:
    """Move where this process's next mappings and heap blocks go by a random number of pages.

    A fresh process gets that from address-space randomisation; a forked one would inherit its fork server's
    layout, the same in every child, so a layout that happens to be slow (or fast) would stay with one side for the
    whole comparison instead of being noise that pairs average out. The reservation is never touched: it costs
    address space, not memory.
    """
    global _layout_shift
    rng = rng or random.SystemRandom()
    mapped = mmap.mmap(-1, mmap.PAGESIZE * rng.randint(1, LAYOUT_SHIFT_PAGES))
    _layout_shift = (mapped, bytearray(mmap.PAGESIZE * rng.randint(0, HEAP_SHIFT_PAGES)))


def preload(framework: str) -> float:
    """Import what ``framework``'s cells need (its adapter's ``preload_modules``); the seconds it took."""
    from benchmarks import frameworks

    started = time.perf_counter()
    for module in frameworks.get(framework).preload_modules:
        importlib.import_module(module)
    return time.perf_counter() - started


def fork_server(framework: str) -> int:
    """Import ``framework``'s modules once, then fork a step server for every ``fork {cell json}``; the exit code.

    The child serves on the inherited pipes until it quits; meanwhile this process only waits for it, and then
    says ``ENDED {"code"}``. Nothing is read ahead: the parent sends the next command only after that line.
    """
    try:
        say(READY, {"protocol": PROTOCOL, "fork_server": True, "preload_s": preload(framework)})
    except Exception as error:  # the parent falls back to fresh servers, which report the failure per cell
        say(FAILED, {"status": "failed", "error": f"{type(error).__name__}: {error}"[:2000]})
        return 1
    parent = os.getpid()
    for line in iter(sys.stdin.readline, ""):
        words = line.split(maxsplit=1)
        if words == ["quit"]:
            return 0
        if len(words) != 2 or words[0] != "fork":
            continue  # a stray line: a child that failed may leave its parent's "quit" or "step" behind
        child = os.fork()
        if child == 0:
            code = 1
            try:
                from benchmarks.lifeline import die_with_parent

                die_with_parent(parent)
                shift_layout()
                code = serve(words[1], sys.stdin)
            finally:
                sys.stdout.flush()
                os._exit(code)
        _, status = os.waitpid(child, 0)
        say(ENDED, {"code": os.waitstatus_to_exitcode(status)})
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", help="a throughput cell as JSON (benchmarks.cell.CellConfig)")
    parser.add_argument("--fork-server", metavar="FRAMEWORK", help="import FRAMEWORK once; fork a server per cell")
    args = parser.parse_args(argv)
    if (args.config is None) == (args.fork_server is None):
        parser.error("give one of --config or --fork-server")
    if args.fork_server:
        code = fork_server(args.fork_server)
        sys.stdout.flush()
        os._exit(code)  # it holds nothing to close: skip the interpreter's teardown (1.5 s with TensorFlow loaded)
    return serve(args.config)


if __name__ == "__main__":
    from benchmarks.lifeline import die_with_current_parent

    die_with_current_parent()
    sys.exit(main())
