"""The spec alone: shapes, parameters, neurons and FLOPs, and refusal of impossible networks."""

import pytest

from implementations.spec import Conv, SpecError, forward_flops, infer, parameter_count
from implementations.variants import PAPER_NEURONS, UnknownVariantError, get_variant

# The paper's figures (section 3.5) and published ports'; the CIFAR-100 ones follow from this project's geometry.
EXPECTED_PARAMETERS = {
    "imagenet-split": 60_965_224,
    "imagenet-single": 62_378_344,
    "cifar100-split": 28_938_724,
    "cifar100-single": 30_351_844,
    "tutorial": 29_038_480,
}


@pytest.mark.parametrize("name,expected", EXPECTED_PARAMETERS.items())
def test_parameter_counts_match_published_figures(name, expected):
    assert parameter_count(get_variant(name)) == expected


def test_tutorial_per_layer_parameters():
    params = {info.name: info.params for info in infer(get_variant("tutorial")) if info.params}
    assert params == {
        "conv1": 34_944,
        "conv2": 2_973_952,
        "conv3": 885_120,
        "conv4": 1_327_488,
        "conv5": 884_992,
        "fc6": 1_052_672,
        "fc7": 16_781_312,
        "fc8": 4_097_000,
        "fc9": 1_001_000,
    }


def test_split_differs_from_single_only_in_tower_layers():
    single = {i.name: i.params for i in infer(get_variant("imagenet-single"))}
    split = {i.name: i.params for i in infer(get_variant("imagenet-split"))}
    changed = {name for name in single if single[name] != split[name]}
    assert changed == {"conv2", "conv4", "conv5"}
    for name in changed:  # each tower sees half the input channels: (half the kernel) + same bias
        bias = get_variant("imagenet-split").layer(name).filters
        assert split[name] - bias == (single[name] - bias) // 2


def test_imagenet_map_sizes():
    shapes = {i.name: i.output_shape for i in infer(get_variant("imagenet-split"))}
    assert shapes["conv1"] == (96, 55, 55)
    assert shapes["pool1"] == (96, 27, 27)
    assert shapes["conv2"] == (256, 27, 27)
    assert shapes["pool2"] == (256, 13, 13)
    assert shapes["conv5"] == (256, 13, 13)
    assert shapes["pool5"] == (256, 6, 6)
    assert shapes["fc8"] == (1000,)


def test_cifar_map_sizes():
    shapes = {i.name: i.output_shape for i in infer(get_variant("cifar100-single"))}
    sides = [shapes[n][1] for n in ("conv1", "pool1", "conv2", "pool2", "conv3", "conv4", "conv5", "pool5")]
    assert sides == [32, 15, 15, 7, 7, 7, 7, 3]
    assert shapes["flatten"] == (2304,)
    assert shapes["fc8"] == (100,)


def test_neurons_match_paper_except_its_first_figure():
    computed = [info.neurons for info in infer(get_variant("imagenet-split")) if info.kind in ("conv", "dense")]
    assert computed[0] == 55 * 55 * 96 != PAPER_NEURONS[0]
    assert computed[1:] == list(PAPER_NEURONS[1:])
    assert sum(computed) == 659_272


def test_forward_flops_of_split_and_single():
    split, single = forward_flops(get_variant("imagenet-split")), forward_flops(get_variant("imagenet-single"))
    assert split == pytest.approx(1.45e9, rel=0.01)
    assert single == pytest.approx(2.27e9, rel=0.01)
    conv1 = infer(get_variant("imagenet-split"))[0]
    assert conv1.flops == 2 * (11 * 11 * 3) * 96 * 55 * 55


def test_tutorial_cifar100_is_refused_naming_conv2_and_its_map():
    with pytest.raises(SpecError, match=r"conv2: 7x7 kernel does not fit its 6x6 input map"):
        get_variant("tutorial-cifar100")


def test_kernel_larger_than_map_is_refused():
    arch = get_variant("cifar100-single").replace_layer("conv3", kernel=9, padding=0)
    with pytest.raises(SpecError, match=r"conv3: 9x9 kernel does not fit its 7x7 input map"):
        infer(arch)


def test_unknown_variant_lists_valid_ones():
    with pytest.raises(UnknownVariantError, match="imagenet-split.*cifar100-single"):
        get_variant("alexnet-xl")


@pytest.mark.parametrize(
    "layer,changes,message",
    [
        ("conv2", {"towers": 3}, "do not split into 3 towers"),
        ("lrn1", {"size": 4}, "LRN size must be odd"),
        ("dropout6", {"rate": 1.0}, "dropout rate"),
        ("fc8", {"units": 10}, r"expected \(100,\) logits"),
    ],
)
def test_inconsistent_layers_are_refused(layer, changes, message):
    with pytest.raises(SpecError, match=message):
        infer(get_variant("cifar100-split").replace_layer(layer, **changes))


def test_duplicate_layer_names_are_refused():
    arch = get_variant("cifar100-single")
    layers = (*arch.layers[:3], Conv("conv1", 96, 3, padding=1), *arch.layers[3:])
    with pytest.raises(SpecError, match="repeated: conv1"):
        infer(type(arch)(arch.name, arch.input_shape, arch.classes, layers))
