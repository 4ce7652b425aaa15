"""Reading and checking a Keras port (functional or Sequential model) for ``bench.py check-model``: its graph's calls
as port layers, their kinds and configurations, and the check against the suite's own Keras model
(``keras_alexnet``)."""

from __future__ import annotations

import numpy as np

from implementations.parity import keras_to_torch_shape
from implementations.port_check import (
    CheckModelError,
    LayerCheck,
    PortLayer,
    PortReader,
    link_activations,
    lrn_config,
    output_sources,
    tower_weights,
    weight_pairs,
)
from implementations.spec import Architecture
from implementations.weight_mapping import torch_to_keras


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
    if isinstance(layer, kl.Dropout):
        return "dropout", {"rate": layer.rate}
    plain = {kl.Flatten: "flatten", kl.Activation: "activation", kl.ReLU: "activation"}  # nothing to compare
    if kind := next((kind for kinds, kind in plain.items() if isinstance(layer, kinds)), None):
        return kind, {}
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


class KerasPortReader(PortReader):
    framework = "keras"
    library = "keras"
    model_type = "Model"

    def layers(self, model, x: np.ndarray) -> list[PortLayer]:
        x_hwc = x.transpose(0, 2, 3, 1)
        try:
            model(x_hwc[:1], training=False)
        except Exception as error:
            raise CheckModelError(
                f"the model fails on a {x_hwc.shape[1:]} input: {type(error).__name__}: {error}"
            ) from None
        return keras_layers(model)

    def outputs(self, model, arch: Architecture, checks: list[LayerCheck], weights: dict, x: np.ndarray) -> tuple:
        import keras
        from keras import ops

        from implementations import keras_alexnet

        weights = torch_to_keras(weights, arch)
        for check in weight_pairs(checks):
            pieces = check.port.pieces
            for part, (kernel, bias) in zip(pieces, tower_weights(weights[check.name], len(pieces), -1), strict=True):
                part.handle.set_weights([kernel, bias])
        outputs = {
            name: sources[0].gives if len(sources) == 1 else ops.concatenate([s.gives for s in sources], axis=-1)
            for name, sources in output_sources(checks).items()
        }
        inputs = model.inputs[0] if len(model.inputs) == 1 else model.inputs  # called with a bare array below
        x_hwc = x.transpose(0, 2, 3, 1)
        port_out = {
            k: keras_alexnet.to_numpy(v) for k, v in keras.Model(inputs, outputs)(x_hwc, training=False).items()
        }
        reference = keras_alexnet.build_keras_model(arch, "grouped")
        keras_alexnet.load_weights(reference, weights)
        ref_probe = keras_alexnet.layer_output_model(reference, arch)
        return port_out, {k: keras_alexnet.to_numpy(v) for k, v in ref_probe(x_hwc, training=False).items()}
