"""The one place where weights change layout between PyTorch and Keras (NumPy only).

- convolution kernels: PyTorch (out, in/groups, kh, kw) <-> Keras (kh, kw, in/groups, out);
- dense kernels: PyTorch (out, in) <-> Keras (in, out);
- the first dense layer after a flatten: PyTorch flattens a (C, H, W) map, Keras an (H, W, C)
  map, so that layer's input columns are permuted as well. Forgetting this is the classic porting
  bug: shapes and parameter counts still agree, only the logits differ.
"""

from __future__ import annotations

import numpy as np

from implementations.spec import Architecture, Conv, Dense, infer

LayerWeights = dict[str, dict[str, np.ndarray]]


def flattened_map_shapes(arch: Architecture) -> dict[str, tuple[int, int, int]]:
    """For each dense layer fed by a flattened (C, H, W) map, that map's shape."""
    shapes, last_map = {}, None
    for layer, info in zip(arch.layers, infer(arch), strict=True):
        if len(info.input_shape) == 3:
            last_map = info.input_shape
        if isinstance(layer, Dense) and last_map is not None:
            shapes[layer.name] = last_map
            last_map = None
    return shapes


def chw_to_hwc_columns(kernel: np.ndarray, chw: tuple[int, int, int]) -> np.ndarray:
    """Reorder a PyTorch (out, C*H*W) dense kernel's columns to (out, H*W*C) order."""
    c, h, w = chw
    out = kernel.shape[0]
    return kernel.reshape(out, c, h, w).transpose(0, 2, 3, 1).reshape(out, h * w * c)


def hwc_to_chw_columns(kernel: np.ndarray, chw: tuple[int, int, int]) -> np.ndarray:
    """Inverse of :func:`chw_to_hwc_columns`."""
    c, h, w = chw
    out = kernel.shape[0]
    return kernel.reshape(out, h, w, c).transpose(0, 3, 1, 2).reshape(out, c * h * w)


def torch_to_keras(weights: LayerWeights, arch: Architecture) -> LayerWeights:
    """PyTorch-layout weights (``AlexNet.export_weights``) to Keras layout (``load_weights``)."""
    flattened = flattened_map_shapes(arch)
    converted: LayerWeights = {}
    for layer in arch.layers:
        if layer.name not in weights:
            continue
        kernel, bias = weights[layer.name]["kernel"], weights[layer.name]["bias"]
        if isinstance(layer, Conv):
            kernel = kernel.transpose(2, 3, 1, 0)
        elif isinstance(layer, Dense):
            if layer.name in flattened:
                kernel = chw_to_hwc_columns(kernel, flattened[layer.name])
            kernel = kernel.T
        converted[layer.name] = {"kernel": np.ascontiguousarray(kernel), "bias": bias.copy()}
    return converted


def keras_to_torch(weights: LayerWeights, arch: Architecture) -> LayerWeights:
    """Keras-layout weights (``keras_alexnet.export_weights``) to PyTorch layout."""
    flattened = flattened_map_shapes(arch)
    converted: LayerWeights = {}
    for layer in arch.layers:
        if layer.name not in weights:
            continue
        kernel, bias = weights[layer.name]["kernel"], weights[layer.name]["bias"]
        if isinstance(layer, Conv):
            kernel = kernel.transpose(3, 2, 0, 1)
        elif isinstance(layer, Dense):
            kernel = kernel.T
            if layer.name in flattened:
                kernel = hwc_to_chw_columns(kernel, flattened[layer.name])
        converted[layer.name] = {"kernel": np.ascontiguousarray(kernel), "bias": bias.copy()}
    return converted
