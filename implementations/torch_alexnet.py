"""PyTorch AlexNet built from an :class:`~implementations.spec.Architecture`.

One ``nn.Module`` for every variant; a spec layer becomes one entry of ``self.blocks`` with the
same name as in the Keras model. The split variant has two formulations with identical
parameters: ``grouped`` (``nn.Conv2d(groups=2)``) and ``towers`` (the channels split into two
tensors, one convolution per tower, joined only where the paper's towers communicate).

Weights cross the framework boundary as :data:`LayerWeights` in PyTorch's layout, one entry per
spec layer, towers concatenated along the output axis (exactly the grouped layout).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from implementations.spec import LRN, Architecture, Conv, Dense, Dropout, Flatten, MaxPool, infer
from implementations.towers import split_width, streams
from implementations.variants import SPLIT_IMPLS
from implementations.weight_mapping import LayerWeights


def lrn_avg_pool(x: Tensor, size: int, alpha: float, beta: float, k: float) -> Tensor:
    """The paper's LRN through ``F.local_response_norm``, which averages x^2 with ``avg_pool3d``.

    ``F.local_response_norm`` divides alpha by the window size; the paper does not, so alpha is
    passed multiplied by the size. ``avg_pool3d``'s CUDA backward is nondeterministic (atomic adds)
    and refused under ``torch.use_deterministic_algorithms(True)``.
    """
    return F.local_response_norm(x, size, alpha * size, beta, k)


def lrn_window_sum(x: Tensor, size: int, alpha: float, beta: float, k: float) -> Tensor:
    """The paper's LRN as a sum of ``size`` shifted slices of the zero-padded x^2 along channels.

    Only elementwise ops, padding and slicing: deterministic on every device, forward and backward.
    The same formula as the Keras layer's ``keras.ops`` path.
    """
    channels, radius = x.shape[1], size // 2
    squared = F.pad(x * x, (0, 0, 0, 0, radius, size - 1 - radius))
    window = squared[:, 0:channels]
    for i in range(1, size):
        window = window + squared[:, i : i + channels]
    return x / (k + alpha * window).pow(beta)


def lrn_formulation(device: torch.device) -> Callable[..., Tensor]:
    """:func:`lrn_avg_pool` on the CPU, :func:`lrn_window_sum` elsewhere or under deterministic algorithms.

    The window sum is what makes ``train --deterministic`` run on CUDA. On the CPU the two trade
    places with the load (forward and backward, batch 16, AlexNet's LRN shapes: the window sum
    takes 0.55-0.71x the CPU time on one thread, but 0.80-1.43x the wall time on two shared
    threads), so the CPU keeps PyTorch's own LRN, the one its earlier figures were measured with.
    """
    if device.type == "cpu" and not torch.are_deterministic_algorithms_enabled():
        return lrn_avg_pool
    return lrn_window_sum


def _no_autocast(device_type: str) -> contextlib.AbstractContextManager:
    """Autocast off for ``device_type``; nothing to turn off where autocast does not exist (meta tensors)."""
    available = getattr(torch.amp, "is_autocast_available", lambda kind: kind in ("cpu", "cuda"))(device_type)
    return torch.autocast(device_type, enabled=False) if available else contextlib.nullcontext()


class LocalResponseNorm(nn.Module):
    """The paper's LRN (section 3.3) within each of ``groups`` channel groups.

    With ``groups > 1`` no window crosses a group boundary, as in the paper's two-GPU network where
    each GPU normalises its own kernel maps. The sum over the window has two formulations, equal
    within 1e-6; :func:`lrn_formulation` picks one per device.
    """

    def __init__(self, size: int, alpha: float, beta: float, k: float, groups: int = 1) -> None:
        super().__init__()
        self.size, self.alpha, self.beta, self.k, self.groups = size, alpha, beta, k, groups

    def forward(self, x: Tensor) -> Tensor:
        """Under autocast (bf16 cells) the normalisation runs in float32 and returns float32, as the Keras layer
        does under mixed_bfloat16: a power of a sum of squares is what low precision gets wrong first, and the
        next layer's autocast casts back down. Both frameworks follow the one rule."""
        n, c, h, w = x.shape
        with _no_autocast(x.device.type):
            grouped = x.float().reshape(n * self.groups, c // self.groups, h, w)
            out = lrn_formulation(x.device)(grouped, self.size, self.alpha, self.beta, self.k)
        return out.reshape(n, c, h, w)

    def extra_repr(self) -> str:
        return f"size={self.size}, alpha={self.alpha} (paper), beta={self.beta}, k={self.k}, groups={self.groups}"


class PerTower(nn.Module):
    """One module per tower, each applied to its own tower's tensor."""

    def __init__(self, towers: list[nn.Module]) -> None:
        super().__init__()
        self.towers = nn.ModuleList(towers)

    def forward(self, xs: list[Tensor]) -> list[Tensor]:
        return [tower(x) for tower, x in zip(self.towers, xs, strict=True)]


class SuppliedMaskDropout(nn.Dropout):
    """``nn.Dropout``, or, given a mask (0 or 1/(1-rate) per unit), ``x * mask`` while training.

    The mask comes from outside so that two frameworks can drop the same units (training parity).
    """

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        if mask is None or not self.training:
            return super().forward(x)
        return x * mask


def activation_modules(name: str | None) -> list[nn.Module]:
    return [nn.ReLU(inplace=True)] if name == "relu" else []


def _conv(layer: Conv, in_channels: int, towers_as_tensors: bool) -> nn.Module:
    def conv(cin: int, cout: int, groups: int) -> nn.Sequential:
        return nn.Sequential(
            nn.Conv2d(cin, cout, layer.kernel, layer.stride, layer.padding, groups=groups),
            *activation_modules(layer.activation),
        )

    t = layer.towers
    if towers_as_tensors and t > 1:
        width = split_width(layer.filters, t, layer.name)
        return PerTower([conv(in_channels // t, width, 1) for _ in range(t)])
    return conv(in_channels, layer.filters, t)


def weight_modules(block: nn.Module) -> list[nn.Conv2d | nn.Linear]:
    """The conv/linear modules of one spec layer, in tower order."""
    return [m for m in block.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


class SpecLayerWeights:
    """Weights per spec layer for a module whose ``blocks`` map spec layer names to modules.

    A block's parts (its towers or, model-parallel, its per-device halves) each own a slice of
    the output channels, so their weights concatenated along the output axis are the grouped
    layout, the same for every PyTorch model here.
    """

    blocks: nn.ModuleDict

    def layer_parameter_counts(self) -> dict[str, int]:
        """Parameters per spec layer, all parts together."""
        return block_parameter_counts(self.blocks)

    def export_weights(self) -> LayerWeights:
        """Weights per spec layer in PyTorch layout, parts concatenated along the output axis."""
        return export_block_weights(self.blocks)

    def import_weights(self, weights: LayerWeights) -> None:
        """Load weights in :meth:`export_weights`' layout; each part takes its slice, a mismatch names the layer."""
        import_block_weights(self.blocks, weights)


class AlexNet(SpecLayerWeights, nn.Module):
    """AlexNet from a spec; ``split_impl`` picks how a two-tower layer is computed."""

    def __init__(self, arch: Architecture, split_impl: str = "grouped") -> None:
        super().__init__()
        if split_impl not in SPLIT_IMPLS:
            raise ValueError(f"unknown split implementation {split_impl!r}; choose from {SPLIT_IMPLS}")
        self.arch, self.split_impl = arch, split_impl
        as_tensors = split_impl == "towers"
        self.blocks = nn.ModuleDict()
        # Number of tensors each block wants as input: 1, the towers, or None (any: per-channel op).
        self.streams: dict[str, int | None] = {}
        for layer, info in zip(arch.layers, infer(arch), strict=True):
            towers = getattr(layer, "towers", 1)
            self.streams[layer.name] = streams(layer, as_tensors)
            if isinstance(layer, Conv):
                block = _conv(layer, info.input_shape[0], as_tensors)
            elif isinstance(layer, LRN):
                groups = 1 if as_tensors else towers
                block = LocalResponseNorm(layer.size, layer.alpha, layer.beta, layer.k, groups)
            elif isinstance(layer, MaxPool):
                block = nn.MaxPool2d(layer.size, layer.stride)
            elif isinstance(layer, Flatten):
                block = nn.Flatten()
            elif isinstance(layer, Dense):
                linear = nn.Linear(info.input_shape[0], layer.units)
                block = nn.Sequential(linear, *activation_modules(layer.activation))
            elif isinstance(layer, Dropout):
                block = SuppliedMaskDropout(layer.rate)
            else:
                raise TypeError(f"no PyTorch block for {type(layer).__name__}")
            self.blocks[layer.name] = block

    @staticmethod
    def _regroup(xs: list[Tensor], wanted: int | None) -> list[Tensor]:
        if wanted is None or len(xs) == wanted:
            return xs
        if wanted == 1:
            return [torch.cat(xs, dim=1)]
        return list(torch.cat(xs, dim=1).chunk(wanted, dim=1))

    def _run(
        self, x: Tensor, keep: bool, dropout_masks: dict[str, Tensor] | None = None
    ) -> tuple[Tensor, dict[str, Tensor]]:
        xs, outputs = [x], {}
        for name, block in self.blocks.items():
            xs = self._regroup(xs, self.streams[name])
            if dropout_masks and name in dropout_masks:
                xs = [block(torch.cat(xs, dim=1), dropout_masks[name])]
            else:
                xs = block(xs) if isinstance(block, PerTower) else [block(t) for t in xs]
            if keep:
                outputs[name] = xs[0] if len(xs) == 1 else torch.cat(xs, dim=1)
        return xs[0], outputs

    def forward(self, x: Tensor, dropout_masks: dict[str, Tensor] | None = None) -> Tensor:
        """Logits (the paper's softmax is left to the loss); ``dropout_masks`` by dropout layer name."""
        return self._run(x, keep=False, dropout_masks=dropout_masks)[0]

    def layer_outputs(self, x: Tensor) -> dict[str, Tensor]:
        """Every spec layer's output, towers joined, for parity checks."""
        return self._run(x, keep=True)[1]


def block_parameter_counts(blocks: nn.ModuleDict) -> dict[str, int]:
    return {name: sum(p.numel() for p in block.parameters()) for name, block in blocks.items()}


def export_block_weights(blocks: nn.ModuleDict) -> LayerWeights:
    """Per spec layer (a block), its kernels and biases, parts concatenated along the output axis.

    A block's parts are its towers or, model-parallel, its per-device halves: either way each part
    owns a slice of the output channels, so concatenation gives the grouped layout.
    """
    weights: LayerWeights = {}
    for name, block in blocks.items():
        modules = weight_modules(block)
        if modules:
            weights[name] = {
                key: np.concatenate([getattr(m, attr).detach().cpu().numpy() for m in modules])
                for key, attr in (("kernel", "weight"), ("bias", "bias"))
            }
    return weights


@torch.no_grad()
def import_block_weights(blocks: nn.ModuleDict, weights: LayerWeights) -> None:
    """Inverse of :func:`export_block_weights`; each part takes its slice along the output axis."""
    for name, block in blocks.items():
        modules = weight_modules(block)
        if not modules:
            continue
        if name not in weights:
            raise KeyError(f"{name}: no weights given for this layer")
        for key, attr in (("kernel", "weight"), ("bias", "bias")):
            value = weights[name][key]
            if value.shape[0] % len(modules):
                raise ValueError(f"{name}: {key} of shape {value.shape} does not split into {len(modules)} parts")
            for module, part in zip(modules, np.split(value, len(modules)), strict=True):
                target = getattr(module, attr)
                if tuple(part.shape) != tuple(target.shape):
                    raise ValueError(f"{name}: {key} of shape {part.shape} does not fit {tuple(target.shape)}")
                target.copy_(torch.from_numpy(np.ascontiguousarray(part)))


def build_torch_model(arch: Architecture, split_impl: str = "grouped") -> AlexNet:
    return AlexNet(arch, split_impl)
