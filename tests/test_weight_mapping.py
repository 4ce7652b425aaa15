"""The PyTorch <-> Keras weight layout mapping, checked on arrays and on a real flatten."""

import numpy as np

from implementations.variants import get_variant
from implementations.weight_mapping import (
    chw_to_hwc_columns,
    flattened_map_shapes,
    hwc_to_chw_columns,
    keras_to_torch,
    torch_to_keras,
)

RNG = np.random.default_rng(1)


def test_flatten_column_permutation_preserves_the_dense_output():
    """W @ flatten_CHW(x) must equal W' @ flatten_HWC(x) for the permuted W'."""
    c, h, w, out = 4, 3, 2, 5
    x = RNG.standard_normal((c, h, w))
    kernel = RNG.standard_normal((out, c * h * w))
    expected = kernel @ x.reshape(-1)
    permuted = chw_to_hwc_columns(kernel, (c, h, w))
    np.testing.assert_allclose(permuted @ x.transpose(1, 2, 0).reshape(-1), expected)
    assert not np.allclose(kernel @ x.transpose(1, 2, 0).reshape(-1), expected)
    np.testing.assert_array_equal(hwc_to_chw_columns(permuted, (c, h, w)), kernel)


def test_only_the_dense_layer_after_flatten_is_permuted():
    assert flattened_map_shapes(get_variant("cifar100-split")) == {"fc6": (256, 3, 3)}
    assert flattened_map_shapes(get_variant("imagenet-single")) == {"fc6": (256, 6, 6)}


def _random_torch_weights(arch_name):
    from implementations.torch_alexnet import build_torch_model

    return build_torch_model(get_variant(arch_name)).export_weights()


def test_round_trip_is_identity_and_layouts_are_keras():
    arch = get_variant("cifar100-split")
    weights = _random_torch_weights("cifar100-split")
    keras_layout = torch_to_keras(weights, arch)
    assert keras_layout["conv2"]["kernel"].shape == (5, 5, 48, 256)  # (kh, kw, in/groups, out)
    assert keras_layout["fc6"]["kernel"].shape == (2304, 4096)
    back = keras_to_torch(keras_layout, arch)
    for name, arrays in weights.items():
        for key, value in arrays.items():
            np.testing.assert_array_equal(back[name][key], value)
