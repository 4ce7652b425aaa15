"""The one place where weights change layout between PyTorch and Keras (NumPy only).

- convolution kernels: PyTorch (out, in/groups, kh, kw) <-> Keras (kh, kw, in/groups, out);
- dense kernels: PyTorch (out, in) <-> Keras (in, out);
- the first dense layer after a flatten: PyTorch flattens a (C, H, W) map, Keras an (H, W, C)
  map, so that layer's input columns are permuted as well. Forgetting this is the classic porting
  bug: shapes and parameter counts still agree, only the logits differ.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from implementations.spec import Architecture, Conv, Dense, infer

# Weights per spec layer: {layer name: {"kernel": array, "bias": array}}, towers concatenated
# along the output axis (the grouped layout), in one framework's layout.
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


def _convert(
    weights: LayerWeights,
    arch: Architecture,
    conv_axes: tuple[int, int, int, int],
    dense: Callable[[np.ndarray, tuple[int, int, int] | None], np.ndarray],
) -> LayerWeights:
    """Every layer's kernel re-laid out (conv: transposed by ``conv_axes``; dense: by ``dense``)."""
    flattened = flattened_map_shapes(arch)
    converted: LayerWeights = {}
    for layer in arch.layers:
        if layer.name not in weights:
            continue
        kernel, bias = weights[layer.name]["kernel"], weights[layer.name]["bias"]
        if isinstance(layer, Conv):
            kernel = kernel.transpose(*conv_axes)
        elif isinstance(layer, Dense):
            kernel = dense(kernel, flattened.get(layer.name))
        converted[layer.name] = {"kernel": np.ascontiguousarray(kernel), "bias": bias.copy()}
    return converted


def torch_to_keras(weights: LayerWeights, arch: Architecture) -> LayerWeights:
    """PyTorch-layout weights (``AlexNet.export_weights``) to Keras layout (``load_weights``)."""

    def dense(kernel: np.ndarray, chw: tuple[int, int, int] | None) -> np.ndarray:
        return (chw_to_hwc_columns(kernel, chw) if chw else kernel).T

    return _convert(weights, arch, (2, 3, 1, 0), dense)


def keras_to_torch(weights: LayerWeights, arch: Architecture) -> LayerWeights:
    """Keras-layout weights (``keras_alexnet.export_weights``) to PyTorch layout."""

    def dense(kernel: np.ndarray, chw: tuple[int, int, int] | None) -> np.ndarray:
        return hwc_to_chw_columns(kernel.T, chw) if chw else kernel.T

    return _convert(weights, arch, (3, 2, 0, 1), dense)
