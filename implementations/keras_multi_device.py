"""Keras 3 on TensorFlow across devices: the paper's optimiser, data parallelism, model parallelism.

- The training set-up (the paper's SGD with coupled decay) is ``keras_training.compile_for_training``,
  the same on one device or many.
- ``build_data_parallel``: one replica per device under ``tf.distribute.MirroredStrategy``; the
  model's ``*_on_batch`` methods split a global batch over the replicas (see
  :class:`DataParallelModel` for why that is not Keras' default), and ``distribute_batch`` puts
  the shards on their devices once, ahead of a timed loop.
- ``build_model_parallel``: the paper's two-GPU network, tower ``i`` on ``devices[i]``.
- ``all_workers_agree``: one yes/no decision shared by the workers of a multi-worker strategy.
- ``configure_logical_cpus`` / ``visible_gpus``: device set-up, which TensorFlow only accepts
  before its runtime starts; both must be the first thing a fresh process does.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from implementations.keras_backend import default_keras_backend
from implementations.quiet_import import import_tensorflow_quietly

default_keras_backend()
import_tensorflow_quietly()

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from keras import ops  # noqa: E402

from implementations.keras_alexnet import apply_stack, build_keras_model, make_layers  # noqa: E402
from implementations.keras_training import compile_for_training  # noqa: E402
from implementations.spec import Architecture, Conv, Dense  # noqa: E402
from implementations.towers import check_one_tower_per_device, sees_every_tower  # noqa: E402

_TOO_LATE = (
    "TensorFlow's runtime has already started (any tensor, op or model starts it), and devices "
    "cannot be reconfigured after that: call {} first, in a fresh process"
)


def configure_logical_cpus(n: int) -> list[str]:
    """Split the host CPU into ``n`` logical TensorFlow devices and return their names.

    This runs the multi-device code for real on a machine without GPUs.
    The logical devices share the host's cores and thread pool: it tests correctness, not speed.
    Calling it again with the same ``n`` is harmless; TensorFlow ignores an unchanged layout.
    """
    if n < 1:
        raise ValueError(f"need at least one logical CPU device, got {n}")
    cpu = tf.config.list_physical_devices("CPU")[0]
    try:
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(n)])
    except RuntimeError as error:
        raise RuntimeError(_TOO_LATE.format(f"configure_logical_cpus({n})")) from error
    return [device.name for device in tf.config.list_logical_devices("CPU")]


def visible_gpus() -> list[str]:
    """TensorFlow's logical GPU names, with memory growth on for every physical GPU.

    Without memory growth TensorFlow reserves nearly all of each card's memory at start-up, so
    its allocator peak and NVML's reading would say nothing. Like
    :func:`configure_logical_cpus` this must run before the runtime starts.
    """
    enable_memory_growth()
    return [device.name for device in tf.config.list_logical_devices("GPU")]


def enable_memory_growth() -> None:
    """Memory growth on every physical GPU, without starting the runtime (see :func:`visible_gpus`)."""
    try:
        for gpu in tf.config.list_physical_devices("GPU"):
            tf.config.experimental.set_memory_growth(gpu, True)
    except RuntimeError as error:
        raise RuntimeError(_TOO_LATE.format("enable_memory_growth()")) from error


# --- data parallel --------------------------------------------------------------------------


def distribute_batch(strategy: tf.distribute.Strategy, *arrays) -> tuple:
    """Split each global batch along axis 0 into one shard per replica, on the replica's device.

    Each array is split where it lives, so each device receives only its own shard. Call it
    once outside a timed loop to keep the synthetic inputs on the devices: the input pipeline is
    not what a step's timing should measure.
    """
    replicas = strategy.num_replicas_in_sync
    devices = strategy.extended.worker_devices
    distributed = []
    for array in arrays:
        size = int(array.shape[0])
        if size % replicas:
            raise ValueError(f"a global batch of {size} does not split evenly over {replicas} replicas")
        if isinstance(array, tf.Tensor):
            with tf.device(array.device):
                shards = tf.split(array, replicas)
        else:
            shards = np.split(np.asarray(array), replicas)

        def shard(context: tf.distribute.experimental.ValueContext, shards: list = shards) -> tf.Tensor:
            # Called for this worker's replicas only, without a device scope: place each shard explicitly.
            # Replica ids are global; several workers (MultiWorkerMirroredStrategy) number theirs in turn.
            replica = context.replica_id_in_sync_group
            with tf.device(devices[replica % len(devices)]):
                return tf.identity(shards[replica])

        distributed.append(strategy.experimental_distribute_values_from_function(shard))
    return tuple(distributed)


class DataParallelModel(keras.Model):
    """A functional model whose ``*_on_batch`` calls split a global batch over the replicas.

    Keras' ``fit`` shards its data over a strategy's replicas, but ``train_on_batch``,
    ``test_on_batch`` and ``predict_on_batch`` hand the same tensors to ``strategy.run``: every
    replica then computes the whole global batch, the replicas' loss scaling (1/replicas) makes
    the update identical to one device's, and the "data-parallel" step silently does the full
    work on every device. Here plain arrays are sharded with :func:`distribute_batch` first;
    values that are already distributed pass through unchanged.
    """

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        # Keras builds its loss, metrics and optimizer from the first batch's shapes, and only
        # knows how to read them from distributed values that come from an iterator (``fit``).
        # A replica's shard has the shapes each replica's step sees. (Private hook, Keras 3.15.)
        if data_batch is not None:
            local = self.distribute_strategy.experimental_local_results
            data_batch = tuple(local(v)[0] if isinstance(v, tf.distribute.DistributedValues) else v for v in data_batch)
        super()._maybe_symbolic_build(iterator=iterator, data_batch=data_batch)

    def train_step(self, data):
        logs = super().train_step(data)
        if isinstance(self.distribute_strategy, tf.distribute.MultiWorkerMirroredStrategy):
            # Keras 3 averages each replica's logs across workers along axis 0, which scalars lack
            # (tensorflow/tensorflow#72388): give them that axis; the mean over it is the same number.
            logs = {name: ops.expand_dims(value, 0) for name, value in logs.items()}
        return logs

    def _shard(self, *values) -> tuple:
        strategy = self.distribute_strategy
        if strategy.num_replicas_in_sync == 1:
            return values
        done = (type(None), tf.distribute.DistributedValues)
        return tuple(value if isinstance(value, done) else distribute_batch(strategy, value)[0] for value in values)

    def train_on_batch(self, x, y=None, sample_weight=None, **kwargs):
        x, y, sample_weight = self._shard(x, y, sample_weight)
        return super().train_on_batch(x, y, sample_weight, **kwargs)

    def test_on_batch(self, x, y=None, sample_weight=None, **kwargs):
        x, y, sample_weight = self._shard(x, y, sample_weight)
        return super().test_on_batch(x, y, sample_weight, **kwargs)

    def predict_on_batch(self, x):
        (x,) = self._shard(x)
        return super().predict_on_batch(x)


def multi_worker_strategy(timeout_s: float) -> tf.distribute.MultiWorkerMirroredStrategy:
    """Data parallel over the workers ``TF_CONFIG`` lists (one per machine), each with all its local GPUs,
    or its CPU. TensorFlow picks the all-reduce (NCCL between GPUs, its ring over gRPC otherwise). A collective
    that waits on a lost worker fails after ``timeout_s`` instead of hanging. Like device set-up this must
    come before TensorFlow's runtime starts."""
    options = tf.distribute.experimental.CommunicationOptions(timeout_seconds=timeout_s)
    try:
        return tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)
    except RuntimeError as error:
        raise RuntimeError(_TOO_LATE.format("multi_worker_strategy()")) from error


def all_workers_agree(strategy: tf.distribute.Strategy) -> Callable[[bool], bool]:
    """A collective every worker calls with its own yes/no: True on every worker, and only then, when all say yes.

    Each replica carries its worker's answer as 0 or 1 and the strategy sums them over all replicas
    (under MultiWorkerMirroredStrategy an all-reduce across the workers, by the collectives its
    gradients use); the sum is the replica count only when every worker said yes. A strategy reduces
    by sum or mean only, hence the count rather than a minimum. Like any collective, every worker must
    call it at the same point of its program.
    """
    replicas = strategy.num_replicas_in_sync

    @tf.function
    def yes_count(flag: tf.Tensor) -> tf.Tensor:
        return strategy.reduce(tf.distribute.ReduceOp.SUM, strategy.run(tf.identity, args=(flag,)), axis=None)

    def agree(yes: bool) -> bool:
        return float(yes_count(tf.constant(float(yes)))) > replicas - 0.5

    return agree


def build_data_parallel(
    arch: Architecture,
    split_impl: str,
    devices: Sequence[str],
    weight_decay: float = 5e-4,
    learning_rate: float = 0.01,
    momentum: float = 0.9,
    jit_compile: bool = False,
    shared_device: bool = False,
    strategy: tf.distribute.Strategy | None = None,
) -> tuple[tf.distribute.Strategy, DataParallelModel]:
    """One replica of ``build_keras_model(arch, split_impl)`` per device, compiled for training.

    Variables (weights and momenta) are mirrored; gradients are summed across replicas before
    each update. By default the replicas are ``devices`` of this machine under MirroredStrategy:
    NCCL all-reduce (TensorFlow's choice for GPUs) is GPU only; with a CPU among the devices,
    e.g. logical CPUs, or logical GPUs sharing one device (``shared_device``), the gradients are
    reduced on one device instead. A ``strategy`` given (e.g. :func:`multi_worker_strategy`)
    replaces that choice.
    """
    if not devices:
        raise ValueError("data parallelism needs at least one device")
    if strategy is None:
        on_cpu = any(tf.DeviceSpec.from_string(device).device_type == "CPU" for device in devices)
        cross_device_ops = tf.distribute.ReductionToOneDevice() if on_cpu or shared_device else None
        strategy = tf.distribute.MirroredStrategy(list(devices), cross_device_ops=cross_device_ops)
    with strategy.scope():
        functional = build_keras_model(arch, split_impl)
        # The same layers and variables, re-wrapped in the subclass that shards *_on_batch input.
        model = DataParallelModel(functional.inputs, functional.outputs, name=functional.name)
        compile_for_training(model, weight_decay, learning_rate, momentum, jit_compile)
    return strategy, model


# --- model parallel -------------------------------------------------------------------------


class ModelParallelAlexNet(keras.Model):
    """The paper's split network (section 3.2, figure 2) with tower ``i`` on ``devices[i]``.

    Device i holds tower i's share of every weight layer. Layers with ``towers=2`` in the spec
    (conv2, conv4, conv5, the LRNs) see only their own tower's maps; layers with ``towers=1``
    (conv1, conv3, fc6, fc7, fc8) see every tower's maps, joined on each device (so each device
    receives only the other towers' halves), and compute their tower's share of the output
    channels or units. The logits are fc8's shares joined on ``devices[0]``.

    Every layer is named ``<spec name>_tower<i>``, so ``keras_alexnet.spec_layers``,
    ``load_weights`` (which splits each kernel along its output axis into one part per tower),
    ``export_weights`` and ``layer_parameter_counts`` work unchanged.

    Placement: with the TensorFlow backend a device is chosen when an op is created, so a
    functional model built under ``tf.device`` would lose it once Keras traces ``call``. Each
    tower's computation is wrapped in ``tf.device`` inside ``call`` instead, and the weights are
    created by one eager call in the constructor, inside those scopes.
    """

    def __init__(self, arch: Architecture, devices: Sequence[str], **kwargs) -> None:
        towers = check_one_tower_per_device(arch, len(devices))
        kwargs.setdefault("name", f"alexnet_{arch.name}_model_parallel".replace("-", "_"))
        super().__init__(**kwargs)
        self.arch, self.tower_devices = arch, list(devices)
        self.stacks = [[] for _ in arch.layers]
        for i, device in enumerate(self.tower_devices):
            with tf.device(device):  # layers that make state in __init__ (dropout's seed) make it here
                for stacks, layer in zip(self.stacks, arch.layers, strict=True):
                    stacks.append(make_layers(layer, f"{layer.name}_tower{i}", towers, 1))
        channels, height, width = arch.input_shape
        with tf.init_scope():  # eager even if constructed inside a tf.function
            self.call(ops.zeros((1, height, width, channels)))
        self.built = True

    def compile(self, *args, jit_compile: bool | str = "auto", **kwargs) -> None:
        """Compile without XLA, then create the optimizer's slots (momenta), each beside its weight.

        XLA compiles a step for one device and refuses variables on another (TensorFlow's XLA
        known issues), so it cannot run a model split over devices; Keras' ``"auto"`` would turn
        it on for GPUs. The momenta are made now because Keras makes them while tracing the
        first step, outside any device scope, which puts every one of them on the first device.
        """
        if jit_compile is True:
            raise ValueError("XLA (jit_compile=True) cannot compile a model whose towers are on different devices")
        super().compile(*args, jit_compile=False, **kwargs)
        self.optimizer.build(self.trainable_variables)

    def train_step(self, data):
        """Keras' training step with the gradients computed beside the ops they differentiate.

        ``tf.GradientTape`` leaves the backward ops unplaced, and TensorFlow's placer puts them
        all on the first device: tower 1's backward pass would run on tower 0's device.
        ``tf.gradients`` colocates each gradient with its forward op; it needs a graph, so an
        eager step (``run_eagerly=True``) keeps Keras' own.
        """
        if tf.executing_eagerly():
            return super().train_step(data)
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        y_pred = self(x, training=True)
        loss = self.compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=True)
        for metric in self.metrics:
            if metric.name == "loss":  # Keras' loss tracker, a mean weighted by batch size
                metric.update_state(loss, sample_weight=tf.shape(x)[0])
        weights = self.trainable_variables
        gradients = tf.gradients(self.optimizer.scale_loss(loss), [w.value for w in weights])
        self.optimizer.apply_gradients(zip(gradients, weights, strict=True))
        return self.compute_metrics(x, y, y_pred, sample_weight=sample_weight)

    def call(self, images, training: bool | None = None):
        xs = [images] * len(self.tower_devices)
        whole = True  # does every device hold all channels (True) or only its tower's (False)?
        for layer, stacks in zip(self.arch.layers, self.stacks, strict=True):
            joins, splits = sees_every_tower(layer) and not whole, getattr(layer, "towers", 1) > 1 and whole
            outputs = []
            for i, (device, stack) in enumerate(zip(self.tower_devices, stacks, strict=True)):
                with tf.device(device):
                    # Channels-last: joining on the last axis before the flatten keeps the (H, W, C)
                    # order of the one-device model, so fc6's weights mean the same.
                    x = ops.concatenate(xs, axis=-1) if joins else xs[i]
                    x = ops.split(x, len(self.tower_devices), axis=-1)[i] if splits else x
                    outputs.append(apply_stack(stack, x, training=training))
            xs = outputs
            whole = (whole or joins) and not splits and not isinstance(layer, (Conv, Dense))
        with tf.device(self.tower_devices[0]):
            return ops.concatenate(xs, axis=-1)


def build_model_parallel(arch: Architecture, devices: Sequence[str]) -> ModelParallelAlexNet:
    """The paper's split ``arch`` with one tower per device (see :class:`ModelParallelAlexNet`)."""
    return ModelParallelAlexNet(arch, devices)
