"""The worker: measures one cell in its own process and prints one JSON result line.

Run by the runner as ``python -m benchmarks.worker --config '<json>'`` (under torchrun for
PyTorch data-parallel cells). It imports exactly one framework. The result is the last stdout
line starting with ``RESULT `` (``benchmarks.process``, the protocol every child speaks);
everything else on stdout/stderr is the frameworks' chatter.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback

from benchmarks import frameworks
from benchmarks.cell import CellConfig, PreparedCell
from benchmarks.lifeline import die_with_current_parent
from benchmarks.measure.environment import cpu_run_settings
from benchmarks.measure.machine_load import LoadMeter
from benchmarks.measure.memory import NvmlSampler, current_rss_bytes, peak_rss_bytes
from benchmarks.measure.timing import summarize, time_by_budget, time_steps
from benchmarks.multinode import is_reporter, peer_lost, topology
from benchmarks.process import RESULT_PREFIX, write_result  # noqa: F401  RESULT_PREFIX: benchmarks.accuracy.parity's
from implementations.spec import forward_flops
from implementations.variants import get_variant

OOM_MARKERS = ("out of memory", "can't allocate memory", "cannot allocate memory", "resourceexhausted", "oom when")


def prepare(config: CellConfig) -> PreparedCell:
    """The framework's prepared cell: model, data and step on the cell's devices."""
    return frameworks.get(config.framework).prepare(config)


def measure(config: CellConfig) -> tuple[dict, bool]:
    """Warm up, then time steps with memory sampling; (figures, is_reporter).

    ``config.steps`` steps, or with a time budget at least that many, until the median is
    within ``config.target_precision`` or the budget is spent (``benchmarks.measure.timing``).
    The memory and energy figures are read right after the timed steps, before the ceiling's
    large matmul (three 8192^2 fp32 matrices: 768 MiB) can reach the allocator's peak.
    """
    rss_start = current_rss_bytes()
    started = time.perf_counter()
    cell = prepare(config)
    build_s = time.perf_counter() - started
    try:
        return _measure_prepared(config, cell, build_s, rss_start)
    finally:
        if cell.close:
            cell.close()  # e.g. leave the process group: a finished cell must not hang into a timeout


def _measure_prepared(
    config: CellConfig, cell: PreparedCell, build_s: float, rss_start: int | None
) -> tuple[dict, bool]:
    first_step_s = time_steps(cell.step, cell.sync, 1)[0]  # compilation, tracing, autotuning
    warmup_times = time_steps(cell.step, cell.sync, max(config.warmup - 1, 0))
    if cell.reset_peak_memory:
        cell.reset_peak_memory()
    with NvmlSampler() as nvml, LoadMeter() as load:
        if config.time_budget_s > 0:
            step_times, budget = time_by_budget(
                cell.step,
                cell.sync,
                config.steps,
                config.time_budget_s,
                config.target_precision,
                agreement=cell.stop_agreement,
            )
        else:
            step_times, budget = time_steps(cell.step, cell.sync, config.steps), {"steps_taken": config.steps}
    memory = {
        "peak_rss_bytes": peak_rss_bytes(),
        "rss_at_start_bytes": rss_start,
        "rss_what": "worker process resident memory, peak over its life (includes the framework runtime)",
        "nvml": nvml.report(),
        "framework": cell.framework_memory() if cell.framework_memory else None,
    }
    timing = summarize(step_times, cell.images_per_step)
    energy_j = nvml.energy_j()
    images = cell.images_per_step * len(step_times)
    energy = {"energy_j": energy_j, "energy_per_image_j": energy_j / images if energy_j is not None else None}
    flops_per_image = forward_flops(get_variant(config.variant)) * (3 if config.mode == "train" else 1)
    achieved = flops_per_image * timing["images_per_s"]
    ceiling = cell.ceiling() if cell.ceiling else {}
    if ceiling:
        # Several devices: the ceiling is one device's, so the fraction is per device that computes (simulated
        # devices share one).
        ceiling["fraction_of_ceiling"] = achieved / config.physical_devices / ceiling["ceiling_flops_per_s"]
        ceiling["ceiling_math_mode"] = config.math_mode
    figures = {
        **timing,
        "build_s": build_s,
        "first_step_s": first_step_s,
        "warmup_step_s": warmup_times,
        "step_times_s": step_times,
        "timing_budget": budget,
        # Other processes' CPU time and steal over the timed steps; a multi-process cell counts its other ranks too.
        "machine_load": {
            **load.report(),
            "processes_in_cell": config.devices_per_node if config.parallel == "data" else 1,
        },
        "flops_per_image": flops_per_image,
        "flops_note": "forward conv+dense FLOPs from the spec; training counted as 3x forward",
        "achieved_flops_per_s": achieved,
        **ceiling,
        **energy,
        "math_mode": config.math_mode,
        "memory": memory,
        # The worker's own thread variables, allocator and affinity: launchers (torchrun, run_cpu) set some.
        "environment": {**cell.environment, "cpu_run_settings": cpu_run_settings()},
    }
    if config.nodes > 1:
        figures["distributed"] = topology(config, os.environ)
        return figures, is_reporter(config, os.environ)
    return figures, cell.is_reporter


def classify(error: BaseException, config: CellConfig | None = None) -> str:
    if config is not None and peer_lost(error, config):
        return "timeout"  # another node died or stopped answering mid-cell
    text = f"{type(error).__name__} {error}".lower()
    if isinstance(error, MemoryError) or any(marker in text for marker in OOM_MARKERS):
        return "oom"
    return "failed"


def apply_memory_limit(limit_bytes: int | None) -> None:
    """Cap this process's data segment, so a cell that needs more fails as out of memory."""
    if limit_bytes:
        import resource

        resource.setrlimit(resource.RLIMIT_DATA, (limit_bytes, limit_bytes))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    job = parser.add_mutually_exclusive_group(required=True)
    job.add_argument("--config", help="a throughput cell as JSON (see benchmarks.cell.CellConfig)")
    job.add_argument("--train", help="an accuracy run as JSON (see benchmarks.accuracy.training.TrainConfig)")
    parser.add_argument("--memory-limit-bytes", type=int, default=None)
    parser.add_argument("--selfcheck", action="store_true", help="with --config: harness overhead vs a bare loop")
    args = parser.parse_args(argv)
    reporter = int(os.environ.get("RANK", "0")) == 0
    config = None
    try:
        apply_memory_limit(args.memory_limit_bytes)
        if args.train:
            from benchmarks.accuracy.job import train
            from benchmarks.accuracy.training import TrainConfig

            figures = train(TrainConfig.from_dict(json.loads(args.train)))
        elif args.selfcheck:
            from benchmarks.measure.selfcheck import measure_overhead

            figures = measure_overhead(CellConfig.from_dict(json.loads(args.config)))
        else:
            config = CellConfig.from_dict(json.loads(args.config))
            reporter = is_reporter(config, os.environ)
            figures, reporter = measure(config)
        result = {"status": "ok", "metrics": figures}
    except BaseException as error:  # the row must say what happened, whatever it was
        if isinstance(error, KeyboardInterrupt):
            raise
        result = {
            "status": classify(error, config),
            "error": f"{type(error).__name__}: {error}"[:2000],
            "traceback": traceback.format_exc()[-4000:],
        }
    if reporter:
        write_result(result)
    return 0 if result["status"] == "ok" else 1


if __name__ == "__main__":
    die_with_current_parent()  # under torchrun the runner's own link reaches torchrun only, not its ranks
    sys.exit(main())
