"""What checking a port against the spec needs whatever its framework: the port's layers as data, lining them up
with the spec's (merging per-tower parts), the problems and likely causes, and comparing outputs.

Each framework reads its own ports (``torch_port`` beside ``torch_alexnet``, ``keras_port`` beside ``keras_alexnet``):
a :class:`PortReader` says which models are its framework's, lists a model's layer calls as :class:`PortLayer`, and
runs the check with its framework. ``check_model`` picks the reader; nothing here names a framework.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field

import numpy as np

from implementations.initial_weights import initial_weights
from implementations.parity import LayerVerdict, relative_difference
from implementations.spec import LRN, Architecture, Conv, Dense, Dropout, Layer, LayerInfo, MaxPool, infer

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

    def to_dict(self) -> dict:
        """The report as JSON data, for the child process that checked the port to hand to the one that shows it:
        each layer's figures and words, the port's layers without their framework objects."""

        def port(layer: PortLayer | None) -> dict | None:
            if layer is None:
                return None
            return {
                "name": layer.name,
                "kind": layer.kind,
                "output_shape": list(layer.output_shape),
                "params": layer.params,
            }

        layers = [
            {
                "name": c.name,
                "kind": c.kind,
                "spec_shape": list(c.spec_shape),
                "spec_params": c.spec_params,
                "max_abs_diff": _json_number(c.max_abs_diff),
                "rel_diff": _json_number(c.rel_diff),
                "problems": list(c.problems),
                "port": port(c.port),
            }
            for c in self.layers
        ]
        return {
            "target": self.target,
            "framework": self.framework,
            "variant": self.variant,
            "rtol": self.rtol,
            "layers": layers,
            "extra": [port(layer) for layer in self.extra],
            "compared": self.compared,
            "not_compared_because": self.not_compared_because,
        }

    @classmethod
    def from_dict(cls, data: dict) -> CheckReport:
        def port(fields: dict | None) -> PortLayer | None:
            if fields is None:
                return None
            return PortLayer(fields["name"], fields["kind"], output_shape=tuple(fields["output_shape"]),
                             params=fields["params"])  # fmt: skip

        layers = [
            LayerCheck(
                max_abs_diff=_number_of(c["max_abs_diff"]),
                rel_diff=_number_of(c["rel_diff"]),
                problems=c["problems"],
                name=c["name"],
                kind=c["kind"],
                spec_shape=tuple(c["spec_shape"]),
                spec_params=c["spec_params"],
                port=port(c["port"]),
            )
            for c in data["layers"]
        ]
        return cls(
            data["target"], data["framework"], data["variant"], data["rtol"], layers,
            [port(p) for p in data["extra"]], data["compared"], data["not_compared_because"],
        )  # fmt: skip


def _json_number(value: float | None) -> float | str | None:
    """A difference as JSON: NaN and infinity (a port whose outputs overflow) as their names."""
    return None if value is None else float(value) if np.isfinite(value) else str(float(value))


def _number_of(value: float | str | None) -> float | None:
    return None if value is None else float(value)


def first_of(value: int | tuple[int, ...]) -> int:
    """A square window's size, given as an int or a tuple."""
    return value if isinstance(value, int) else value[0]


def lrn_config(layer: object) -> dict:
    """An LRN's constants as the paper states them (alpha multiplying the plain sum), from the suite's LRN layers."""
    return {"size": layer.size, "alpha": layer.alpha, "k": layer.k, "beta": layer.beta}


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


class PortReader:
    """How one framework's ports are read and checked; one subclass per framework, beside its builder."""

    framework: str = ""  # the suite's name for it, as results and tables show it
    library: str = ""  # the top-level package its model classes come from
    model_type: str = ""  # the class every model of the framework is, within ``library``

    def is_model(self, model: object) -> bool:
        """Whether ``model`` is one of this framework's models (its library is imported: the model came from it)."""
        found = importlib.import_module(self.library)
        for name in self.model_type.split("."):
            found = getattr(found, name)
        return isinstance(model, found)

    def layers(self, model, x: np.ndarray) -> list[PortLayer]:
        """The port's layer calls in the order they ran on ``x`` (NCHW); CheckModelError when it fails on it."""
        raise NotImplementedError

    def outputs(self, model, arch: Architecture, checks: list[LayerCheck], weights: dict, x: np.ndarray) -> tuple:
        """With the suite's ``weights`` (PyTorch layout) copied into the port's lined-up layers: (the port's output,
        the suite's own model's output) per spec layer, as NCHW arrays."""
        raise NotImplementedError

    def check(self, model, arch: Architecture, seed: int, rtol: float, x: np.ndarray):
        """(layer checks, extra port layers, why outputs were not compared or '') for ``x`` (NCHW inputs)."""
        checks, extra = line_up(arch, self.layers(model, x))
        why = transferable(checks)
        if not why:
            port_out, ref_out = self.outputs(model, arch, checks, initial_weights(arch, seed), x)
            compare_outputs(checks, port_out, ref_out, arch, rtol)
        return checks, extra, why
