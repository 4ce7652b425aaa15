"""The named architectures: the paper's AlexNet in four variants, and the widely copied tutorial.

Variants are data: a dataset geometry (input, classes, first convolution) crossed with a tower
layout (single, or the paper's two-GPU split). One function turns a pair into an Architecture.
"""

from __future__ import annotations

from dataclasses import dataclass

from implementations.spec import (
    LRN,
    Architecture,
    Conv,
    Dense,
    Dropout,
    Flatten,
    MaxPool,
    SpecError,
    infer,
)

# The paper's neuron counts (section 3.5), conv1..fc8. Its first figure disagrees with its own
# 55x55x96 = 290,400 maps; reports show the computed figure beside it and flag the difference.
PAPER_NEURONS = (253_440, 186_624, 64_896, 64_896, 43_264, 4096, 4096, 1000)


@dataclass(frozen=True)
class Geometry:
    """What differs between datasets: input (C, H, W), classes, and conv1's kernel/stride/pad."""

    input_shape: tuple[int, int, int]
    classes: int
    conv1: tuple[int, int, int]


GEOMETRIES = {
    # 227, not the paper's 224: only 227 gives its (227 - 11) / 4 + 1 = 55.
    "imagenet": Geometry((3, 227, 227), 1000, conv1=(11, 4, 0)),
    # This project's CIFAR-100 geometry: same widths, conv1 5x5/1 pad 2; maps 32-15-7-7-7-7-3.
    "cifar100": Geometry((3, 32, 32), 100, conv1=(5, 1, 2)),
}

# Which layers see only their own tower in the paper's two-GPU network (section 3.5, figure 2).
TOWER_LAYERS = {
    "single": frozenset(),
    "split": frozenset({"lrn1", "conv2", "lrn2", "conv4", "conv5"}),
}


def paper_alexnet(dataset: str, layout: str) -> Architecture:
    """The paper's eight weight layers for one dataset geometry and one tower layout."""
    geometry = GEOMETRIES[dataset]
    split = TOWER_LAYERS[layout]

    def towers(name: str) -> int:
        return 2 if name in split else 1

    kernel, stride, padding = geometry.conv1
    layers = (
        Conv("conv1", 96, kernel, stride, padding, towers=towers("conv1")),
        LRN("lrn1", towers=towers("lrn1")),
        MaxPool("pool1"),
        Conv("conv2", 256, 5, padding=2, towers=towers("conv2")),
        LRN("lrn2", towers=towers("lrn2")),
        MaxPool("pool2"),
        Conv("conv3", 384, 3, padding=1, towers=towers("conv3")),
        Conv("conv4", 384, 3, padding=1, towers=towers("conv4")),
        Conv("conv5", 256, 3, padding=1, towers=towers("conv5")),
        MaxPool("pool5"),
        Flatten(),
        Dense("fc6", 4096),
        Dropout("dropout6"),
        Dense("fc7", 4096),
        Dropout("dropout7"),
        Dense("fc8", geometry.classes, activation=None),
    )
    layout_text = (
        "the paper's two-GPU split: conv2, conv4, conv5 and both LRNs see only their own tower"
        if split
        else "one tower: every layer sees every channel of the previous one"
    )
    return Architecture(
        name=f"{dataset}-{layout}",
        input_shape=geometry.input_shape,
        classes=geometry.classes,
        layers=layers,
        description=f"Krizhevsky et al. 2012 AlexNet, {dataset} geometry, {layout_text}",
        paper_neurons=PAPER_NEURONS if dataset == "imagenet" else None,
    )


def tutorial_alexnet(dataset: str = "imagenet") -> Architecture:
    """The widely copied Keras tutorial "AlexNet": not the paper's network.

    224 input, valid padding, no LRN, 2x2 pooling, an 11x11 conv2, and an extra Dense(1000, relu)
    with dropout 0.4 before the classifier. Its CIFAR-100 form (7x7/2 conv1, 7x7 conv2) cannot be
    built: conv2 meets a 6x6 map.
    """
    if dataset == "imagenet":
        input_shape, classes, conv1, conv2 = (3, 224, 224), 1000, (11, 4), 11
    else:
        input_shape, classes, conv1, conv2 = (3, 32, 32), 100, (7, 2), 7
    layers = (
        Conv("conv1", 96, conv1[0], conv1[1]),
        MaxPool("pool1", 2, 2),
        Conv("conv2", 256, conv2),
        MaxPool("pool2", 2, 2),
        Conv("conv3", 384, 3),
        Conv("conv4", 384, 3),
        Conv("conv5", 256, 3),
        MaxPool("pool5", 2, 2),
        Flatten(),
        Dense("fc6", 4096),
        Dropout("dropout6", 0.4),
        Dense("fc7", 4096),
        Dropout("dropout7", 0.4),
        Dense("fc8", 1000),
        Dropout("dropout8", 0.4),
        Dense("fc9", classes, activation=None),
    )
    suffix = "" if dataset == "imagenet" else "-cifar100"
    return Architecture(
        name=f"tutorial{suffix}",
        input_shape=input_shape,
        classes=classes,
        layers=layers,
        description="the widely copied Keras tutorial version: no LRN, 2x2 pooling, 11x11 conv2, extra fc",
    )


# Every architecture the suite knows, by name. ``tutorial-cifar100`` is listed so that asking for
# it gives the precise reason it cannot exist rather than "unknown variant".
VARIANTS = {
    "imagenet-single": lambda: paper_alexnet("imagenet", "single"),
    "imagenet-split": lambda: paper_alexnet("imagenet", "split"),
    "cifar100-single": lambda: paper_alexnet("cifar100", "single"),
    "cifar100-split": lambda: paper_alexnet("cifar100", "split"),
    "tutorial": lambda: tutorial_alexnet("imagenet"),
    "tutorial-cifar100": lambda: tutorial_alexnet("cifar100"),
}
PAPER_VARIANTS = ("imagenet-single", "imagenet-split", "cifar100-single", "cifar100-split")
BUILDABLE_VARIANTS = (*PAPER_VARIANTS, "tutorial")

# Split formulations: identical parameters, different kernels; which is faster depends on the
# framework and the device (``bench.py run --best`` measures both).
SPLIT_IMPLS = ("grouped", "towers")


class UnknownVariantError(SpecError):
    pass


def get_variant(name: str) -> Architecture:
    """The checked architecture for a variant name; SpecError says why it cannot be built."""
    if name not in VARIANTS:
        valid = ", ".join(VARIANTS)
        raise UnknownVariantError(f"unknown variant {name!r}; valid variants: {valid}")
    arch = VARIANTS[name]()
    infer(arch)
    return arch


def every_variant() -> dict[str, Architecture | str]:
    """Every named variant: its checked architecture, or the reason it cannot be built."""
    found: dict[str, Architecture | str] = {}
    for name in VARIANTS:
        try:
            found[name] = get_variant(name)
        except SpecError as error:
            found[name] = str(error)
    return found
