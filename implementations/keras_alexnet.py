"""Keras 3 AlexNet built from an :class:`~implementations.spec.Architecture`.

A functional model, channels-last (Keras' default layout). Each spec layer becomes one Keras
layer with the spec's name, or, in the ``towers`` split formulation, one per tower named
``<name>_tower<i>``. Weights are loaded per spec layer in Keras layout (see ``weight_mapping``).
"""

from __future__ import annotations

import importlib
import re

from implementations.keras_backend import default_keras_backend
from implementations.quiet_import import import_quietly

default_keras_backend()  # read once, by the import below
import_quietly("keras")  # the backend's library comes with it, start-up lines and all

import keras  # noqa: E402
import numpy as np  # noqa: E402
from keras import layers, ops  # noqa: E402

from implementations.spec import LRN, Architecture, Conv, Dense, Dropout, Flatten, MaxPool, infer  # noqa: E402
from implementations.towers import split_width, streams  # noqa: E402
from implementations.variants import SPLIT_IMPLS  # noqa: E402
from implementations.weight_mapping import LayerWeights  # noqa: E402

# Compute dtypes an LRN is never run in: TensorFlow registers no bfloat16 LRN kernel (CPU or GPU) and
# its GPU kernel is float32 only; x / (k + alpha * sum x^2)^beta also loses most of bf16's 8 bits.
_LOW_PRECISION = ("bfloat16", "float16")


def native_lrn():
    """The LRN op of the library Keras computes with, where it has one (``tf.nn.local_response_normalization``), else
    None. Asked of the library itself, so no backend is named here."""
    library = importlib.import_module(keras.backend.backend())
    return getattr(getattr(library, "nn", None), "local_response_normalization", None)


@keras.saving.register_keras_serializable(package="alexnet")
class LocalResponseNormalization(layers.Layer):
    """The paper's LRN (section 3.3) over the last axis, within each of ``groups`` channel groups.

    Keras 3 has no LRN layer. Where the backend's library has one (``nn.local_response_normalization``:
    TensorFlow's, which takes a depth radius, size // 2, and like the paper does not divide alpha)
    this calls it; on other backends the same sum is written with ``keras.ops``.

    Under a mixed-precision policy (``mixed_bfloat16``, ``mixed_float16``) the layer runs in
    float32, as mixed-precision practice does for numerically sensitive layers: unless a dtype is
    given, its policy is ``float32``, so Keras casts its input up and the next layer casts the
    output back down. Whatever the policy, the normalisation itself is computed in float32.
    """

    def __init__(
        self, size: int = 5, alpha: float = 1e-4, beta: float = 0.75, k: float = 2.0, groups: int = 1, **kwargs
    ) -> None:
        if kwargs.get("dtype") is None and keras.mixed_precision.dtype_policy().compute_dtype in _LOW_PRECISION:
            kwargs["dtype"] = "float32"
        super().__init__(**kwargs)
        self.size, self.alpha, self.beta, self.k, self.groups = size, alpha, beta, k, groups

    def call(self, x):
        shape = ops.shape(x)
        channels = shape[-1]
        # Fold the groups into the width axis so that no window crosses a group boundary.
        grouped = ops.reshape(ops.cast(x, "float32"), (-1, shape[1], shape[2] * self.groups, channels // self.groups))
        normalise = self._tensorflow if native_lrn() else self._generic
        return ops.cast(ops.reshape(normalise(grouped), shape), self.compute_dtype)

    def _tensorflow(self, x):
        """The backend library's own LRN op, in TensorFlow's terms (``native_lrn``)."""
        return native_lrn()(x, depth_radius=self.size // 2, bias=self.k, alpha=self.alpha, beta=self.beta)

    def _generic(self, x):
        radius = self.size // 2
        squared = ops.pad(ops.square(x), [(0, 0), (0, 0), (0, 0), (radius, radius)])
        channels = x.shape[-1]
        window_sum = sum(squared[..., i : i + channels] for i in range(self.size))
        return x / ops.power(self.k + self.alpha * window_sum, self.beta)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self) -> dict:
        return {
            **super().get_config(),
            "size": self.size,
            "alpha": self.alpha,
            "beta": self.beta,
            "k": self.k,
            "groups": self.groups,
        }


@keras.saving.register_keras_serializable(package="alexnet")
class SuppliedMaskDropout(layers.Layer):
    """Dropout whose mask (0 or 1/(1-rate) per unit) is a model input: ``x * mask`` while training.

    The mask comes from outside so that two frameworks can drop the same units (training parity);
    in inference the layer passes ``x`` through and the mask is ignored.
    """

    def call(self, inputs, training=None):
        x, keep = inputs
        return ops.multiply(x, keep) if training else x

    def compute_output_shape(self, input_shape):
        return input_shape[0]


def _conv_layers(layer: Conv, name: str, groups: int) -> list[layers.Layer]:
    """Keras convolution with the spec's symmetric padding (Keras 'same' is asymmetric for stride > 1)."""
    if layer.padding == 0:
        padding, pad = "valid", []
    elif layer.stride == 1 and 2 * layer.padding == layer.kernel - 1:
        padding, pad = "same", []
    else:
        padding, pad = "valid", [layers.ZeroPadding2D(layer.padding, name=f"{name}_pad")]
    conv = layers.Conv2D(
        layer.filters,
        layer.kernel,
        layer.stride,
        padding=padding,
        groups=groups,
        activation=layer.activation,
        name=name,
    )
    return [*pad, conv]


def make_layers(layer, name: str, towers: int, groups: int) -> list[layers.Layer]:
    """The Keras layers for one spec layer, or one part of it: ``towers`` divides conv and dense widths."""
    if isinstance(layer, Conv):
        narrowed = Conv(
            layer.name,
            split_width(layer.filters, towers, layer.name),
            layer.kernel,
            layer.stride,
            layer.padding,
            layer.towers,
            layer.activation,
        )
        return _conv_layers(narrowed, name, groups)
    if isinstance(layer, LRN):
        return [LocalResponseNormalization(layer.size, layer.alpha, layer.beta, layer.k, groups, name=name)]
    if isinstance(layer, MaxPool):
        return [layers.MaxPooling2D(layer.size, layer.stride, padding="valid", name=name)]
    if isinstance(layer, Flatten):
        return [layers.Flatten(name=name)]
    if isinstance(layer, Dense):
        return [layers.Dense(split_width(layer.units, towers, layer.name), activation=layer.activation, name=name)]
    if isinstance(layer, Dropout):
        return [layers.Dropout(layer.rate, name=name)]
    raise TypeError(f"no Keras layer for {type(layer).__name__}")


def _regroup(xs: list, wanted: int | None, name: str) -> list:
    if wanted is None or len(xs) == wanted:
        return xs
    joined = xs[0] if len(xs) == 1 else layers.Concatenate(axis=-1, name=f"{name}_join")(xs)
    if wanted == 1:
        return [joined]
    return list(ops.split(joined, wanted, axis=-1))


def apply_stack(stack: list[layers.Layer], x, **call_kwargs):
    """Call layers in order; ``call_kwargs`` (e.g. ``training``) go to every call."""
    for layer in stack:
        x = layer(x, **call_kwargs)
    return x


def build_keras_model(
    arch: Architecture, split_impl: str = "grouped", supplied_dropout_masks: bool = False
) -> keras.Model:
    """The functional Keras model of ``arch``; input (H, W, C), output logits.

    With ``supplied_dropout_masks`` the inputs are a dict: ``image`` and, per dropout layer,
    ``<name>_mask`` with that layer's mask (see :class:`SuppliedMaskDropout`).
    """
    if split_impl not in SPLIT_IMPLS:
        raise ValueError(f"unknown split implementation {split_impl!r}; choose from {SPLIT_IMPLS}")
    shapes = infer(arch)
    as_tensors = split_impl == "towers"
    channels, height, width = arch.input_shape
    image = keras.Input(shape=(height, width, channels), name="image")
    inputs = {"image": image} if supplied_dropout_masks else image
    xs = [image]
    for layer, info in zip(arch.layers, shapes, strict=True):
        if supplied_dropout_masks and isinstance(layer, Dropout):
            keep = keras.Input(shape=info.output_shape, name=f"{layer.name}_mask")
            inputs[f"{layer.name}_mask"] = keep
            joined = _regroup(xs, 1, layer.name)[0]
            xs = [SuppliedMaskDropout(name=layer.name)([joined, keep])]
            continue
        towers = getattr(layer, "towers", 1)
        xs = _regroup(xs, streams(layer, as_tensors), layer.name)
        if len(xs) == 1:
            groups = 1 if as_tensors else towers
            xs = [apply_stack(make_layers(layer, layer.name, 1, groups), xs[0])]
        else:
            width_divisor = towers if isinstance(layer, Conv) else 1
            xs = [
                apply_stack(make_layers(layer, f"{layer.name}_tower{i}", width_divisor, 1), x) for i, x in enumerate(xs)
            ]
    return keras.Model(inputs, xs[0], name=f"alexnet_{arch.name}_{split_impl}".replace("-", "_"))


def spec_layers(model: keras.Model, name: str) -> list[layers.Layer]:
    """The Keras layers that make up one spec layer, in tower order (padding layers excluded)."""
    tower = re.compile(rf"{re.escape(name)}_tower(\d+)")
    found = [layer for layer in model.layers if layer.name == name]
    towers = [(int(m.group(1)), layer) for layer in model.layers if (m := tower.fullmatch(layer.name))]
    return found + [layer for _, layer in sorted(towers, key=lambda pair: pair[0])]


def layer_parameter_counts(model: keras.Model, arch: Architecture) -> dict[str, int]:
    return {layer.name: sum(part.count_params() for part in spec_layers(model, layer.name)) for layer in arch.layers}


def layer_output_model(model: keras.Model, arch: Architecture) -> keras.Model:
    """A model sharing ``model``'s layers that returns every spec layer's output, towers joined."""
    outputs = {}
    for layer in arch.layers:
        parts = [part.output for part in spec_layers(model, layer.name)]
        if not parts:
            raise KeyError(f"{layer.name}: no such layer in the Keras model")
        outputs[layer.name] = parts[0] if len(parts) == 1 else ops.concatenate(parts, axis=-1)
    return keras.Model(model.input, outputs)


def load_weights(model: keras.Model, weights: LayerWeights) -> None:
    """Set each spec layer's kernel and bias (Keras layout), splitting towers along the output axis."""
    for name, arrays in weights.items():
        parts = spec_layers(model, name)
        if not parts:
            raise KeyError(f"{name}: no such layer in the Keras model")
        kernels = np.split(arrays["kernel"], len(parts), axis=-1)
        biases = np.split(arrays["bias"], len(parts))
        for part, kernel, bias in zip(parts, kernels, biases, strict=True):
            expected = [tuple(w.shape) for w in part.weights]
            if expected != [kernel.shape, bias.shape]:
                raise ValueError(f"{name}: weights {kernel.shape}, {bias.shape} do not fit {expected}")
            part.set_weights([kernel, bias])


def export_weights(model: keras.Model, arch: Architecture) -> LayerWeights:
    """Per spec layer kernel and bias in Keras layout, towers concatenated along the output axis."""
    weights: LayerWeights = {}
    for layer in arch.layers:
        if isinstance(layer, (Conv, Dense)):
            parts = spec_layers(model, layer.name)
            weights[layer.name] = {
                "kernel": np.concatenate([np.asarray(p.kernel) for p in parts], axis=-1),
                "bias": np.concatenate([np.asarray(p.bias) for p in parts]),
            }
    return weights


def backend_name() -> str:
    """The Keras backend these models run on (as Keras names it: also its library's name)."""
    return keras.backend.backend()


def to_numpy(value) -> np.ndarray:
    """A backend tensor as NumPy, on any Keras backend (a torch tensor may need detaching first)."""
    return ops.convert_to_numpy(value)
