"""Both frameworks' LRN against the paper's formula, including the per-tower grouping."""

import keras
import numpy as np
import pytest
import torch
from lrn_reference import paper_lrn

from implementations.keras_alexnet import LocalResponseNormalization
from implementations.torch_alexnet import LocalResponseNorm

# Large activations so the alpha term matters: with unit inputs it is ~1e-4 of k and hides bugs.
RNG = np.random.default_rng(0)
X_NCHW = (RNG.standard_normal((2, 12, 5, 4)) * 30).astype(np.float32)
PAPER = {"size": 5, "alpha": 1e-4, "beta": 0.75, "k": 2.0}


@pytest.mark.parametrize("groups", [1, 2])
def test_torch_lrn_matches_paper(groups):
    out = LocalResponseNorm(**PAPER, groups=groups)(torch.from_numpy(X_NCHW)).numpy()
    np.testing.assert_allclose(out, paper_lrn(X_NCHW, groups=groups), rtol=1e-5)


@pytest.mark.parametrize("groups", [1, 2])
def test_keras_lrn_matches_paper(groups):
    x = X_NCHW.transpose(0, 2, 3, 1)
    out = np.asarray(LocalResponseNormalization(**PAPER, groups=groups)(x))
    np.testing.assert_allclose(out, paper_lrn(x, groups=groups, channel_axis=-1), rtol=1e-5)


@pytest.mark.parametrize("groups", [1, 2])
def test_keras_generic_backend_path_matches_paper(groups):
    """The keras.ops formula used on JAX or torch backends, checked here on TensorFlow tensors."""
    x = X_NCHW.transpose(0, 2, 3, 1)
    layer = LocalResponseNormalization(**PAPER, groups=groups)
    grouped = x.reshape(2, 5, 4 * groups, 12 // groups)
    out = np.asarray(layer._generic(grouped)).reshape(x.shape)
    np.testing.assert_allclose(out, paper_lrn(x, groups=groups, channel_axis=-1), rtol=1e-5)


def test_grouping_changes_the_result_at_the_tower_boundary():
    """Proves the grouped tests can fail: only channels near the boundary (5, 6) differ."""
    whole, towers = paper_lrn(X_NCHW, groups=1), paper_lrn(X_NCHW, groups=2)
    differs = np.abs(whole - towers).max(axis=(0, 2, 3)) > 1e-6
    assert set(np.flatnonzero(differs)) == {4, 5, 6, 7}


def test_torch_builtin_with_paper_alpha_is_five_times_weaker():
    """nn.LocalResponseNorm divides alpha by n: copying alpha=1e-4 into it (as Caffe ports do) is wrong."""
    naive = torch.nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=2.0)(torch.from_numpy(X_NCHW)).numpy()
    assert not np.allclose(naive, paper_lrn(X_NCHW), rtol=1e-5)
    np.testing.assert_allclose(naive, paper_lrn(X_NCHW, alpha=1e-4 / 5), rtol=1e-5)


@pytest.fixture
def mixed_bfloat16():
    """Keras' global policy set to mixed_bfloat16 for one test, then restored."""
    previous = keras.mixed_precision.dtype_policy()
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    yield
    keras.mixed_precision.set_global_policy(previous)


@pytest.mark.parametrize("path", ["tensorflow", "generic"])
def test_keras_lrn_computes_in_float32_under_mixed_bfloat16(mixed_bfloat16, path):
    """TensorFlow has no bf16 LRN kernel (the call raised); in bf16 the generic formula errs by ~1e-2."""
    layer = LocalResponseNormalization(**PAPER, groups=2)
    if path == "generic":
        layer._tensorflow = layer._generic  # the keras.ops path the JAX and torch backends take
    x = keras.ops.cast(X_NCHW.transpose(0, 2, 3, 1), "bfloat16")
    out = layer(x)
    assert layer.compute_dtype == "float32"
    assert keras.backend.standardize_dtype(out.dtype) == "float32"
    x_seen = keras.ops.convert_to_numpy(keras.ops.cast(x, "float32"))
    np.testing.assert_allclose(keras.ops.convert_to_numpy(out), paper_lrn(x_seen, groups=2, channel_axis=-1), rtol=1e-5)


def test_keras_lrn_keeps_an_explicit_dtype_and_still_normalises_in_float32(mixed_bfloat16):
    layer = LocalResponseNormalization(**PAPER, dtype="mixed_bfloat16")
    x = keras.ops.cast(X_NCHW.transpose(0, 2, 3, 1), "bfloat16")
    out = layer(x)
    assert keras.backend.standardize_dtype(out.dtype) == "bfloat16"
    x_seen = keras.ops.convert_to_numpy(keras.ops.cast(x, "float32"))
    expected = paper_lrn(x_seen, channel_axis=-1)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(keras.ops.cast(out, "float32")), expected, rtol=1e-2)
