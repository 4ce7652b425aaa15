"""Realistic results rows and files for report tests, without running a framework.

Rows are made by the suite's own ``ResultRow.from_result`` from a ``CellConfig`` (or a
``TrainConfig`` for accuracy runs), in their JSON form so tests can break them, with figures
computed by the worker's ``summarize`` from per-step times
drawn with a seeded RNG, so they have exactly the layout ``bench.py run`` writes.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np

from benchmarks.accuracy.training import TrainConfig
from benchmarks.cell import CellConfig
from benchmarks.measure.timing import summarize
from benchmarks.results import ResultRow
from implementations.spec import forward_flops
from implementations.variants import get_variant

STARTED = 1_790_000_000.0  # a fixed start time: rows are reproducible
# Images/s loosely after 2-core CPU measurements at batch 32.
RATES = {
    ("torch", "imagenet-single", "infer"): 97.0,
    ("torch", "imagenet-single", "train"): 31.0,
    ("keras", "imagenet-single", "infer"): 185.0,
    ("keras", "imagenet-single", "train"): 31.0,
    ("torch", "imagenet-split", "infer"): 92.0,
    ("torch", "imagenet-split", "train"): 35.0,
    ("keras", "imagenet-split", "infer"): 247.0,
    ("keras", "imagenet-split", "train"): 54.0,
}
DEFAULT_RATE = 60.0


def machine(hostname: str = "bench-a", cpu: str = "AMD EPYC 7B13", gpus: tuple[str, ...] = ()) -> dict:
    """What ``benchmarks.measure.environment.machine_environment`` returns, for a made-up machine."""
    return {
        "hostname": hostname,
        "platform": "Linux-6.1-x86_64-with-glibc2.36",
        "python": "3.11.7",
        "cpu_model": cpu,
        "cpu_count": 2,
        "cpu_affinity": 2,
        "gpus": list(gpus),
        "gpu_driver": "550.54" if gpus else None,
        "gpu_probe": None if gpus else "NVML unavailable: NVML Shared Library Not Found",
        "git": {"commit": "0123456789abcdef0123456789abcdef01234567", "dirty": False},
    }


def step_times(rng: np.random.Generator, median_s: float, steps: int = 30, spread: float = 0.03) -> list[float]:
    """Per-step seconds: log-normal around ``median_s`` with a relative spread."""
    return [float(t) for t in median_s * np.exp(rng.normal(0.0, spread, steps))]


def metrics(
    config: CellConfig,
    times: list[float],
    rss_mib: float = 900.0,
    gpu_peak_mib: float | None = None,
    ceiling_flops_per_s: float | None = None,
    energy_j: float | None = None,
) -> dict:
    """The figures the worker's ``measure`` reports for these step times (``energy_j``: NVML's, over them)."""
    timing = summarize(times, config.batch_size)
    flops_per_image = forward_flops(get_variant(config.variant)) * (3 if config.mode == "train" else 1)
    gpu = config.gpus > 0
    figures = {
        **timing,
        "build_s": 1.5,
        "first_step_s": 3 * timing["median_step_s"],
        "warmup_step_s": times[:2],
        "step_times_s": times,
        "flops_per_image": flops_per_image,
        "flops_note": "forward conv+dense FLOPs from the spec; training counted as 3x forward",
        "achieved_flops_per_s": flops_per_image * timing["images_per_s"],
        "memory": {
            "peak_rss_bytes": int(rss_mib * 2**20),
            "rss_at_start_bytes": 30 * 2**20,
            "rss_what": "worker process resident memory",
            "nvml": {
                "what": "device memory in use (NVML)",
                "available": gpu,
                "error": None if gpu else "NVML unavailable",
                "devices": [
                    {
                        "cuda_index": i,
                        "nvml_index": i,
                        "uuid": f"GPU-{i}",
                        "name": "NVIDIA H100",
                        "used_before_bytes": 500 * 2**20,
                        "peak_used_bytes": int((gpu_peak_mib or 4000) * 2**20),
                    }
                    for i in range(config.gpus)
                ],
            },
            "framework": {"what": "allocator peak", "max_allocated_bytes": [3 * 2**30] * config.gpus} if gpu else None,
        },
        "environment": {"framework": config.framework, config.framework: "9.9.9", "cuda": None, "devices": ["cpu"]},
    }
    if ceiling_flops_per_s is not None:
        figures["ceiling_flops_per_s"] = ceiling_flops_per_s
    if energy_j is not None:  # as benchmarks.worker.measure writes it: over the images of the timed steps
        figures["energy_j"] = energy_j
        figures["energy_per_image_j"] = energy_j / (config.batch_size * len(times))
    return figures


def make_row(config: CellConfig | TrainConfig, result: dict, host: dict, run_id: str) -> dict:
    """The JSON form of the row the runner writes for ``result``."""
    return ResultRow.from_result(config, result, host, run_id, STARTED).to_dict()


def ok_row(config: CellConfig, times: list[float], host: dict | None = None, run_id: str = "run-a", **extra) -> dict:
    """A successful row as the runner writes it."""
    return make_row(config, {"status": "ok", "metrics": metrics(config, times, **extra)}, host or machine(), run_id)


def failed_row(config: CellConfig, status: str = "oom", host: dict | None = None, run_id: str = "run-a") -> dict:
    """A failed row: status and error, no figures."""
    result = {"status": status, "error": "RuntimeError: CUDA out of memory", "traceback": "Traceback ..."}
    return make_row(config, result, host or machine(), run_id)


def rate(config: CellConfig) -> float:
    return RATES.get((config.framework, config.variant, config.mode), DEFAULT_RATE)


def sweep(
    seed: int,
    frameworks: tuple[str, ...] = ("torch", "keras"),
    variants: tuple[str, ...] = ("imagenet-single", "imagenet-split"),
    modes: tuple[str, ...] = ("train", "infer"),
    batch_sizes: tuple[int, ...] = (32,),
    slowdown: float = 1.0,
    steps: int = 30,
    spread: float = 0.03,
    host: dict | None = None,
    repeats: int = 1,
    process_spread: float = 0.0,
    slowed: Callable[[CellConfig], bool] = lambda cell: True,
) -> list[dict]:
    """Rows of a whole sweep; each step time of the cells ``slowed`` picks (all by default) is
    multiplied by ``slowdown`` (1.25: 20% fewer images/s).

    Each repeat is a process whose median is shifted by a log-normal factor of ``process_spread``,
    as thread placement and memory layout shift a whole worker process on a real machine.
    """
    rng = np.random.default_rng(seed)
    rows = []
    for framework in frameworks:
        for variant in variants:
            for mode in modes:
                for batch in batch_sizes:
                    for repeat in range(repeats):
                        impl = "towers" if framework == "keras" else "grouped"
                        config = CellConfig(
                            framework, variant, mode, batch, split_impl=impl, steps=steps, repeat=repeat
                        )
                        shift = float(np.exp(rng.normal(0.0, process_spread))) if process_spread else 1.0
                        times = step_times(rng, shift * batch / rate(config), steps, spread)
                        factor = slowdown if slowed(config) else 1.0
                        rows.append(ok_row(config, [t * factor for t in times], host, run_id=f"run-{seed}"))
    return rows


def accuracy_row(framework: str, top1: list[float], host: dict | None = None, **fields) -> dict:
    """An accuracy run's row (mode 'accuracy'), as ``benchmarks.accuracy`` writes it."""
    config = TrainConfig(framework=framework, epochs=len(top1), **fields)
    curve = [
        {
            "epoch": i + 1,
            "learning_rate": 0.01,
            "train_loss": 2.0 / (i + 1),
            "test_loss": 2.2 / (i + 1),
            "top1": t,
            "top5": min(1.0, t + 0.2),
            "train_images_per_s": 120.0,
            "train_seconds": 10.0 * (i + 1),
        }
        for i, t in enumerate(top1)
    ]
    reached = next((p["train_seconds"] for p in curve if p["top1"] >= config.target_top1), None)
    figures = {
        "top1": top1[-1],
        "top5": curve[-1]["top5"],
        "test_loss": curve[-1]["test_loss"],
        "train_images_per_s": 120.0,
        "train_seconds": curve[-1]["train_seconds"],
        "target_top1": config.target_top1,
        "time_to_target_s": reached,
        "curve": curve,
        "step_losses": [2.0, 1.5],
        "environment": {"framework": framework},
    }
    return make_row(config, {"status": "ok", "metrics": figures}, host or machine(), "acc-run")


def write_rows(path: Path, rows: list[dict]) -> Path:
    """A results file as the runner appends it: one JSON object per line (rows may have been broken on purpose)."""
    with open(path, "a", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, sort_keys=True) + "\n")
    return path


def pytest_benchmark_file(path: Path, seed: int = 0, batch: int = 32) -> Path:
    """A ``pytest --benchmark-json`` file with two benchmarks (seconds per call) and their samples."""
    rng = np.random.default_rng(seed)
    benchmarks = []
    for framework, median in (("torch", 0.4), ("keras", 0.2)):
        data = step_times(rng, median, 20)
        q1, q2, q3 = np.percentile(data, [25, 50, 75])
        benchmarks.append(
            {
                "group": "infer",
                "name": f"test_infer[{framework}]",
                "fullname": f"benchmarks/test_x.py::test_infer[{framework}]",
                "params": {"framework": framework},
                "extra_info": {"variant": "cifar100-split", "mode": "infer", "batch_size": batch},
                "stats": {
                    "min": min(data),
                    "max": max(data),
                    "mean": float(np.mean(data)),
                    "median": float(q2),
                    "q1": float(q1),
                    "q3": float(q3),
                    "iqr": float(q3 - q1),
                    "rounds": len(data),
                    "data": data,
                },
            }
        )
    document = {
        "machine_info": {
            "node": "bench-a",
            "processor": "x86_64",
            "python_version": "3.11.7",
            "cpu": {"brand_raw": "AMD EPYC 7B13"},
        },
        "commit_info": {"id": "0123456789abcdef", "dirty": False},
        "benchmarks": benchmarks,
        "datetime": "2026-11-28T05:00:00+00:00",
        "version": "5.3.1",
    }
    path.write_text(json.dumps(document))
    return path
