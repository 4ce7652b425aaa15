"""The limit next to every figure: the best dense matmul rate of the same framework, device and precision.

A large square matmul is as close to peak as these frameworks get; AlexNet's FLOP/s as a fraction
of it shows how far a configuration is from what the device can do. Each framework supplies only
how to run one product; the size, the dtype and the timing are decided here, once.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

# (size, dtype name) -> a function that computes one product and waits for it.
ProductFactory = Callable[[int, str], Callable[[], object]]


# A smaller product, for the suite's own tests: they check that a ceiling is measured and recorded, not its value,
# and the full-size product costs every test worker about a second. Rows record the size used.
SIZE_VARIABLE = "ALEXNET_BENCH_CEILING_SIZE"


def matmul_size(on_gpu: bool) -> int:
    """Big enough to reach the plateau: 2048 on a CPU (~17 GFLOP per product), 8192 on a GPU; or the size in
    ``ALEXNET_BENCH_CEILING_SIZE``."""
    if size := os.environ.get(SIZE_VARIABLE, "").strip():
        return int(size)
    return 8192 if on_gpu else 2048


def matmul_dtype(precision: str) -> str:
    return "bfloat16" if precision == "bf16" else "float32"


def best_rate(run_once: Callable[[], object], size: int, repeats: int = 5, dtype: str = "float32") -> dict:
    """Best FLOP/s over ``repeats`` timed products (after one untimed), ``run_once`` syncing itself."""
    run_once()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        run_once()
        best = min(best, time.perf_counter() - start)
    return {"ceiling_flops_per_s": 2 * size**3 / best, "ceiling_matmul_size": size, "ceiling_dtype": dtype}


def measure_ceiling(make_product: ProductFactory, on_gpu: bool, precision: str) -> dict:
    """The device's matmul rate in the cell's precision, with a product from ``make_product``."""
    size, dtype = matmul_size(on_gpu), matmul_dtype(precision)
    return best_rate(make_product(size, dtype), size, dtype=dtype)
