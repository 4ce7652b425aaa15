"""A framework the suite has never heard of, added through the registry alone.

Named in ``$ALEXNET_BENCH_FRAMEWORKS``, this module registers its adapter in every process that
imports the registry, workers included; no module of the suite changes. It "runs" AlexNet's fully
connected layers as NumPy matrix products, which is enough to be measured like any framework.
"""

from __future__ import annotations

import numpy as np

from benchmarks import frameworks
from benchmarks.cell import CellConfig, PreparedCell
from benchmarks.frameworks.base import Framework
from benchmarks.measure.ceiling import measure_ceiling
from implementations.spec import Dense, infer
from implementations.variants import get_variant


class NumpyDenseLayers(Framework):
    name = "numpy-fake"
    label = "NumPy (fake)"
    colour = "#8c564b"
    marker = "v"
    default_split_impl = "towers"
    packages = ("numpy",)
    install_hint = "pip install numpy"
    fast_paths = ("compiled",)  # here: products written into preallocated buffers
    preload_modules = ("numpy",)  # so that bench.py ab's fork servers are exercised by the fake framework too

    def prepare(self, config: CellConfig) -> PreparedCell:
        arch = get_variant(config.variant)
        rng = np.random.default_rng(config.seed)
        shapes = [
            info.input_shape[0]
            for layer, info in zip(arch.layers, infer(arch), strict=True)
            if isinstance(layer, Dense)
        ]
        widths = [*shapes, arch.classes]
        weights = [
            rng.standard_normal((n, m), dtype=np.float32) * 0.01 for n, m in zip(widths, widths[1:], strict=False)
        ]
        x = rng.standard_normal((config.batch_size, widths[0]), dtype=np.float32)
        buffers = [np.empty((config.batch_size, w.shape[1]), np.float32) for w in weights]

        def step() -> None:
            h = x
            for w, out in zip(weights, buffers, strict=True):
                h = np.maximum(np.matmul(h, w, out=out if config.compiled else None), 0)
            if config.mode == "train":  # a backward pass's products: the gradient through every layer
                gradient = np.ones_like(h)
                for w in reversed(weights):
                    gradient = gradient @ w.T

        def product(size: int, dtype: str):
            a = rng.standard_normal((size, size)).astype(dtype)
            return lambda: a @ a

        return PreparedCell(
            step=step,
            sync=lambda: None,
            images_per_step=config.batch_size,
            environment={"framework": self.name, "numpy": np.__version__, "devices": ["cpu"]},
            ceiling=lambda: measure_ceiling(product, False, config.precision),
        )


frameworks.register(NumpyDenseLayers())
