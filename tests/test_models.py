"""Each framework on its own: parameter counts, weight round trips, and the two split formulations."""

import numpy as np
import pytest
import torch

from implementations import keras_alexnet
from implementations.spec import parameter_count
from implementations.torch_alexnet import build_torch_model
from implementations.variants import BUILDABLE_VARIANTS, get_variant
from implementations.weight_mapping import torch_to_keras

SPLIT_CASES = [
    (name, impl)
    for name in BUILDABLE_VARIANTS
    for impl in ("grouped", "towers")
    if impl == "grouped" or get_variant(name).is_split
]


@pytest.mark.parametrize("name,impl", SPLIT_CASES)
def test_both_frameworks_have_the_spec_parameter_count(name, impl):
    arch = get_variant(name)
    assert sum(p.numel() for p in build_torch_model(arch, impl).parameters()) == parameter_count(arch)
    assert keras_alexnet.build_keras_model(arch, impl).count_params() == parameter_count(arch)


def test_towers_formulation_really_uses_separate_convolutions():
    arch = get_variant("cifar100-split")
    torch_convs = [m for m in build_torch_model(arch, "towers").modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(torch_convs) == 8 and all(m.groups == 1 for m in torch_convs)
    keras_names = [layer.name for layer in keras_alexnet.build_keras_model(arch, "towers").layers]
    assert {"conv2_tower0", "conv2_tower1", "conv5_tower1", "lrn1_tower0"} <= set(keras_names)
    grouped = [m for m in build_torch_model(arch, "grouped").modules() if isinstance(m, torch.nn.Conv2d)]
    assert [m.groups for m in grouped] == [1, 2, 1, 2, 2]


def test_torch_grouped_and_towers_give_the_same_logits_for_the_same_weights():
    arch = get_variant("cifar100-split")
    grouped, towers = build_torch_model(arch, "grouped").eval(), build_torch_model(arch, "towers").eval()
    towers.import_weights(grouped.export_weights())
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(towers(x), grouped(x), rtol=1e-5, atol=1e-7)


def test_keras_grouped_and_towers_give_the_same_logits_for_the_same_weights():
    arch = get_variant("cifar100-split")
    weights = torch_to_keras(build_torch_model(arch).export_weights(), arch)
    models = {impl: keras_alexnet.build_keras_model(arch, impl) for impl in ("grouped", "towers")}
    for model in models.values():
        keras_alexnet.load_weights(model, weights)
    x = np.random.default_rng(0).standard_normal((3, 32, 32, 3)).astype(np.float32)
    out = {impl: np.asarray(model(x, training=False)) for impl, model in models.items()}
    np.testing.assert_allclose(out["towers"], out["grouped"], rtol=1e-5, atol=1e-7)


def test_keras_export_returns_what_was_loaded():
    arch = get_variant("cifar100-split")
    weights = torch_to_keras(build_torch_model(arch).export_weights(), arch)
    model = keras_alexnet.build_keras_model(arch, "towers")
    keras_alexnet.load_weights(model, weights)
    exported = keras_alexnet.export_weights(model, arch)
    for name in weights:
        np.testing.assert_array_equal(exported[name]["kernel"], weights[name]["kernel"])


def test_loading_a_wrong_shape_names_the_layer():
    arch = get_variant("cifar100-split")
    weights = build_torch_model(arch).export_weights()
    weights["conv4"]["kernel"] = weights["conv4"]["kernel"][:, :96]
    with pytest.raises(ValueError, match="conv4"):
        build_torch_model(arch, "towers").import_weights(weights)
    with pytest.raises(ValueError, match="conv4"):
        keras_alexnet.load_weights(keras_alexnet.build_keras_model(arch), torch_to_keras(weights, arch))


def test_dropout_is_active_only_in_training():
    model = build_torch_model(get_variant("cifar100-single"))
    x = torch.randn(2, 3, 32, 32)
    model.train()
    assert not torch.equal(model(x), model(x))
    model.eval()
    assert torch.equal(model(x), model(x))
