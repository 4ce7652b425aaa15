"""Check anyone's own AlexNet port (a PyTorch ``nn.Module`` or a Keras model) against a spec variant.

``check_model("my_port.py:build", arch)`` calls the factory, lists the port's layers in the order
they run, lines them up with the spec's layers by kind, and compares each layer's configuration,
output shape and parameter count with the spec. When every weight layer fits, the suite's initial
weights (``initial_weights``) are copied into the port in layer order, one batch of paper-scale
inputs runs through the port and through the suite's own model of the same framework, and every
layer's output is compared (``implementations.parity``'s measure and tolerance). The report names
the first layer that differs and the likely cause: LRN constants, padding, pooling, grouping or
flatten order.

Ports are read call by call: a PyTorch leaf module called once per tower (an LRN wrapper that
normalises each half of the channels) is listed once per call, and so is a Keras layer called on
each tower. The paper's two-tower split may be written as grouped convolutions (``groups=2``) or as
separate per-tower modules joined along channels (``torch.cat``, Keras ``Concatenate``, the towers
cut out with slices or ``Lambda`` layers): the parts of one spec layer are merged into one port
layer (:func:`merge_towers`), whether the port runs each layer for every tower before the next
(layer-major) or runs each tower through several layers before the next tower (tower-major). The
spec's weights are then split among the parts along the output axis, as the grouped layout is.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
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
from implementations.spec import LRN, Architecture, Conv, Dense, Dropout, Layer, LayerInfo, MaxPool, infer
from implementations.weight_mapping import torch_to_keras

# Calls that are not layers of the spec: activations (compared as part of the layer they follow), the
# slicing and joining of towers, and Keras operations on symbolic tensors (invisible in PyTorch too).
SKIPPED_KINDS = ("activation", "split", "join", "op")


class CheckModelError(ValueError):
    """The port cannot be loaded or run; the message says what to fix (one line)."""


@dataclass(eq=False)
class PortLayer:
    """One call of a layer of the port as it ran: kind, configuration, output shape (C, H, W) and parameters;
    or, with ``parts``, the towers' calls that together make one spec layer."""

    name: str
    kind: str  # conv, lrn, lrn?, pool, flatten, dense, dropout, activation, split, join, op, other
    config: dict = field(default_factory=dict)
    output_shape: tuple[int, ...] = ()
    params: int = 0
    handle: object = None  # the framework's module or layer, for weights (None when merged: see parts)
    input_shape: tuple[int, ...] = ()
    parts: list[PortLayer] = field(default_factory=list)  # per-tower calls merged into this layer, in tower order
    notes: list[str] = field(default_factory=list)  # problems found while merging towers
    index: int = -1  # position among the port's calls; PyTorch outputs are read back by it
    takes: object = field(default=None, repr=False)  # the tensor it was called on
    gives: object = field(default=None, repr=False)  # the tensor it returned
    activation: PortLayer | None = field(default=None, repr=False)  # the activation called on what it gave

    @property
    def pieces(self) -> list[PortLayer]:
        """The calls that make this layer: its towers' parts, or itself."""
        return self.parts or [self]


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
            # As `python -m` does: a package in the folder the command runs from is importable by its name.
            sys.path.insert(0, os.getcwd())
            try:
                module = importlib.import_module(where)
            finally:
                sys.path.pop(0)
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
    """Leaf-module calls in the order they ran, and each call's output (by position).

    A module called more than once (one LRN or pooling module applied to each tower) is listed once
    per call: each call is one tower's part of a spec layer.
    """
    import torch
    from torch import nn

    calls: list[tuple[str, nn.Module, object, torch.Tensor, torch.Tensor]] = []

    def record(module, inputs, out, name):
        # The clone keeps the values an in-place ReLU overwrites; the tensors themselves say who feeds whom.
        calls.append((name, module, inputs[0] if inputs else None, out, out.detach().clone()))

    hooks = [
        module.register_forward_hook(lambda mod, args, out, name=name: record(mod, args, out, name))
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
    layers = []
    for index, (name, module, taken, out, _) in enumerate(calls):
        params = sum(p.numel() for p in module.parameters(recurse=False))
        layer = PortLayer(name, "other", {}, tuple(out.shape[1:]), params, module, index=index, takes=taken, gives=out)
        layer.input_shape = tuple(taken.shape[1:]) if isinstance(taken, torch.Tensor) else ()
        layer.kind, layer.config = torch_kind(module)
        layers.append(layer)
    link_activations(layers)
    return layers, {index: call[4].numpy() for index, call in enumerate(calls)}


def torch_kind(module) -> tuple[str, dict]:
    """A PyTorch leaf module's kind and the configuration the spec is compared with."""
    from torch import nn

    from implementations.torch_alexnet import LocalResponseNorm as PaperLRN

    if isinstance(module, nn.Conv2d):
        padding = module.padding if isinstance(module.padding, str) else module.padding[0]
        config = {"filters": module.out_channels, "kernel": module.kernel_size[0], "stride": module.stride[0]}
        return "conv", config | {"padding": padding, "groups": module.groups}
    if isinstance(module, nn.Linear):
        return "dense", {"units": module.out_features}
    if isinstance(module, nn.MaxPool2d):
        return "pool", {"size": first_of(module.kernel_size), "stride": first_of(module.stride)}
    if isinstance(module, nn.LocalResponseNorm):  # divides alpha by size
        config = {"size": module.size, "alpha": module.alpha / module.size, "given_alpha": module.alpha}
        return "lrn", config | {"k": module.k, "beta": module.beta, "divides": True}
    if isinstance(module, PaperLRN):
        return "lrn", lrn_config(module)
    if isinstance(module, nn.Flatten):
        return "flatten", {}
    if isinstance(module, nn.Dropout):
        return "dropout", {"rate": module.p}
    if isinstance(module, (nn.ReLU, nn.Identity)):
        return "activation", {}
    return "other", {}


def first_of(value: int | tuple[int, ...]) -> int:
    """A square window's size, given as an int or a tuple."""
    return value if isinstance(value, int) else value[0]


def lrn_config(layer: object) -> dict:
    """An LRN's constants as the paper states them (alpha multiplying the plain sum), from the suite's LRN layers."""
    return {"size": layer.size, "alpha": layer.alpha, "k": layer.k, "beta": layer.beta}


def keras_calls(model) -> list:
    """The Keras model's calls (graph nodes: a layer called on each tower is listed once per call).

    They come in a depth-first walk back from the outputs, so everything a Concatenate joins comes
    tower after tower, in the order it joins them: the order the towers' weights are split in.
    """
    order, seen = [], set()

    def visit(tensor) -> None:
        operation, node_index, _ = tensor._keras_history
        node = operation._inbound_nodes[node_index]
        if id(node) not in seen:
            seen.add(id(node))
            for parent in node.input_tensors:
                visit(parent)
            order.append(node)

    try:
        outputs = model.outputs
    except (AttributeError, ValueError):
        outputs = None
    if not outputs:
        raise CheckModelError(
            "a Keras port must be a functional or Sequential model (its layers are read from the graph)"
        )
    for output in outputs:
        visit(output)
    return order


def keras_layers(model) -> list[PortLayer]:
    """The model's calls in order; ZeroPadding2D is folded into the convolution it feeds."""
    from keras import layers as kl

    found = []
    for index, node in enumerate(keras_calls(model)):
        operation = node.operation
        if node.is_input or isinstance(operation, kl.ZeroPadding2D):
            continue
        taken, given = node.input_tensors[0], node.outputs[0]
        params = operation.count_params() if isinstance(operation, kl.Layer) else 0
        port = PortLayer(operation.name, "other", {}, channels_first(given), params, operation, index=index)
        port.input_shape, port.takes, port.gives = channels_first(taken), taken, given
        port.kind, port.config = keras_kind(node, port)
        found.append(port)
    link_activations(found)
    return found


def channels_first(tensor) -> tuple[int, ...]:
    """A symbolic Keras tensor's shape without the batch axis, as (C, H, W) for maps."""
    return keras_to_torch_shape(tuple(tensor.shape[1:]))


def keras_kind(node, port: PortLayer) -> tuple[str, dict]:
    """A Keras call's kind and the configuration the spec is compared with."""
    from keras import layers as kl

    from implementations.keras_alexnet import LocalResponseNormalization

    layer = node.operation
    if isinstance(layer, kl.Conv2D):
        kernel, stride = layer.kernel_size[0], layer.strides[0]
        same = stride == 1 and kernel % 2 == 1
        padding = keras_padding(node) if layer.padding == "valid" else (kernel - 1) // 2 if same else "same"
        config = {"filters": layer.filters, "kernel": kernel, "stride": stride}
        return "conv", config | {"padding": padding, "groups": layer.groups}
    if isinstance(layer, kl.Dense):
        return "dense", {"units": layer.units}
    if isinstance(layer, kl.MaxPooling2D):
        return "pool", {"size": layer.pool_size[0], "stride": layer.strides[0]}
    if isinstance(layer, LocalResponseNormalization):
        return "lrn", lrn_config(layer)
    if isinstance(layer, kl.Flatten):
        return "flatten", {}
    if isinstance(layer, kl.Dropout):
        return "dropout", {"rate": layer.rate}
    if isinstance(layer, (kl.Activation, kl.ReLU)):
        return "activation", {}
    if isinstance(layer, kl.Lambda) and port.output_shape == port.input_shape:
        return "lrn?", {}  # a shape-keeping Lambda, often tf.nn.local_response_normalization
    if port.params == 0 and (kind := channel_routing(node)):
        return kind, {}
    return ("other" if isinstance(layer, kl.Layer) else "op"), {}


def keras_padding(node) -> int:
    """The symmetric zero padding of a ZeroPadding2D that feeds this convolution (0 without one)."""
    from keras import layers as kl

    producer = node.input_tensors[0]._keras_history.operation
    return producer.padding[0][0] if isinstance(producer, kl.ZeroPadding2D) else 0


def channel_routing(node) -> str:
    """'split' for a call that cuts channels out of one tensor (a slicing Lambda, ``x[..., :48]``,
    ``ops.split``), 'join' for one that stacks tensors along channels (Concatenate), '' otherwise:
    they route the towers and are no layer of the spec."""
    inputs = [channels_first(t) for t in node.input_tensors]
    outputs = [channels_first(t) for t in node.outputs]
    if not inputs or not outputs or any(s[1:] != inputs[0][1:] for s in inputs + outputs):
        return ""
    if len(inputs) > 1 and len(outputs) == 1 and outputs[0][0] == sum(s[0] for s in inputs):
        return "join"
    if len(inputs) == 1 and all(s[0] < inputs[0][0] for s in outputs):
        return "split"
    return ""


def link_activations(layers: list[PortLayer]) -> None:
    """Point each call at the activation called on the tensor it gave (a ReLU module, an Activation layer).

    Followed by tensor, not by position, so that a layer's compared output includes its own ReLU
    however the towers' calls interleave. An in-place ReLU gives the tensor it takes: it is not its
    own activation.
    """
    taking = {}
    for layer in layers:
        if layer.kind == "activation" and layer.takes is not None:
            taking.setdefault(id(layer.takes), layer)
    for layer in layers:
        follower = taking.get(id(layer.gives))
        layer.activation = follower if follower is not layer else None


def after_activations(layer: PortLayer) -> PortLayer:
    """The last call of the chain of activations applied to ``layer``'s output (``layer`` without one)."""
    while layer.activation is not None:
        layer = layer.activation
    return layer


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
    """Pair spec layers with port layers by kind, in order; a layer the port lacks is named as missing.

    Per-tower parts are merged first, as the queue reaches them (:func:`merge_towers`).
    """
    spec = infer(arch)
    queue = [p for p in port_layers if p.kind not in SKIPPED_KINDS]
    checks = []
    for index, (layer, info) in enumerate(zip(arch.layers, spec, strict=True)):
        check = LayerCheck(layer.name, info.kind, info.output_shape, info.params)
        if queue:
            before = next((c.port for c in reversed(checks) if c.port is not None), None)
            merge_towers(queue, info, before.output_shape[0] if before else arch.input_shape[0])
        checks.append(check)
        kind, port = spec_kind(layer), queue[0] if queue else None
        if kind == "flatten" and (port is None or port.kind != "flatten"):
            continue  # flattened in forward(); the next dense layer's input shows it
        if port is not None and (port.kind == kind or (kind == "lrn" and port.kind == "lrn?")):
            check.port = queue.pop(0)
            check.problems += port.notes + config_problems(layer, port)
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


def merge_towers(queue: list[PortLayer], info: LayerInfo, width: int) -> None:
    """Replace the towers' parts at the front of ``queue`` by one merged layer per spec layer.

    The front layer is one of t towers' parts when its output is 1/t of the spec layer's along
    channels (or features). Its tower then runs for some layers before the next tower's run repeats
    them (:func:`tower_period`): one layer when the port runs each layer for every tower before the
    next (layer-major), several when each tower is its own sequence (tower-major). The i-th layers
    of the towers' runs are merged. ``width`` is the channel count of the port's layer before them.
    """
    towers = tower_count(queue[0], info)
    period = tower_period(queue, towers) if towers > 1 else 0
    if not period:
        return
    merged: list[PortLayer] = []
    for first in range(period):
        parts = queue[first : period * towers : period]
        merged.append(merge_parts(parts, merged[-1].output_shape[0] if merged else width))
    queue[: period * towers] = merged


def tower_count(layer: PortLayer, info: LayerInfo) -> int:
    """t when ``layer``'s output is 1/t of the spec layer's along the first axis (t >= 2), else 1."""
    shape, whole = layer.output_shape, info.output_shape
    if not shape or shape[1:] != whole[1:] or whole[0] % shape[0]:
        return 1
    return whole[0] // shape[0]


def tower_period(queue: list[PortLayer], towers: int) -> int:
    """The length of one tower's run at the front of ``queue`` (0 if none).

    The smallest p such that the next ``towers - 1`` runs of p layers repeat the first: the same
    kinds with the same input and output shapes (the input shape tells a tower's conv3 from its
    conv4 even where their outputs agree).
    """

    def signature(layer: PortLayer) -> tuple:
        return layer.kind, layer.input_shape, layer.output_shape

    for period in range(1, len(queue) // towers + 1):
        run = [signature(layer) for layer in queue[:period]]
        if all(signature(queue[tower * period + i]) == run[i] for tower in range(1, towers) for i in range(period)):
            return period
    return 0


def merge_parts(parts: list[PortLayer], width: int) -> PortLayer:
    """One port layer from the towers' parts of one spec layer.

    Its output is the parts' outputs joined along channels (or features), its filters or units
    their sum, its parameters those of the distinct modules (one module called per tower holds
    them once). A convolution's grouping comes from what each part sees: a part that sees 1/t of
    the ``width`` input channels is one of t groups; conv3 and the dense layers, which see both
    towers in the paper, have parts that see every channel: one group.
    """
    first = parts[0]
    config = dict(first.config)
    if first.kind == "conv":
        config["filters"] = sum(part.config["filters"] for part in parts)
        seen = first.input_shape[0]
        config["groups"] = first.config["groups"] * (width // seen if width % seen == 0 else 1)
    elif first.kind == "dense":
        config["units"] = sum(part.config["units"] for part in parts)
    params = sum({id(part.handle): part.params for part in parts}.values())
    shape = (sum(part.output_shape[0] for part in parts), *first.output_shape[1:])
    names = list(dict.fromkeys(part.name for part in parts))
    name = f"{names[0]} ×{len(parts)}" if len(names) == 1 else " + ".join(names)
    notes = [
        f"its towers differ: {key} {part.config.get(key)} in {part.name}, {value} in {first.name}"
        for part in parts[1:]
        for key, value in first.config.items()
        if part.config.get(key) != value
    ]
    return PortLayer(name, first.kind, config, shape, params, parts=list(parts), notes=notes)


def tower_weights(arrays: dict[str, np.ndarray], parts: int, kernel_axis: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """The spec layer's (kernel, bias) split among a port layer's parts along the output axis.

    The spec's weights are in the grouped layout, where tower i owns the i-th slice of the outputs
    (and a grouped kernel's i-th slice reads the i-th slice of the inputs): part i takes slice i.
    """
    kernels = np.split(arrays["kernel"], parts, axis=kernel_axis)
    return list(zip(kernels, np.split(arrays["bias"], parts), strict=True))


def output_sources(checks: list[LayerCheck]) -> dict[str, list[PortLayer]]:
    """Per lined-up spec layer, the calls whose outputs, joined along channels, are the port's output
    for it: each part's, after the activations called on it."""
    return {c.name: [after_activations(part) for part in c.port.pieces] for c in checks if c.port is not None}


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


def likely_cause(layer: Layer, kind: str, first_dense: bool) -> str:
    """What most often makes this layer's outputs differ."""
    if isinstance(layer, Dense) and first_dense:
        return FLATTEN_HINT
    cause = CAUSES.get(kind, "")
    if isinstance(layer, LRN) and layer.towers > 1:
        cause += (
            f"; or a window that crosses the towers: in the split each of the {layer.towers} towers normalises "
            "its own maps (section 3.2)"
        )
    return cause


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
            cause = likely_cause(layer, check.kind, first_dense)
            check.problems.append(
                f"outputs differ: relative {check.rel_diff:.3g} > {rtol:g}"
                + (f"; likely cause: {cause}" if cause else "")
            )
        first_dense &= not isinstance(layer, Dense)


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
            pieces = check.port.pieces
            for part, (kernel, bias) in zip(pieces, tower_weights(weights[check.name], len(pieces), 0), strict=True):
                module = part.handle
                module.weight.copy_(torch.from_numpy(kernel).reshape(module.weight.shape))
                module.bias.copy_(torch.from_numpy(bias))
    _, outputs = torch_layers(model, torch.from_numpy(x))  # the same calls in the same order, new weights
    port_out = {
        name: np.concatenate([outputs[source.index] for source in sources], axis=1)
        for name, sources in output_sources(checks).items()
    }
    reference = build_torch_model(arch, "grouped").eval()
    reference.import_weights(weights)
    with torch.no_grad():
        ref_out = {k: v.numpy() for k, v in reference.layer_outputs(torch.from_numpy(x)).items()}
    compare_outputs(checks, port_out, ref_out, arch, rtol)
    return checks, extra, ""


def check_keras(model, arch: Architecture, seed: int, rtol: float, x: np.ndarray):
    import keras
    from keras import ops

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
        pieces = check.port.pieces
        for part, (kernel, bias) in zip(pieces, tower_weights(weights[check.name], len(pieces), -1), strict=True):
            part.handle.set_weights([kernel, bias])
    outputs = {
        name: sources[0].gives if len(sources) == 1 else ops.concatenate([s.gives for s in sources], axis=-1)
        for name, sources in output_sources(checks).items()
    }
    inputs = model.inputs[0] if len(model.inputs) == 1 else model.inputs  # called with a bare array below
    probe = keras.Model(inputs, outputs)
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
