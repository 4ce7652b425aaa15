"""Both frameworks' LRN against the paper's formula, including the per-tower grouping."""

import keras
import numpy as np
import pytest
import torch
from lrn_reference import paper_lrn

from implementations.keras_alexnet import LocalResponseNormalization
from implementations.torch_alexnet import LocalResponseNorm, lrn_avg_pool, lrn_window_sum

# Large activations so the alpha term matters: with unit inputs it is ~1e-4 of k and hides bugs.
RNG = np.random.default_rng(0)
X_NCHW = (RNG.standard_normal((2, 12, 5, 4)) * 30).astype(np.float32)
PAPER = {"size": 5, "alpha": 1e-4, "beta": 0.75, "k": 2.0}


@pytest.mark.parametrize("deterministic", [False, True])
@pytest.mark.parametrize("groups", [1, 2])
def test_torch_lrn_matches_paper(groups, deterministic):
    """Both formulations: the CPU's default and the deterministic one."""
    previous = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(deterministic)
    try:
        out = LocalResponseNorm(**PAPER, groups=groups)(torch.from_numpy(X_NCHW)).numpy()
    finally:
        torch.use_deterministic_algorithms(previous)
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


def autograd_node_names(output: torch.Tensor) -> set[str]:
    """Names of every backward node that computing ``output``'s gradient would run."""
    names, stack, seen = set(), [output.grad_fn], set()
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        names.add(type(node).__name__)
        stack.extend(next_node for next_node, _ in node.next_functions)
    return names


@pytest.mark.parametrize("shape", [(2, 12, 5, 4), (4, 48, 15, 15)])
def test_torch_window_sum_agrees_with_the_builtin_forward_and_backward(shape):
    """The deterministic formulation changes no number that parity or training sees (float32)."""
    x = (torch.from_numpy(np.random.default_rng(1).standard_normal(shape)) * 30).float()
    grad_out = torch.from_numpy(np.random.default_rng(2).standard_normal(shape)).float()
    results = {}
    for formulation in (lrn_avg_pool, lrn_window_sum):
        xx = x.clone().requires_grad_()
        out = formulation(xx, **PAPER)
        out.backward(grad_out)
        results[formulation.__name__] = (out.detach(), xx.grad)
    for new, old in zip(results["lrn_window_sum"], results["lrn_avg_pool"], strict=True):
        assert (new - old).abs().max() / old.abs().max() <= 1e-6
        torch.testing.assert_close(new, old, rtol=1e-6, atol=1e-6 * old.abs().max().item())


@pytest.mark.parametrize("groups", [1, 2])
def test_torch_lrn_avoids_avg_pool3d_off_the_cpu_and_when_deterministic(groups):
    """avg_pool3d's CUDA backward is refused under torch.use_deterministic_algorithms(True).

    A meta tensor stands in for a CUDA one: it builds the same autograd graph on any host.
    """
    lrn = LocalResponseNorm(**PAPER, groups=groups)
    on_cpu = torch.from_numpy(X_NCHW).requires_grad_()
    assert "AvgPool3DBackward0" in autograd_node_names(lrn(on_cpu))  # the check can fail
    off_cpu = torch.empty(X_NCHW.shape, device="meta", requires_grad=True)
    assert not any("AvgPool" in name for name in autograd_node_names(lrn(off_cpu)))
    deterministic = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        names = autograd_node_names(lrn(on_cpu))
    finally:
        torch.use_deterministic_algorithms(deterministic)
    assert not any("AvgPool" in name for name in names), names


def test_torch_alexnet_training_graph_off_the_cpu_is_free_of_avg_pool():
    from implementations.torch_alexnet import build_torch_model
    from implementations.variants import get_variant

    for impl in ("grouped", "towers"):
        model = build_torch_model(get_variant("cifar100-split"), impl).to("meta")
        names = autograd_node_names(model(torch.empty(2, 3, 32, 32, device="meta")).sum())
        assert "ConvolutionBackward0" in names and not any("AvgPool" in name for name in names)


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


@pytest.mark.parametrize("deterministic", [False, True])
def test_torch_lrn_computes_in_float32_under_bf16_autocast_as_keras_does(deterministic):
    """One rule in both frameworks: under mixed bf16 the LRN takes its bf16 input up to float32, normalises and
    returns float32 (the Keras layer above); the next layer's autocast casts back down."""
    x = torch.from_numpy(X_NCHW).to(torch.bfloat16)
    conv = torch.nn.Conv2d(12, 12, 1)
    previous = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(deterministic)
    try:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = LocalResponseNorm(**PAPER, groups=2)(x)
            after = conv(out)
    finally:
        torch.use_deterministic_algorithms(previous)
    assert out.dtype == torch.float32 and after.dtype == torch.bfloat16
    x_seen = x.float().numpy()
    np.testing.assert_allclose(out.numpy(), paper_lrn(x_seen, groups=2), rtol=1e-5)
