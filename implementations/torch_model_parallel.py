"""Model-parallel PyTorch AlexNet: the paper's two-GPU split, one tower per device.

Krizhevsky et al. 2012, section 3.2 and figure 2: "we put half of the kernels (or neurons) on each
GPU, with one additional trick: the GPUs communicate only in certain layers." Here device ``i``
holds tower ``i``'s half of every weight layer:

- layers with ``towers=2`` in the spec (conv2, conv4, conv5 and both LRNs) see only the tensor of
  their own tower, on their own device;
- layers with ``towers=1`` (conv1, conv3, fc6, fc7, fc8) are where the towers communicate: every
  device receives all towers' activations, concatenated in tower order, and computes its half of
  the output channels or units;
- ReLU, max-pooling, dropout and flatten act per channel, so they run per tower.

Every weight layer is split along its output axis, so :meth:`ModelParallelAlexNet.export_weights`
is exactly :meth:`~implementations.torch_alexnet.AlexNet.export_weights`' layout (the grouped
one) and the two models load each other's weights.

``["cpu", "cpu"]`` runs the same code as ``["cuda:0", "cuda:1"]``; that is how it is tested
without GPUs, and ``["cuda:0", "cuda:0"]`` runs the two-GPU code on one GPU.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from implementations.spec import LRN, Architecture, Conv, Dense, Dropout, Flatten, Layer, MaxPool, infer
from implementations.torch_alexnet import (
    LocalResponseNorm,
    PerTower,
    SpecLayerWeights,
    activation_modules,
)
from implementations.towers import check_one_tower_per_device, output_width, sees_every_tower


def _to(x: Tensor, device: torch.device) -> Tensor:
    """Move ``x`` to ``device``, asynchronously where that is safe.

    Copies between GPUs are ordered on the streams, so they need not block. A non-blocking copy
    from a GPU into CPU memory can be read before it has landed, so a CPU target blocks.
    """
    return x.to(device, non_blocking=device.type != "cpu")


def _join(xs: Sequence[Tensor], device: torch.device) -> Tensor:
    """All towers' activations on ``device``, tower 0's channels first (the paper's crossing)."""
    return torch.cat([_to(x, device) for x in xs], dim=1)


def _check_device(device: torch.device) -> None:
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise ValueError(f"device {device} asked for, but {torch.cuda.device_count()} CUDA device(s) found")


class ModelParallelAlexNet(SpecLayerWeights, nn.Module):
    """AlexNet with tower ``i`` of every weight layer on ``devices[i]`` (paper section 3.2).

    ``forward`` takes the batch on ``devices[0]`` and returns the logits there; the paper's
    softmax is left to the loss.
    """

    def __init__(self, arch: Architecture, devices: Sequence[str | torch.device]) -> None:
        super().__init__()
        towers = check_one_tower_per_device(arch, len(devices))
        self.arch = arch
        self.devices = [torch.device(d) for d in devices]
        for device in self.devices:
            _check_device(device)
        self.blocks = nn.ModuleDict()
        # The weight layers where all towers' activations meet (towers=1 in the spec).
        self.joins: set[str] = set()
        for layer, info in zip(arch.layers, infer(arch), strict=True):
            self.blocks[layer.name] = self._block(layer, info.input_shape, towers)
            if sees_every_tower(layer) and output_width(layer):
                self.joins.add(layer.name)

    def _block(self, layer: Layer, input_shape: tuple[int, ...], towers: int) -> nn.Module:
        """One spec layer: a :class:`PerTower` of per-device halves, or one parameter-free module."""
        name = layer.name
        if isinstance(layer, Conv):
            cin = input_shape[0] // layer.towers
            return self._per_device(
                lambda: nn.Sequential(
                    nn.Conv2d(cin, layer.filters // towers, layer.kernel, layer.stride, layer.padding),
                    *activation_modules(layer.activation),
                )
            )
        if isinstance(layer, Dense):
            return self._per_device(
                lambda: nn.Sequential(
                    nn.Linear(input_shape[0], layer.units // towers), *activation_modules(layer.activation)
                )
            )
        if isinstance(layer, LRN):
            if layer.towers == 1:
                raise ValueError(f"{name}: an LRN across towers would need the towers joined; give it towers={towers}")
            return LocalResponseNorm(layer.size, layer.alpha, layer.beta, layer.k, groups=1)
        if isinstance(layer, MaxPool):
            return nn.MaxPool2d(layer.size, layer.stride)
        if isinstance(layer, Flatten):
            # Per tower, then joined at fc6 in tower order: with channels outermost, this is
            # exactly flatten(cat([tower0, tower1], dim=1)), the single-device (C, H, W) order.
            return nn.Flatten()
        if isinstance(layer, Dropout):
            return nn.Dropout(layer.rate)
        raise TypeError(f"no PyTorch block for {type(layer).__name__}")

    def _per_device(self, make: Callable[[], nn.Module]) -> PerTower:
        """One freshly initialised half per device, in tower order."""
        return PerTower([make().to(device) for device in self.devices])

    def forward(self, x: Tensor) -> Tensor:
        """Logits on ``devices[0]`` for a batch on ``devices[0]``."""
        xs = [x]
        for name, block in self.blocks.items():
            if name in self.joins:
                xs = [_join(xs, device) for device in self.devices]
            xs = block(xs) if isinstance(block, PerTower) else [block(t) for t in xs]
        return _join(xs, self.devices[0])
