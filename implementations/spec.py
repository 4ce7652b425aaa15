"""Framework-neutral description of AlexNet as data.

An :class:`Architecture` is an input shape, a class count and an ordered tuple of layers. Both
builders (``keras_alexnet``, ``torch_alexnet``) read it; nothing here imports a framework, so a
spec can be checked (shapes, parameters, FLOPs) before TensorFlow or PyTorch is loaded.

Towers (Krizhevsky et al. 2012, section 3.2): in the paper's two-GPU network a layer either sees
every channel of the previous layer ("towers=1") or only the channels of its own tower
("towers=2"). Parameter-free per-channel layers (ReLU, pooling, dropout) do not care; LRN does:
each GPU normalises over its own 48 (or 128) kernel maps, so the split variant's LRN never mixes
channels across the tower boundary.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from math import prod
from typing import Literal

Activation = Literal["relu"] | None


class SpecError(ValueError):
    """An architecture that cannot be built; the message names the layer and the shapes."""


@dataclass(frozen=True)
class Conv:
    """2-D convolution with symmetric zero padding; ``towers=2`` is the paper's per-GPU conv."""

    name: str
    filters: int
    kernel: int
    stride: int = 1
    padding: int = 0
    towers: int = 1
    activation: Activation = "relu"


@dataclass(frozen=True)
class LRN:
    """Local response normalisation as written in the paper (section 3.3).

    b = a / (k + alpha * sum_{n neighbouring maps} a^2) ** beta, alpha multiplying the plain sum.
    """

    name: str
    size: int = 5
    k: float = 2.0
    alpha: float = 1e-4
    beta: float = 0.75
    towers: int = 1


@dataclass(frozen=True)
class MaxPool:
    """Max pooling without padding; 3/2 is the paper's overlapping pooling (section 3.4)."""

    name: str
    size: int = 3
    stride: int = 2


@dataclass(frozen=True)
class Flatten:
    name: str = "flatten"


@dataclass(frozen=True)
class Dense:
    name: str
    units: int
    activation: Activation = "relu"


@dataclass(frozen=True)
class Dropout:
    name: str
    rate: float = 0.5


Layer = Conv | LRN | MaxPool | Flatten | Dense | Dropout

# Shapes are channels-first (C, H, W) for maps and (N,) for vectors, without the batch axis.
Shape = tuple[int, ...]


@dataclass(frozen=True)
class Architecture:
    """One network: a name, an input shape (C, H, W), a class count and its layers."""

    name: str
    input_shape: Shape
    classes: int
    layers: tuple[Layer, ...]
    description: str = ""
    paper_neurons: tuple[int, ...] | None = field(default=None, compare=False)

    @property
    def is_split(self) -> bool:
        return any(getattr(layer, "towers", 1) > 1 for layer in self.layers)

    def layer(self, name: str) -> Layer:
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise KeyError(name)

    def replace_layer(self, name: str, **changes: object) -> Architecture:
        """A copy with one layer's fields changed (used to prove parity checks can fail)."""
        self.layer(name)
        layers = tuple(replace(layer, **changes) if layer.name == name else layer for layer in self.layers)
        return replace(self, layers=layers)


@dataclass(frozen=True)
class LayerInfo:
    """What the spec computes for one layer: its output shape, parameters, neurons and FLOPs."""

    name: str
    kind: str
    input_shape: Shape
    output_shape: Shape
    params: int
    flops: int  # forward multiply-adds x 2, per image

    @property
    def neurons(self) -> int:
        return prod(self.output_shape)


def _conv_out(size: int, kernel: int, stride: int, padding: int) -> int:
    return (size + 2 * padding - kernel) // stride + 1


def _check_towers(layer: Conv | LRN, channels: int, shape: Shape) -> None:
    if layer.towers < 1:
        raise SpecError(f"{layer.name}: towers must be at least 1, got {layer.towers}")
    if channels % layer.towers:
        raise SpecError(f"{layer.name}: {channels} input channels {shape} do not split into {layer.towers} towers")


def _infer_conv(layer: Conv, shape: Shape) -> LayerInfo:
    if len(shape) != 3:
        raise SpecError(f"{layer.name}: a convolution needs a (C, H, W) input, got {shape}")
    channels, height, width = shape
    _check_towers(layer, channels, shape)
    if layer.filters % layer.towers:
        raise SpecError(f"{layer.name}: {layer.filters} filters do not split into {layer.towers} towers")
    padded = (height + 2 * layer.padding, width + 2 * layer.padding)
    if layer.kernel > min(padded):
        raise SpecError(
            f"{layer.name}: {layer.kernel}x{layer.kernel} kernel does not fit its "
            f"{height}x{width} input map (padding {layer.padding})"
        )
    out_h = _conv_out(height, layer.kernel, layer.stride, layer.padding)
    out_w = _conv_out(width, layer.kernel, layer.stride, layer.padding)
    fan_in = layer.kernel * layer.kernel * channels // layer.towers
    params = fan_in * layer.filters + layer.filters
    flops = 2 * fan_in * layer.filters * out_h * out_w
    return LayerInfo(layer.name, "conv", shape, (layer.filters, out_h, out_w), params, flops)


def _infer_pool(layer: MaxPool, shape: Shape) -> LayerInfo:
    if len(shape) != 3:
        raise SpecError(f"{layer.name}: pooling needs a (C, H, W) input, got {shape}")
    channels, height, width = shape
    if layer.size > min(height, width):
        raise SpecError(
            f"{layer.name}: {layer.size}x{layer.size} pooling window does not fit its {height}x{width} input map"
        )
    out = (channels, _conv_out(height, layer.size, layer.stride, 0), _conv_out(width, layer.size, layer.stride, 0))
    return LayerInfo(layer.name, "pool", shape, out, 0, 0)


def _infer_layer(layer: Layer, shape: Shape) -> LayerInfo:
    if isinstance(layer, Conv):
        return _infer_conv(layer, shape)
    if isinstance(layer, MaxPool):
        return _infer_pool(layer, shape)
    if isinstance(layer, LRN):
        if len(shape) != 3:
            raise SpecError(f"{layer.name}: LRN needs a (C, H, W) input, got {shape}")
        _check_towers(layer, shape[0], shape)
        if layer.size < 1 or layer.size % 2 == 0:
            raise SpecError(f"{layer.name}: LRN size must be odd (a centred window), got {layer.size}")
        return LayerInfo(layer.name, "lrn", shape, shape, 0, 0)
    if isinstance(layer, Flatten):
        return LayerInfo(layer.name, "flatten", shape, (prod(shape),), 0, 0)
    if isinstance(layer, Dense):
        if len(shape) != 1:
            raise SpecError(f"{layer.name}: a dense layer needs a flat input, got {shape}; add a Flatten")
        params = shape[0] * layer.units + layer.units
        return LayerInfo(layer.name, "dense", shape, (layer.units,), params, 2 * shape[0] * layer.units)
    if isinstance(layer, Dropout):
        if not 0.0 <= layer.rate < 1.0:
            raise SpecError(f"{layer.name}: dropout rate must be in [0, 1), got {layer.rate}")
        return LayerInfo(layer.name, "dropout", shape, shape, 0, 0)
    raise SpecError(f"unknown layer type {type(layer).__name__}")


def infer(arch: Architecture) -> list[LayerInfo]:
    """Shape-check the whole network; raises :class:`SpecError` at the first impossible layer."""
    names = [layer.name for layer in arch.layers]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise SpecError(f"{arch.name}: layer names must be unique, repeated: {', '.join(duplicates)}")
    shape = arch.input_shape
    infos = []
    for layer in arch.layers:
        info = _infer_layer(layer, shape)
        if min(info.output_shape) < 1:
            raise SpecError(f"{layer.name}: output shape {info.output_shape} from input {shape} is empty")
        infos.append(info)
        shape = info.output_shape
    if shape != (arch.classes,):
        raise SpecError(f"{arch.name}: the last layer gives {shape}, expected ({arch.classes},) logits")
    return infos


def parameter_count(arch: Architecture) -> int:
    return sum(info.params for info in infer(arch))


def forward_flops(arch: Architecture) -> int:
    """Forward FLOPs per image from convolutions and dense layers (2 per multiply-add).

    ReLU, LRN, pooling and bias additions are left out: they are well under 1% of the total.
    """
    return sum(info.flops for info in infer(arch))
