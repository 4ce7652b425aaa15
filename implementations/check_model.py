"""Check anyone's own AlexNet port (a PyTorch ``nn.Module`` or a Keras model) against a spec variant.

``check_model("my_port.py:build", arch)`` calls the factory, lists the port's layers in the order
they run, lines them up with the spec's layers by kind, and compares each layer's configuration,
output shape and parameter count with the spec. When every weight layer fits, the suite's initial
weights (``initial_weights``) are copied into the port in layer order, one batch of paper-scale
inputs runs through the port and through the suite's own model of the same framework, and every
layer's output is compared (``implementations.parity``'s measure and tolerance). The report names
the first layer that differs and the likely cause: LRN constants, padding, pooling, grouping or
flatten order.

Ports are read layer by layer: the split must be written as grouped convolutions (``groups=2``);
separate per-tower convolutions are not lined up with the spec.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from implementations.initial_weights import initial_weights
from implementations.parity import (
    DEFAULT_INPUT_SCALE,
    DEFAULT_RTOL,
    LayerVerdict,
    keras_to_torch_shape,
    relative_difference,
)
from implementations.spec import LRN, Architecture, Conv, Dense, Dropout, Layer, MaxPool, infer
from implementations.weight_mapping import torch_to_keras

SKIPPED_KINDS = ("activation", "input")


class CheckModelError(ValueError):
    """The port cannot be loaded or run; the message says what to fix (one line)."""


@dataclass
class PortLayer:
    """One layer of the port as it ran: kind, configuration, output shape (C, H, W) and parameters."""

    name: str
    kind: str  # conv, lrn, pool, flatten, dense, dropout, activation, padding, other
    config: dict = field(default_factory=dict)
    output_shape: tuple[int, ...] = ()
    params: int = 0
    handle: object = None  # the framework's module or layer, for weights and outputs


@dataclass
class LayerCheck(LayerVerdict):
    name: str
    kind: str
    spec_shape: tuple[int, ...]
    spec_params: int
    port: PortLayer | None = None


@dataclass
class CheckReport:
    target: str
    framework: str
    variant: str
    rtol: float
    layers: list[LayerCheck]
    extra: list[PortLayer]  # port layers left over after the spec's last layer
    compared: bool  # weights copied and outputs compared
    not_compared_because: str = ""

    @property
    def first_failing(self) -> LayerCheck | None:
        return next((layer for layer in self.layers if not layer.ok), None)

    @property
    def ok(self) -> bool:
        return self.first_failing is None and not self.extra and self.compared


# --- loading ------------------------------------------------------------------------------------


def load_factory(target: str) -> Callable[[], object]:
    """``path/to/file.py:function`` or ``package.module:function`` -> the function."""
    where, sep, function = target.rpartition(":")
    if not sep or not where or not function:
        raise CheckModelError(f"{target!r}: expected PATH.py:FUNCTION or MODULE:FUNCTION")
    try:
        if where.endswith(".py") or "/" in where or "\\" in where:
            path = Path(where)
            if not path.is_file():
                raise CheckModelError(f"{where}: no such file")
            spec = importlib.util.spec_from_file_location(f"_port_{path.stem}", path)
            module = importlib.util.module_from_spec(spec)
            sys.path.insert(0, str(path.resolve().parent))  # the port's own sibling imports
            try:
                spec.loader.exec_module(module)
            finally:
                sys.path.pop(0)
        else:
            module = importlib.import_module(where)
    except CheckModelError:
        raise
    except Exception as error:  # the user's code: any failure is reported as one line
        raise CheckModelError(f"cannot import {where}: {type(error).__name__}: {error}") from None
    factory = getattr(module, function, None)
    if not callable(factory):
        raise CheckModelError(f"{where} has no function {function!r}")
    return factory


def framework_of(model: object) -> str:
    """'torch' or 'keras'; anything else is refused."""
    if "torch" in sys.modules and isinstance(model, sys.modules["torch"].nn.Module):
        return "torch"
    if "keras" in sys.modules and isinstance(model, sys.modules["keras"].Model):
        return "keras"
    raise CheckModelError(f"the factory returned a {type(model).__name__}, not a torch nn.Module or a Keras model")


def build_port(target: str) -> tuple[object, str]:
    factory = load_factory(target)
    try:
        model = factory()
    except Exception as error:
        raise CheckModelError(f"{target}() failed: {type(error).__name__}: {error}") from None
    return model, framework_of(model)


# --- reading a port's layers ---------------------------------------------------------------------


def torch_layers(model, x) -> tuple[list[PortLayer], dict[int, np.ndarray]]:
    """Leaf modules in the order they ran, and each call's output (by position)."""
    import torch
    from torch import nn

    from implementations.torch_alexnet import LocalResponseNorm as PaperLRN

    calls: list[tuple[str, nn.Module, torch.Tensor]] = []
    hooks = [
        module.register_forward_hook(lambda mod, _, out, name=name: calls.append((name, mod, out.detach().clone())))
        for name, module in model.named_modules()
        if not list(module.children())
    ]
    try:
        with torch.no_grad():
            model.eval()(x)
    except Exception as error:
        raise CheckModelError(f"the model fails on a {tuple(x.shape)} input: {type(error).__name__}: {error}") from None
    finally:
        for hook in hooks:
            hook.remove()
    layers, outputs = [], {}
    for index, (name, module, out) in enumerate(calls):
        params = sum(p.numel() for p in module.parameters(recurse=False))
        layer = PortLayer(name, "other", {}, tuple(out.shape[1:]), params, module)
        if isinstance(module, nn.Conv2d):
            layer.kind = "conv"
            layer.config = {
                "filters": module.out_channels,
                "kernel": module.kernel_size[0],
                "stride": module.stride[0],
                "padding": module.padding if isinstance(module.padding, str) else module.padding[0],
                "groups": module.groups,
            }
        elif isinstance(module, nn.Linear):
            layer.kind, layer.config = "dense", {"units": module.out_features}
        elif isinstance(module, nn.MaxPool2d):
            size, stride = module.kernel_size, module.stride
            layer.kind = "pool"
            layer.config = {"size": size if isinstance(size, int) else size[0]}
            layer.config["stride"] = stride if isinstance(stride, int) else stride[0]
        elif isinstance(module, nn.LocalResponseNorm):  # divides alpha by size
            layer.kind = "lrn"
            layer.config = {"size": module.size, "alpha": module.alpha / module.size, "given_alpha": module.alpha}
            layer.config |= {"k": module.k, "beta": module.beta, "divides": True}
        elif isinstance(module, PaperLRN):
            layer.kind, layer.config = "lrn", lrn_config(module)
        elif isinstance(module, nn.Flatten):
            layer.kind = "flatten"
        elif isinstance(module, nn.Dropout):
            layer.kind, layer.config = "dropout", {"rate": module.p}
        elif isinstance(module, (nn.ReLU, nn.Identity)):
            layer.kind = "activation"
        layers.append(layer)
        outputs[index] = out.numpy()
    return layers, outputs


def lrn_config(layer: object) -> dict:
    """An LRN's constants as the paper states them (alpha multiplying the plain sum), from the suite's LRN layers."""
    return {"size": layer.size, "alpha": layer.alpha, "k": layer.k, "beta": layer.beta}


def keras_layers(model) -> list[PortLayer]:
    """The model's layers in order; ZeroPadding2D is folded into the convolution after it."""
    from keras import layers as kl

    from implementations.keras_alexnet import LocalResponseNormalization

    found, pad = [], 0
    for layer in model.layers:
        shape = keras_to_torch_shape(tuple(layer.output.shape[1:]))
        port = PortLayer(layer.name, "other", {}, shape, layer.count_params(), layer)
        if isinstance(layer, kl.InputLayer):
            continue
        if isinstance(layer, kl.ZeroPadding2D):
            pad = layer.padding[0][0]
            continue
        if isinstance(layer, kl.Conv2D):
            kernel, stride = layer.kernel_size[0], layer.strides[0]
            same = stride == 1 and kernel % 2 == 1
            padding = pad if layer.padding == "valid" else (kernel - 1) // 2 if same else "same"
            port.kind = "conv"
            port.config = {"filters": layer.filters, "kernel": kernel, "stride": stride, "padding": padding}
            port.config["groups"] = layer.groups
            pad = 0
        elif isinstance(layer, kl.Dense):
            port.kind, port.config = "dense", {"units": layer.units}
        elif isinstance(layer, kl.MaxPooling2D):
            port.kind, port.config = "pool", {"size": layer.pool_size[0], "stride": layer.strides[0]}
        elif isinstance(layer, LocalResponseNormalization):
            port.kind, port.config = "lrn", lrn_config(layer)
        elif isinstance(layer, kl.Flatten):
            port.kind = "flatten"
        elif isinstance(layer, kl.Dropout):
            port.kind, port.config = "dropout", {"rate": layer.rate}
        elif isinstance(layer, (kl.Activation, kl.ReLU)):
            port.kind = "activation"
        elif isinstance(layer, kl.Lambda) and port.output_shape == keras_to_torch_shape(tuple(layer.input.shape[1:])):
            port.kind = "lrn?"  # a shape-keeping Lambda, often tf.nn.local_response_normalization
        found.append(port)
    return found


# --- lining up and comparing -------------------------------------------------------------------


def spec_kind(layer: Layer) -> str:
    return {Conv: "conv", LRN: "lrn", MaxPool: "pool", Dense: "dense", Dropout: "dropout"}.get(type(layer), "flatten")


def config_problems(layer: Layer, port: PortLayer) -> list[str]:
    """What differs between a spec layer and the port layer lined up with it, with the likely cause."""
    c, problems = port.config, []
    if isinstance(layer, Conv):
        if c["kernel"] != layer.kernel:
            problems.append(f"kernel {c['kernel']}x{c['kernel']}, the spec's is {layer.kernel}x{layer.kernel}")
        if c["stride"] != layer.stride:
            problems.append(f"stride {c['stride']}, the spec's is {layer.stride}")
        if c["padding"] != layer.padding:
            problems.append(f"padding {c['padding']!r}, the spec's is {layer.padding} on each side")
        if c["groups"] != layer.towers:
            problems.append(
                f"grouping: groups={c['groups']}, the spec's is {layer.towers} (the paper's two-GPU split, section 3.5)"
            )
        if c["filters"] != layer.filters:
            problems.append(f"{c['filters']} filters, the spec's is {layer.filters}")
    elif isinstance(layer, MaxPool) and (c["size"], c["stride"]) != (layer.size, layer.stride):
        problems.append(
            f"pooling {c['size']}x{c['size']}/{c['stride']}, the spec's is {layer.size}x{layer.size}/{layer.stride} "
            "(the paper's overlapping pooling, section 3.4)"
        )
    elif isinstance(layer, LRN) and c:
        if c.get("divides") and not np.isclose(c["alpha"], layer.alpha):
            problems.append(
                f"LRN constants: alpha divided by n: PyTorch's LocalResponseNorm divides alpha by size, so "
                f"alpha={c['given_alpha']:g} acts as {c['alpha']:g} on the plain sum; the paper's {layer.alpha:g} "
                f"needs alpha={layer.alpha * layer.size:g} there (section 3.3)"
            )
        elif not np.isclose(c["alpha"], layer.alpha):
            problems.append(f"LRN constants: alpha {c['alpha']:g} on the plain sum, the paper's is {layer.alpha:g}")
        for name in ("size", "k", "beta"):
            if not np.isclose(c[name], getattr(layer, name)):
                problems.append(f"LRN constants: {name} {c[name]:g}, the paper's is {getattr(layer, name):g}")
    elif isinstance(layer, Dense) and c["units"] != layer.units:
        problems.append(f"{c['units']} units, the spec's is {layer.units}")
    elif isinstance(layer, Dropout) and not np.isclose(c["rate"], layer.rate):
        problems.append(f"dropout rate {c['rate']:g}, the spec's is {layer.rate:g}")
    return problems


MISSING_REASONS = {
    "lrn": "no LRN here: the paper normalises the ReLU outputs of conv1 and conv2 (section 3.3)",
    "pool": "no max pooling here (the paper's overlapping 3x3/2 pooling, section 3.4)",
    "dropout": "no dropout here (the paper's 0.5 on fc6 and fc7, section 4.2)",
}


def line_up(arch: Architecture, port_layers: list[PortLayer]) -> tuple[list[LayerCheck], list[PortLayer]]:
    """Pair spec layers with port layers by kind, in order; a layer the port lacks is named as missing."""
    spec = infer(arch)
    queue = [p for p in port_layers if p.kind not in SKIPPED_KINDS]
    checks = []
    for index, (layer, info) in enumerate(zip(arch.layers, spec, strict=True)):
        check = LayerCheck(layer.name, info.kind, info.output_shape, info.params)
        checks.append(check)
        kind, port = spec_kind(layer), queue[0] if queue else None
        if kind == "flatten" and (port is None or port.kind != "flatten"):
            continue  # flattened in forward(); the next dense layer's input shows it
        if port is not None and (port.kind == kind or (kind == "lrn" and port.kind == "lrn?")):
            check.port = queue.pop(0)
            check.problems += config_problems(layer, port)
            if port.output_shape != info.output_shape:
                check.problems.append(f"output {port.output_shape} (CHW), the spec's is {info.output_shape}")
            if port.params != info.params:
                check.problems.append(f"{port.params:,} parameters, the spec's is {info.params:,}")
            continue
        following = [spec_kind(later) for later in arch.layers[index + 1 :]]
        if port is not None and following and port.kind == following[0] or port is None:
            check.problems.append(MISSING_REASONS.get(kind, f"no {kind} layer here"))
        else:
            found = f"a {port.kind} layer ({port.name})"
            reason = MISSING_REASONS.get(kind, f"expected a {kind} layer")
            check.problems.append(f"{found} where the spec has {layer.name}: {reason}")
            check.port = queue.pop(0)
    return checks, queue


def weight_pairs(checks: list[LayerCheck]) -> list[LayerCheck]:
    return [c for c in checks if c.kind in ("conv", "dense")]


def transferable(checks: list[LayerCheck]) -> str:
    """Why weights cannot be copied in layer order ('' when they can)."""
    for check in weight_pairs(checks):
        if check.port is None or check.port.kind != check.kind:
            return f"{check.name} has no matching layer in the port"
        if check.port.params != check.spec_params:
            return f"{check.name} holds {check.port.params:,} parameters, the spec's {check.spec_params:,}"
    return ""


FLATTEN_HINT = (
    "flatten order: PyTorch flattens a (C, H, W) map, Keras an (H, W, C) one; fc6's input columns must follow it"
)
CAUSES = {
    "conv": "padding or stride (Keras 'same' pads asymmetrically for stride > 1), or grouping",
    "lrn": "LRN constants (is alpha divided by n? the paper's alpha=1e-4 multiplies the plain sum, section 3.3)",
    "pool": "pooling size, stride or padding",
    "dense": "the layer before it, or its activation",
    "flatten": FLATTEN_HINT,
}


def compare_outputs(checks: list[LayerCheck], port_out: dict[str, np.ndarray], ref_out: dict, arch, rtol) -> None:
    """Each spec layer's port output against the reference's; ReLU is applied where the spec has one."""
    first_dense = True
    for layer, check in zip(arch.layers, checks, strict=True):
        if check.name not in port_out:
            first_dense &= not isinstance(layer, Dense)
            continue
        mine, reference = port_out[check.name], ref_out[check.name]
        if getattr(layer, "activation", None) == "relu":
            mine = np.maximum(mine, 0)  # the ReLU may be a separate module or a call in forward()
        if mine.shape != reference.shape:
            check.problems.append(f"output {mine.shape[1:]}, the reference's is {reference.shape[1:]}")
            continue
        check.max_abs_diff, check.rel_diff = relative_difference(mine, reference)
        if not check.rel_diff <= rtol:
            cause = FLATTEN_HINT if isinstance(layer, Dense) and first_dense else CAUSES.get(check.kind, "")
            check.problems.append(
                f"outputs differ: relative {check.rel_diff:.3g} > {rtol:g}"
                + (f"; likely cause: {cause}" if cause else "")
            )
        first_dense &= not isinstance(layer, Dense)


def _last_before_next(layers: list[PortLayer], checks: list[LayerCheck]) -> dict[str, int]:
    """For each matched spec layer, the index of the port's last layer before the next matched one
    (so a ReLU module after a convolution is part of that convolution's output)."""
    matched = {id(c.port): c.name for c in checks if c.port is not None}
    ends, current = {}, None
    for index, layer in enumerate(layers):
        if id(layer) in matched:
            current = matched[id(layer)]
        if current is not None and (layer.kind in SKIPPED_KINDS or id(layer) in matched):
            ends[current] = index
    return ends


def check_torch(model, arch: Architecture, seed: int, rtol: float, x: np.ndarray):
    import torch

    from implementations.torch_alexnet import build_torch_model

    layers, _ = torch_layers(model, torch.from_numpy(x))
    checks, extra = line_up(arch, layers)
    why = transferable(checks)
    if why:
        return checks, extra, why
    weights = initial_weights(arch, seed)
    with torch.no_grad():
        for check in weight_pairs(checks):
            module = check.port.handle
            module.weight.copy_(torch.from_numpy(weights[check.name]["kernel"]).reshape(module.weight.shape))
            module.bias.copy_(torch.from_numpy(weights[check.name]["bias"]))
    layers, outputs = torch_layers(model, torch.from_numpy(x))
    checks_again, _ = line_up(arch, layers)
    ends = _last_before_next(layers, checks_again)
    port_out = {name: outputs[index] for name, index in ends.items()}
    reference = build_torch_model(arch, "grouped").eval()
    reference.import_weights(weights)
    with torch.no_grad():
        ref_out = {k: v.numpy() for k, v in reference.layer_outputs(torch.from_numpy(x)).items()}
    compare_outputs(checks, port_out, ref_out, arch, rtol)
    return checks, extra, ""


def check_keras(model, arch: Architecture, seed: int, rtol: float, x: np.ndarray):
    import keras

    from implementations import keras_alexnet

    x_hwc = x.transpose(0, 2, 3, 1)
    try:
        model(x_hwc[:1], training=False)
    except Exception as error:
        raise CheckModelError(
            f"the model fails on a {x_hwc.shape[1:]} input: {type(error).__name__}: {error}"
        ) from None
    layers = keras_layers(model)
    checks, extra = line_up(arch, layers)
    why = transferable(checks)
    if why:
        return checks, extra, why
    weights = torch_to_keras(initial_weights(arch, seed), arch)
    for check in weight_pairs(checks):
        check.port.handle.set_weights([weights[check.name]["kernel"], weights[check.name]["bias"]])
    ends = _last_before_next(layers, checks)
    probe = keras.Model(model.inputs, {name: layers[index].handle.output for name, index in ends.items()})
    port_out = {k: keras_alexnet.to_numpy(v) for k, v in probe(x_hwc, training=False).items()}
    reference = keras_alexnet.build_keras_model(arch, "grouped")
    keras_alexnet.load_weights(reference, weights)
    ref_probe = keras_alexnet.layer_output_model(reference, arch)
    ref_out = {k: keras_alexnet.to_numpy(v) for k, v in ref_probe(x_hwc, training=False).items()}
    compare_outputs(checks, port_out, ref_out, arch, rtol)
    return checks, extra, ""


def check_model(
    target: str,
    arch: Architecture,
    *,
    seed: int = 0,
    batch_size: int = 2,
    rtol: float = DEFAULT_RTOL,
    input_scale: float = DEFAULT_INPUT_SCALE,
) -> CheckReport:
    """Build the port from ``target`` and check it against ``arch`` (see the module docstring)."""
    model, framework = build_port(target)
    x = np.random.default_rng(seed).standard_normal((batch_size, *arch.input_shape)) * input_scale
    x = x.astype(np.float32)
    run = check_torch if framework == "torch" else check_keras
    checks, extra, why = run(model, arch, seed, rtol, x)
    return CheckReport(target, framework, arch.name, rtol, checks, extra, compared=not why, not_compared_because=why)
