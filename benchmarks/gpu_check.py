"""The GPU check: one prepared run of every GPU path on one GPU, in under 8 minutes, then one table.

It covers PyTorch in strict fp32, TF32 and bf16, channels_last, torch.compile and CUDA graphs; Keras on JAX and
on torch; CIFAR-100 and ImageNet; both split formulations; and the two-GPU code on one GPU
(``--simulate-devices 2 --gpus 1``: both towers, or two data-parallel ranks, on cuda:0). Each part
is one ``bench.py run`` into one results file; a framework that is not installed is skipped with a
line saying so, and the check exits 0 with whatever ran. The table: img/s, the fraction of the
device's matmul ceiling in the same math mode, allocator and NVML memory peaks, and energy per image.

    python -m benchmarks.gpu_check [--dry-run] [--results FILE]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import sysconfig
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from benchmarks import frameworks

BUDGET_S = 7 * 60  # parts not started by then are skipped, so the check ends within 8 minutes
CELL_TIMEOUT_S = 150  # one cell; torch.compile and XLA need about a minute on a large GPU
COMMON = ("--gpus", "1", "--repeats", "1", "--steps", "10", "--warmup", "3", "--time-budget", "1", "--no-report")
IMAGENET = ("-v", "imagenet-single", "-v", "imagenet-split")
BOTH_SPLITS = ("--split-impl", "grouped", "--split-impl", "towers")


def compile_toolchain_missing() -> str | None:
    """Why torch.compile cannot build its kernels here, or None: Triton (GPU) and Inductor's C++ path (CPU) compile
    with the system's C compiler against Python's headers, which a bare GPU image often lacks."""
    absent = [] if any(shutil.which(name) for name in ("cc", "gcc", "clang")) else ["a C compiler (cc, gcc or clang)"]
    if not (Path(sysconfig.get_paths()["include"]) / "Python.h").is_file():
        absent.append("Python's headers (Python.h)")
    if not absent:
        return None
    return f"torch.compile needs {' and '.join(absent)}, which this machine lacks (e.g. apt install gcc python3-dev)"


@dataclass(frozen=True)
class Part:
    """One ``bench.py run`` of the check: what it shows, the framework it needs, its options, and what else it
    needs of the machine (a reason it cannot run here, or None)."""

    what: str
    framework: str
    options: tuple[str, ...]
    requires: Callable[[], str | None] = lambda: None

    def command(self, results: Path) -> list[str]:
        return [
            sys.executable,
            "bench.py",
            "run",
            "-f",
            self.framework,
            *COMMON,
            *self.options,
            "--results",
            str(results),
        ]


# In the order of what matters most when device time is short: the two-rank and two-tower paths (a hang there
# wastes the whole loan), the math modes, the Keras backends, the fast paths, then breadth.
PARTS = (
    Part(
        "two ranks / two towers on one GPU", "torch", (*IMAGENET, "-m", "train", "-b", "128", "--simulate-devices", "2")
    ),  # fmt: skip
    Part("torch strict fp32", "torch", (*IMAGENET, "-m", "train", "-b", "128", "--math-mode", "fp32")),
    Part("torch TF32", "torch", (*IMAGENET, "-m", "train", "-b", "128", "--math-mode", "tf32")),
    Part("torch bf16", "torch", (*IMAGENET, "-m", "train", "-b", "128", "--precision", "bf16")),
    Part("Keras on torch", "keras-torch", (*IMAGENET, "-v", "cifar100-single", "-m", "train", "-b", "128")),
    Part("Keras on JAX", "keras-jax", (*IMAGENET, "-v", "cifar100-single", "-m", "train", "-b", "128")),
    Part("torch channels_last", "torch", ("-v", "imagenet-single", "-m", "train", "-b", "128", "--channels-last")),
    Part(
        "torch compile",
        "torch",
        ("-v", "imagenet-single", "-m", "train", "-b", "128", "--compile"),
        compile_toolchain_missing,
    ),
    # Launch-bound where graphs help most: the small CIFAR-100 network as well as ImageNet's, training and inference.
    Part(
        "torch CUDA graphs",
        "torch",
        ("-v", "imagenet-single", "-v", "cifar100-single", "-b", "128", "--cuda-graphs"),
    ),
    Part(
        "torch TF32, both datasets and split formulations",
        "torch",
        (*IMAGENET, "-v", "cifar100-single", "-v", "cifar100-split", *BOTH_SPLITS, "-m", "infer", "-b", "128"),
    ),  # fmt: skip
    Part("Keras on TensorFlow", "keras", (*IMAGENET, "-m", "train", "-b", "128")),
)


def plan(parts: tuple[Part, ...] = PARTS) -> tuple[list[Part], list[str]]:
    """(parts whose framework is installed, one line per part skipped and why)."""
    runnable, skipped = [], []
    for part in parts:
        reason = frameworks.get(part.framework).missing() or part.requires()
        if reason:
            skipped.append(f"skipped {part.what}: {reason}")
        else:
            runnable.append(part)
    return runnable, skipped


def table(results: Path) -> str:
    """One line per cell: img/s, fraction of the same-mode ceiling, memory peaks (MiB) and energy per image."""
    import pandas as pd

    from benchmarks.results import read_results

    lines = []
    for row in read_results(results).rows:
        cell, metrics = row.cell, row.metrics or {}
        memory = metrics.get("memory") or {}
        allocator = memory.get("framework") or {}
        peaks = next((v for k, v in allocator.items() if k != "what" and isinstance(v, list)), [])
        nvml = [d.get("peak_used_bytes") for d in (memory.get("nvml") or {}).get("devices", [])]
        lines.append(
            {
                "framework": cell["framework"],
                "variant": cell["variant"],
                "impl": cell.get("split_impl"),
                "mode": cell["mode"],
                "math": cell.get("math_mode") or cell.get("precision", "fp32"),
                "extra": "+".join(k for k in ("compiled", "channels_last", "cuda_graphs") if cell.get(k)) or "",
                "setup": row.device_setup,
                "status": row.status,
                "img/s": metrics.get("images_per_s"),
                "of ceiling": metrics.get("fraction_of_ceiling"),
                "alloc MiB": max((p for p in peaks if p), default=0) / 2**20 or None,
                "NVML MiB": max((p for p in nvml if p), default=0) / 2**20 or None,
                "J/img": metrics.get("energy_per_image_j"),
            }
        )
    if not lines:
        return "no rows"
    return pd.DataFrame(lines).to_string(index=False, float_format=lambda v: f"{v:,.3g}", na_rep="—")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", type=Path, default=Path("results/gpu_check.jsonl"))
    parser.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    args = parser.parse_args(argv)
    parts, skipped = plan()
    for line in skipped:
        print(line, flush=True)
    if args.dry_run:
        for part in parts:
            print(" ".join(part.command(args.results)))
        return 0
    args.results.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    for part in parts:
        left = BUDGET_S - (time.monotonic() - started)
        if left < 30:
            print(f"skipped {part.what}: the check's {BUDGET_S} s budget is spent", flush=True)
            continue
        print(f"== {part.what}", flush=True)
        command = [*part.command(args.results), "--cell-timeout", str(CELL_TIMEOUT_S)]
        try:
            code = subprocess.run(command, timeout=left, check=False).returncode
        except subprocess.TimeoutExpired:
            code = "timeout"
        if code != 0:
            print(f"{part.what}: bench.py exited {code}; its rows are in the table", flush=True)
    print(table(args.results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
