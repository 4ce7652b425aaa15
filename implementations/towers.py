"""Where the paper's towers meet, worked out once from the spec for every builder (section 3.5).

In the paper's two-GPU network, conv2, conv4, conv5 and their LRNs see only the kernel maps of
their own GPU ("towers=2"); conv1, conv3 and the fully connected layers see every map ("towers=1").
ReLU, pooling and dropout act per channel and do not care. The single-device builders (PyTorch and
Keras, ``grouped`` or ``towers`` formulation) and the model-parallel ones (one tower per device)
all route tensors by these rules.
"""

from __future__ import annotations

from implementations.spec import LRN, Architecture, Conv, Dense, Flatten, Layer, SpecError, infer


def tower_count(arch: Architecture) -> int:
    """The number of towers of a split network; an error for a single tower or mixed layouts."""
    towers = {getattr(layer, "towers", 1) for layer in arch.layers} - {1}
    if not towers:
        raise ValueError(
            f"{arch.name} has a single tower: model parallelism splits the paper's two-tower network "
            "(section 3.2); use a split variant, or AlexNet on one device"
        )
    if len(towers) > 1:
        raise ValueError(f"{arch.name}: layers disagree on the number of towers {sorted(towers)}")
    return towers.pop()


def check_one_tower_per_device(arch: Architecture, devices: int) -> int:
    """The tower count, after checking that ``devices`` devices can hold one tower each."""
    infer(arch)
    towers = tower_count(arch)
    if devices != towers:
        raise ValueError(f"{arch.name} has {towers} towers and needs one device per tower, got {devices}")
    for layer in arch.layers:
        if isinstance(layer, (Conv, LRN)) and layer.towers not in (1, towers):
            raise ValueError(f"{layer.name}: towers={layer.towers} cannot be laid out over {towers} devices")
        outputs = output_width(layer)
        if outputs % towers:
            raise ValueError(f"{layer.name}: {outputs} outputs do not split over {towers} devices")
    return towers


def output_width(layer: Layer) -> int:
    """Output channels or units of a weight layer; 0 for a layer without weights."""
    if isinstance(layer, Conv):
        return layer.filters
    if isinstance(layer, Dense):
        return layer.units
    return 0


def split_width(width: int, parts: int, name: str) -> int:
    """``width`` divided into ``parts`` equal shares; a width that does not divide is an error, not floored."""
    if width % parts:
        raise SpecError(f"{name}: {width} outputs do not split into {parts} towers")
    return width // parts


def sees_every_tower(layer: Layer) -> bool:
    """Where the towers communicate: conv1, conv3, the flatten and the dense layers."""
    if isinstance(layer, (Conv, LRN)):
        return layer.towers == 1
    return isinstance(layer, (Flatten, Dense))


def streams(layer: Layer, towers_as_tensors: bool) -> int | None:
    """How many tensors a layer takes on one device.

    In the ``towers`` formulation a per-tower layer (conv, LRN) takes one tensor per tower and
    a layer that sees every tower takes them joined; in the ``grouped`` formulation every conv
    and LRN takes one tensor (the grouping is inside the layer). Flatten and dense layers take
    one joined tensor; per-channel layers (pooling, dropout) take whatever they are given (None).
    """
    if isinstance(layer, (Conv, LRN)):
        return layer.towers if towers_as_tensors else 1
    if isinstance(layer, (Flatten, Dense)):
        return 1
    return None
