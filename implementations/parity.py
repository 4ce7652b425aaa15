"""Prove the Keras and PyTorch models are the same network, layer by layer.

For one architecture (or two: a different spec per framework, to show the check can fail) it
builds both models, compares every layer's output shape and parameter count with each other and
with the spec, copies PyTorch's weights into Keras through ``weight_mapping``, runs one random
batch through both in inference mode and compares every layer's output. The first layer that
disagrees is named in the report.

The arithmetic is pinned: TF32 (on by default for TensorFlow and JAX on NVIDIA GPUs, and for
torch's cuDNN convolutions) multiplies with a 10-bit mantissa and would put a Keras model on a
GPU ~1e-3 away from PyTorch on the CPU, so every library the check uses is switched to strict
fp32 (``math_mode``), and the report names that mode and the device each model ran on.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from implementations import math_mode
from implementations.spec import Architecture, infer
from implementations.weight_mapping import LayerWeights, torch_to_keras

# float32 through eight weight layers: observed differences are ~1e-6 of the largest activation.
DEFAULT_RTOL = 1e-4
# The paper feeds mean-subtracted raw pixels (section 2), values of order +-100. At that scale the
# LRN term alpha * sum(a^2) is comparable to k; with unit-scale inputs it is ~1e-6 of k and an LRN
# with the wrong alpha would pass unnoticed.
DEFAULT_INPUT_SCALE = 100.0

Mapping = Callable[[LayerWeights, Architecture], LayerWeights]


@dataclass(kw_only=True)
class LayerVerdict:
    """A layer's numeric difference from the reference and what is wrong with it (nothing: it passes)."""

    max_abs_diff: float | None = None
    rel_diff: float | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass
class LayerParity(LayerVerdict):
    name: str
    spec_shape: tuple[int, ...]
    torch_shape: tuple[int, ...] | None
    keras_shape: tuple[int, ...] | None  # as Keras lays it out: (H, W, C) for maps
    spec_params: int
    torch_params: int | None
    keras_params: int | None
    neurons: int
    paper_neurons: int | None = None


@dataclass
class ParityReport:
    variant: str
    split_impl: str
    rtol: float
    layers: list[LayerParity]
    logits_max_abs_diff: float | None
    logits_rel_diff: float | None
    failures: list[str]
    math_mode: str = math_mode.STRICT_FP32
    devices: dict[str, str] = field(default_factory=dict)  # "torch" and "keras (<backend>)" -> device

    @property
    def ok(self) -> bool:
        return not self.failures

    @property
    def first_failing_layer(self) -> str | None:
        return next((layer.name for layer in self.layers if not layer.ok), None)


def keras_to_torch_shape(shape: tuple[int, ...]) -> tuple[int, ...]:
    """(H, W, C) -> (C, H, W); vectors unchanged."""
    return (shape[2], shape[0], shape[1]) if len(shape) == 3 else shape


def keras_activation_as_torch(value: np.ndarray, previous_map_hwc: tuple[int, ...] | None) -> np.ndarray:
    """A Keras activation in PyTorch's element order: NHWC -> NCHW; a flattened HWC map -> CHW."""
    if value.ndim == 4:
        return value.transpose(0, 3, 1, 2)
    if previous_map_hwc is not None and value.shape[1] == np.prod(previous_map_hwc):
        h, w, c = previous_map_hwc
        return value.reshape(-1, h, w, c).transpose(0, 3, 1, 2).reshape(value.shape[0], -1)
    return value


def relative_difference(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """(max |a - b|, that divided by max |b|): a scale-free float32 agreement measure."""
    diff = float(np.max(np.abs(a - b)))
    scale = float(np.max(np.abs(b)))
    return diff, diff / scale if scale > 0 else diff


def tensor_device(value) -> str:
    """Where a TensorFlow, JAX or PyTorch tensor lives, short: "CPU:0", "GPU:0", "cuda:0", "cpu"."""
    device = getattr(value, "device", None)
    if callable(device):  # older JAX arrays: device() is a method
        device = device()
    return "unknown" if device is None else str(device).rsplit("device:", 1)[-1]


def pin_math_mode(libraries: list[str], mode: str = math_mode.STRICT_FP32) -> None:
    """Set ``mode`` in every library the check runs, so no model silently uses TF32."""
    for library in dict.fromkeys(libraries):
        math_mode.set_math_mode(library, mode)


def check_parity(
    arch: Architecture,
    split_impl: str = "grouped",
    *,
    keras_arch: Architecture | None = None,
    mapping: Mapping | None = None,
    batch_size: int = 2,
    seed: int = 0,
    rtol: float = DEFAULT_RTOL,
    input_scale: float = DEFAULT_INPUT_SCALE,
) -> ParityReport:
    """Compare PyTorch (built from ``arch``) with Keras (built from ``keras_arch`` or ``arch``).

    ``mapping`` converts PyTorch-layout weights to Keras layout (default ``torch_to_keras``).
    """
    import torch

    from implementations import keras_alexnet
    from implementations.torch_alexnet import build_torch_model

    keras_backend = keras_alexnet.backend_name()
    pin_math_mode(["torch", keras_backend])
    keras_arch = keras_arch or arch
    mapping = mapping or torch_to_keras
    spec = infer(arch)
    torch.manual_seed(seed)
    torch_model = build_torch_model(arch, split_impl).eval()
    keras_model = keras_alexnet.build_keras_model(keras_arch, split_impl)

    torch_params = torch_model.layer_parameter_counts()
    keras_params = keras_alexnet.layer_parameter_counts(keras_model, keras_arch)
    weight_layers = [info.name for info in spec if info.kind in ("conv", "dense")]
    paper = dict(zip(weight_layers, arch.paper_neurons, strict=True)) if arch.paper_neurons else {}

    x = np.random.default_rng(seed).standard_normal((batch_size, *arch.input_shape)) * input_scale
    x = x.astype(np.float32)
    with torch.no_grad():
        torch_tensors = torch_model.layer_outputs(torch.from_numpy(x))
    torch_out = {k: v.numpy() for k, v in torch_tensors.items()}

    failures: list[str] = []
    transferred = False
    try:
        keras_alexnet.load_weights(keras_model, mapping(torch_model.export_weights(), keras_arch))
        transferred = True
    except (KeyError, ValueError) as error:
        failures.append(f"weight transfer failed: {error}")
    probe = keras_alexnet.layer_output_model(keras_model, keras_arch)
    outputs = probe(x.transpose(0, 2, 3, 1), training=False)
    keras_out = {k: keras_alexnet.to_numpy(v) for k, v in outputs.items()}
    last_name = spec[-1].name
    devices = {
        "torch": tensor_device(torch_tensors[last_name]),
        f"keras ({keras_backend})": tensor_device(outputs[last_name]) if last_name in outputs else "unknown",
    }

    layers, previous_map = [], None
    for info in spec:
        t_val, k_val = torch_out.get(info.name), keras_out.get(info.name)
        row = LayerParity(
            name=info.name,
            spec_shape=info.output_shape,
            torch_shape=None if t_val is None else tuple(t_val.shape[1:]),
            keras_shape=None if k_val is None else tuple(k_val.shape[1:]),
            spec_params=info.params,
            torch_params=torch_params.get(info.name),
            keras_params=keras_params.get(info.name),
            neurons=info.neurons,
            paper_neurons=paper.get(info.name),
        )
        if row.torch_shape != info.output_shape:
            row.problems.append(f"PyTorch output {row.torch_shape} != spec {info.output_shape}")
        if row.keras_shape is None or keras_to_torch_shape(row.keras_shape) != info.output_shape:
            row.problems.append(f"Keras output {row.keras_shape} (HWC) != spec {info.output_shape} (CHW)")
        if row.torch_params != info.params:
            row.problems.append(f"PyTorch parameters {row.torch_params} != spec {info.params}")
        if row.keras_params != info.params:
            row.problems.append(f"Keras parameters {row.keras_params} != spec {info.params}")
        if transferred and not row.problems:
            k_as_t = keras_activation_as_torch(k_val, previous_map)
            row.max_abs_diff, row.rel_diff = relative_difference(k_as_t, t_val)
            if not row.rel_diff <= rtol:
                row.problems.append(
                    f"outputs differ: max |diff| {row.max_abs_diff:.3g}, relative {row.rel_diff:.3g} > {rtol:g}"
                )
        previous_map = row.keras_shape if row.keras_shape and len(row.keras_shape) == 3 else None
        layers.append(row)

    failures += [f"{row.name}: {problem}" for row in layers for problem in row.problems]
    last = layers[-1]
    return ParityReport(
        variant=arch.name,
        split_impl=split_impl,
        rtol=rtol,
        layers=layers,
        logits_max_abs_diff=last.max_abs_diff,
        logits_rel_diff=last.rel_diff,
        failures=failures,
        math_mode=math_mode.STRICT_FP32,
        devices=devices,
    )
