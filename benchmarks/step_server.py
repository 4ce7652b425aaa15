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

Between commands it only waits on the pipe, so it never runs while the other side runs. A failure answers
``FAILED {"status", "error"}`` and exits 1. Every protocol line starts with its word; everything else on stdout is
the frameworks' chatter, which the parent skips. ``benchmarks.paired`` detects the protocol in a tree by this
file's presence (it never runs a base's code to find out) and the protocol version in ``READY``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import traceback

PROTOCOL = 2
READY, STEPS, FAILED = "READY ", "STEPS ", "FAILED "
MAX_STEPS_PER_TURN = 10_000


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
        say(READY, {"protocol": PROTOCOL, "build_s": build_s, "first_step_s": first_step_s,
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", required=True, help="a throughput cell as JSON (benchmarks.cell.CellConfig)")
    args = parser.parse_args(argv)
    return serve(args.config)


if __name__ == "__main__":
    from benchmarks.lifeline import die_with_current_parent

    die_with_current_parent()
    sys.exit(main())
