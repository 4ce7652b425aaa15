"""Keras 3 on TensorFlow across devices: the paper's optimiser, data parallelism, model parallelism.

- ``compile_for_training``: SGD with momentum and the paper's weight decay. The paper's decay is
  coupled (section 5: v <- 0.9 v - 0.0005 lr w - lr grad), as in ``torch.optim.SGD``; Keras'
  own ``weight_decay`` argument is decoupled (it shrinks weights outside the momentum), so the
  decay is added to the gradient in the optimiser's update step instead.
- ``build_data_parallel``: MirroredStrategy over the given devices.
- ``ModelParallelAlexNet``: the paper's two-GPU split, one tower per device (section 3.2).
- ``configure_logical_cpus``: the CPU split into logical devices, so the multi-device code runs
  for real on a machine without GPUs. It must run before TensorFlow starts its runtime.
"""

from __future__ import annotations

import os

from implementations.quiet_import import import_tensorflow_quietly

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
import_tensorflow_quietly()

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402
from keras import ops  # noqa: E402

from implementations.keras_alexnet import apply_stack, build_keras_model, make_layers  # noqa: E402
from implementations.spec import LRN, Architecture, Conv, Dense, Flatten, infer  # noqa: E402


def configure_logical_cpus(count: int) -> list[str]:
    """Split the host CPU into ``count`` logical TensorFlow devices; returns their names."""
    cpus = tf.config.list_physical_devices("CPU")
    try:
        tf.config.set_logical_device_configuration(cpus[0], [tf.config.LogicalDeviceConfiguration()] * count)
    except RuntimeError as error:
        raise RuntimeError(
            "logical CPU devices must be configured before TensorFlow starts its runtime: "
            "call configure_logical_cpus first, in a fresh process"
        ) from error
    return [device.name for device in tf.config.list_logical_devices("CPU")]


def visible_gpus() -> list[str]:
    """TensorFlow's GPUs, with memory growth on so that TensorFlow does not take the whole card."""
    for gpu in tf.config.list_physical_devices("GPU"):
        tf.config.experimental.set_memory_growth(gpu, True)
    return [device.name for device in tf.config.list_logical_devices("GPU")]


@keras.saving.register_keras_serializable(package="alexnet")
class CoupledDecaySGD(keras.optimizers.SGD):
    """SGD whose weight decay goes through the momentum, like the paper and ``torch.optim.SGD``."""

    def __init__(self, decay: float = 5e-4, **kwargs) -> None:
        super().__init__(**kwargs)
        self.decay = decay

    def update_step(self, gradient, variable, learning_rate):
        if self.decay:
            gradient = ops.add(gradient, ops.multiply(ops.cast(self.decay, variable.dtype), variable))
        super().update_step(gradient, variable, learning_rate)

    def get_config(self) -> dict:
        return {**super().get_config(), "decay": self.decay}


def compile_for_training(
    model: keras.Model, weight_decay: float, learning_rate: float, momentum: float, jit_compile: bool = False
) -> None:
    """The one place the training set-up is defined: the paper's SGD and softmax cross-entropy.

    XLA is off unless asked for (a fast path the benchmark tries), so deterministic mode holds.
    """
    model.compile(
        optimizer=CoupledDecaySGD(decay=weight_decay, learning_rate=learning_rate, momentum=momentum),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile=jit_compile,
    )


def build_data_parallel(
    arch: Architecture,
    split_impl: str,
    devices: list[str],
    weight_decay: float = 5e-4,
    learning_rate: float = 0.01,
    momentum: float = 0.9,
    jit_compile: bool = False,
) -> tuple[tf.distribute.Strategy, keras.Model]:
    """A replica of the model per device under MirroredStrategy, compiled for training.

    NCCL all-reduce is GPU only; with CPU devices the gradients are reduced on one device.
    """
    on_cpu = all("CPU" in device.upper() for device in devices)
    cross_device_ops = tf.distribute.ReductionToOneDevice() if on_cpu else None
    strategy = tf.distribute.MirroredStrategy(devices, cross_device_ops=cross_device_ops)
    with strategy.scope():
        model = build_keras_model(arch, split_impl)
        compile_for_training(model, weight_decay, learning_rate, momentum, jit_compile)
    return strategy, model


def _joins(layer) -> bool:
    """Layers where the paper's towers communicate: each device needs every tower's maps."""
    return isinstance(layer, Dense) or (isinstance(layer, Conv) and layer.towers == 1)


@keras.saving.register_keras_serializable(package="alexnet")
class ModelParallelAlexNet(keras.Model):
    """The paper's split network with tower ``i`` on ``devices[i]``.

    Device i holds tower i's half of every weight layer. conv2, conv4, conv5 and the LRNs see
    only their own tower; conv1, conv3 and the fully connected layers see both towers (copied to
    each device) and compute half of the output channels. Layer names are ``<name>_tower<i>``, so
    ``keras_alexnet.load_weights`` / ``export_weights`` split and join the halves as for towers.
    """

    def __init__(self, arch: Architecture, devices: list[str], **kwargs) -> None:
        super().__init__(name=f"alexnet_{arch.name}_model_parallel".replace("-", "_"), **kwargs)
        towers = max(getattr(layer, "towers", 1) for layer in arch.layers)
        if towers < 2:
            raise ValueError(f"{arch.name} has a single tower; model parallelism needs a split variant")
        if len(devices) != towers:
            raise ValueError(f"{arch.name} has {towers} towers and needs one device per tower, got {len(devices)}")
        infer(arch)
        self.arch, self.devices, self.towers = arch, list(devices), towers
        self.stages = []
        for layer in arch.layers:
            if isinstance(layer, LRN) and layer.towers != towers:
                raise ValueError(f"{layer.name}: a model-parallel LRN must normalise within its tower")
            if isinstance(layer, Flatten):  # once, on the first device, over both towers' maps
                self.stages.append((layer, [make_layers(layer, layer.name, 1, 1)]))
                continue
            divisor = towers if isinstance(layer, (Conv, Dense)) else 1
            parts = [make_layers(layer, f"{layer.name}_tower{i}", divisor, 1) for i in range(towers)]
            self.stages.append((layer, parts))
        channels, height, width = arch.input_shape
        # Create the weights eagerly inside call()'s device scopes; Model.__call__ would build by
        # tracing, and variables created while tracing land on the default device.
        self.call(ops.zeros((1, height, width, channels)))
        self.built = True

    def call(self, images, training: bool = False):
        xs = [images]
        for layer, parts in self.stages:
            if isinstance(layer, Flatten):
                # Channels-last: join the towers' channels first, so the order matches one device's.
                with tf.device(self.devices[0]):
                    xs = [apply_stack(parts[0], ops.concatenate(xs, axis=-1) if len(xs) > 1 else xs[0])]
                continue
            if _joins(layer):
                joined = xs[0] if len(xs) == 1 else ops.concatenate(xs, axis=-1)
                inputs = [joined] * self.towers
            else:
                inputs = xs if len(xs) == self.towers else ops.split(xs[0], self.towers, axis=-1)
            outputs = []
            for device, stack, x in zip(self.devices, parts, inputs, strict=True):
                with tf.device(device):
                    outputs.append(apply_stack(stack, x, training=training))
            xs = outputs
        with tf.device(self.devices[0]):
            return ops.concatenate(xs, axis=-1)


def build_model_parallel(arch: Architecture, devices: list[str]) -> keras.Model:
    return ModelParallelAlexNet(arch, devices)
