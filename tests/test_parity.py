"""Keras vs PyTorch parity for every variant and split formulation, and proof the check can fail."""

import numpy as np
import pytest

from implementations.parity import check_parity
from implementations.variants import BUILDABLE_VARIANTS, get_variant
from implementations.weight_mapping import torch_to_keras

CASES = [
    (name, impl)
    for name in BUILDABLE_VARIANTS
    for impl in ("grouped", "towers")
    if impl == "grouped" or get_variant(name).is_split
]
RTOL = 1e-4


@pytest.mark.parametrize("name,impl", CASES)
def test_keras_and_torch_are_the_same_network(name, impl):
    report = check_parity(get_variant(name), impl, rtol=RTOL)
    assert report.ok, report.failures
    for row in report.layers:
        assert row.torch_shape == row.spec_shape
        assert row.torch_params == row.keras_params == row.spec_params
        assert row.rel_diff is not None and row.rel_diff <= RTOL, row.name
    assert report.logits_rel_diff <= RTOL
    assert report.logits_max_abs_diff > 0 or report.logits_rel_diff == 0


def test_unpermuted_fc6_is_reported_at_fc6():
    """The classic porting bug: transposing fc6 without reordering its CHW columns to HWC."""

    def forgetful_mapping(weights, arch):
        converted = torch_to_keras(weights, arch)
        converted["fc6"]["kernel"] = np.ascontiguousarray(weights["fc6"]["kernel"].T)
        return converted

    report = check_parity(get_variant("cifar100-split"), "grouped", mapping=forgetful_mapping)
    assert not report.ok
    assert report.first_failing_layer == "fc6"
    assert all(row.ok for row in report.layers[: [r.name for r in report.layers].index("fc6")])
    assert any("fc6: outputs differ" in failure for failure in report.failures)


@pytest.mark.parametrize(
    "layer,changes,expected_problem",
    [
        ("conv4", {"towers": 1}, "parameters"),  # one framework forgets the split: params double
        ("lrn2", {"alpha": 1e-4 / 5}, "outputs differ"),  # Caffe-style weak LRN: only numbers differ
        ("pool1", {"size": 2}, "output"),  # 2x2 pooling: shapes differ from there on
    ],
)
def test_mutating_one_layer_of_one_framework_names_that_layer(layer, changes, expected_problem):
    arch = get_variant("cifar100-split")
    report = check_parity(arch, "towers", keras_arch=arch.replace_layer(layer, **changes))
    assert not report.ok
    assert report.first_failing_layer == layer
    assert any(f.startswith(f"{layer}: ") and expected_problem in f for f in report.failures)


def test_tolerance_is_enforced():
    report = check_parity(get_variant("cifar100-single"), rtol=0.0)
    assert not report.ok or report.logits_max_abs_diff == 0


def test_parity_pins_strict_fp32_in_every_library_before_running_a_model(monkeypatch):
    """On a GPU host TensorFlow and JAX default to TF32 (~1e-3 off); the check must not depend on the host."""
    from implementations import math_mode, torch_alexnet

    calls = []
    for library in math_mode.LIBRARIES:
        monkeypatch.setitem(math_mode.SETTERS, library, lambda tf32, library=library: calls.append((library, tf32)))
    build = torch_alexnet.build_torch_model
    monkeypatch.setattr(torch_alexnet, "build_torch_model", lambda *a: calls.append("build") or build(*a))
    report = check_parity(get_variant("cifar100-single"))
    assert calls == [("torch", False), ("tensorflow", False), "build"]  # TF32 off in both, before any model
    assert report.ok and report.math_mode == math_mode.STRICT_FP32
    assert report.devices["torch"] == "cpu" and report.devices["keras (tensorflow)"] not in ("", "unknown")


def test_parity_report_says_its_math_and_devices():
    from rich.console import Console

    from reports.parity_table import render_parity

    report = check_parity(get_variant("cifar100-single"))
    console = Console(record=True, width=200)
    render_parity(report, console)
    keras_device = report.devices["keras (tensorflow)"]
    assert f"math: fp32 strict (TF32 off) on torch cpu, keras (tensorflow) {keras_device}" in console.export_text()
