"""Initial weights drawn once in NumPy, in PyTorch layout, so both frameworks start identically.

Both frameworks' default initialisers differ (PyTorch: Kaiming-uniform; Keras: Glorot-uniform),
so cross-framework training comparisons load the same arrays into both models instead.
"""

from __future__ import annotations

import numpy as np

from implementations.spec import Architecture, Conv, Dense, infer
from implementations.weight_mapping import LayerWeights

SCHEMES = ("torch-default", "paper")

# Paper section 5: biases of conv2, conv4, conv5 and the hidden fully connected layers are 1
# ("accelerates the early stages of learning by providing the ReLUs with positive inputs").
PAPER_UNIT_BIAS = frozenset({"conv2", "conv4", "conv5", "fc6", "fc7"})


def _shapes(arch: Architecture) -> dict[str, tuple[tuple[int, ...], int]]:
    """(kernel shape in PyTorch layout, fan-in) per weight layer."""
    shapes = {}
    for layer, info in zip(arch.layers, infer(arch), strict=True):
        if isinstance(layer, Conv):
            per_tower = info.input_shape[0] // layer.towers
            shapes[layer.name] = ((layer.filters, per_tower, layer.kernel, layer.kernel), per_tower * layer.kernel**2)
        elif isinstance(layer, Dense):
            shapes[layer.name] = ((layer.units, info.input_shape[0]), info.input_shape[0])
    return shapes


def initial_weights(arch: Architecture, seed: int = 0, scheme: str = "torch-default") -> LayerWeights:
    """Weights for ``arch``: ``torch-default`` is PyTorch's own reset_parameters distribution
    (uniform in +-1/sqrt(fan_in) for kernels and biases); ``paper`` is N(0, 0.01) kernels with
    biases 1 in conv2, conv4, conv5, fc6, fc7 and 0 elsewhere."""
    if scheme not in SCHEMES:
        raise ValueError(f"unknown initialisation {scheme!r}; choose from {', '.join(SCHEMES)}")
    rng = np.random.default_rng(seed)
    weights: LayerWeights = {}
    for name, (shape, fan_in) in _shapes(arch).items():
        if scheme == "paper":
            kernel = rng.normal(0.0, 0.01, shape)
            bias = np.full(shape[0], 1.0 if name in PAPER_UNIT_BIAS else 0.0)
        else:
            bound = 1.0 / np.sqrt(fan_in)
            kernel = rng.uniform(-bound, bound, shape)
            bias = rng.uniform(-bound, bound, shape[0])
        weights[name] = {"kernel": kernel.astype(np.float32), "bias": bias.astype(np.float32)}
    return weights
