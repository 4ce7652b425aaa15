"""``bench.py check-model`` runs the user's port in a child process, bounded in time (``benchmarks.process``).

The factory is the user's code: it may never return, call ``sys.exit``, crash the interpreter or fill stderr with a
framework's log lines. In a child it can do none of that to the command: past ``--timeout`` the child's process
group is killed, an exit without the one ``RESULT`` line is an error, not a pass, and the child's stderr is never
passed on. The child checks the port (``implementations.check_model``) and hands back the report as JSON.
"""

from __future__ import annotations

import json
import os
import sys

from benchmarks.process import ROOT, failure_from_exit, read_result, run_bounded, write_result
from implementations.check_model import CheckModelError, CheckReport, check_model
from implementations.variants import get_variant


def check_in_child(target: str, variant: str, seed: int, rtol: float, timeout_s: float) -> CheckReport:
    """The report of ``check_model(target, variant)`` run in a child process from this folder; any ending without
    one (the time limit, an exit, a crash) is a :class:`CheckModelError` in one line."""
    config = {"target": target, "variant": variant, "seed": seed, "rtol": rtol, "cwd": os.getcwd()}
    env = {
        **os.environ,
        "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "3"),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    ended = run_bounded([sys.executable, "-m", "benchmarks.check_model_worker", json.dumps(config)], env, timeout_s)
    if ended.returncode is None:
        raise CheckModelError(
            f"no verdict on {target} within {timeout_s:g} s (--timeout): its factory or its model did not finish; "
            "the check was stopped"
        )
    result = read_result(ended.stdout)
    if result is None:
        raise CheckModelError(f"the check of {target} ended without a verdict: {_why_no_verdict(ended)}")
    if result["status"] != "ok":
        raise CheckModelError(result["error"])
    return CheckReport.from_dict(result["report"])


def _why_no_verdict(ended) -> str:
    if ended.returncode == 0:
        return "its process exited with code 0 before the check was done (does the factory call sys.exit?)"
    if ended.returncode < 0:
        return failure_from_exit(ended.returncode, "")[1].replace("worker", "its process")
    last = (ended.stderr.strip().splitlines() or ["no output"])[-1].strip()
    return f"its process exited with code {ended.returncode}: {last[:300]}"


def main(argv: list[str] | None = None) -> int:
    config = json.loads((argv if argv is not None else sys.argv[1:])[0])
    os.chdir(config["cwd"])  # the user's paths and packages are relative to where they ran the command
    try:
        report = check_model(config["target"], get_variant(config["variant"]), seed=config["seed"], rtol=config["rtol"])
        result = {"status": "ok", "report": report.to_dict()}
    except CheckModelError as error:
        result = {"status": "failed", "error": str(error)}
    except Exception as error:  # noqa: BLE001 - the user's model broke the check: said in one line, not a traceback
        result = {"status": "failed", "error": f"checking {config['target']} failed: {type(error).__name__}: {error}"}
    write_result(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
