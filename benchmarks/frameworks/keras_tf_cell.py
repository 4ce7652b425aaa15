"""Keras 3 on TensorFlow: the model, synthetic data on the device, and the step to time.

One device: the functional model, compiled with the paper's SGD. Two or more devices: split
variants run model-parallel (one tower per device); single variants run data-parallel under
MirroredStrategy. ``--simulate-devices`` splits the CPU into logical TensorFlow devices, which
must happen before TensorFlow starts its runtime: this worker process does nothing before it.
"""

from __future__ import annotations

import numpy as np

from benchmarks.cell import LEARNING_RATE, MOMENTUM, WEIGHT_DECAY, CellConfig, PreparedCell
from benchmarks.measure.ceiling import measure_ceiling
from implementations.variants import get_variant


def _devices(config: CellConfig) -> list[str]:
    if config.devices == 1 and not config.gpus:
        return ["/device:CPU:0"]
    from implementations import keras_multi_device

    if config.simulate_devices >= 2:
        return keras_multi_device.configure_logical_cpus(config.simulate_devices)
    if config.gpus:
        found = keras_multi_device.visible_gpus()
        if len(found) < config.gpus:
            raise RuntimeError(f"asked for {config.gpus} GPUs, TensorFlow sees {len(found)}")
        return found[: config.gpus]
    return ["/device:CPU:0"]


def keras_environment(devices: list[str]) -> dict:
    import keras
    import tensorflow as tf

    build = tf.sysconfig.get_build_info()
    return {
        "framework": "keras",
        "keras": keras.__version__,
        "backend": keras.backend.backend(),
        "tensorflow": tf.__version__,
        "cuda": build.get("cuda_version"),
        "cudnn": build.get("cudnn_version"),
        "devices": devices,
        "intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads() or "default",
        "inter_op_threads": tf.config.threading.get_inter_op_parallelism_threads() or "default",
    }


def prepare_keras(config: CellConfig) -> PreparedCell:
    devices = _devices(config)  # first: logical devices must be set before TensorFlow initialises
    import keras
    import tensorflow as tf

    training = config.mode == "train"
    from implementations.keras_alexnet import build_keras_model

    if config.devices > 1 or training:
        from implementations import keras_multi_device

    keras.utils.set_random_seed(config.seed)
    if config.precision == "bf16":
        keras.mixed_precision.set_global_policy("mixed_bfloat16")  # bf16 compute, fp32 weights
    arch = get_variant(config.variant)
    strategy = None
    if config.parallel == "data":
        if config.batch_size % len(devices):
            raise ValueError(f"batch size {config.batch_size} does not split over {len(devices)} devices")
        strategy, model = keras_multi_device.build_data_parallel(
            arch,
            config.split_impl,
            devices,
            weight_decay=WEIGHT_DECAY,
            learning_rate=LEARNING_RATE,
            momentum=MOMENTUM,
            jit_compile=config.compiled,
        )
    else:
        if config.parallel == "model":
            model = keras_multi_device.build_model_parallel(arch, devices)
        else:
            with tf.device(devices[0]):
                model = build_keras_model(arch, config.split_impl)
        if training:
            keras_multi_device.compile_for_training(
                model, WEIGHT_DECAY, LEARNING_RATE, MOMENTUM, jit_compile=config.compiled
            )

    rng = np.random.default_rng(config.seed)
    c, h, w = arch.input_shape
    with tf.device(devices[0]):
        x = tf.constant(rng.standard_normal((config.batch_size, h, w, c), dtype=np.float32))
        y = tf.constant(rng.integers(0, arch.classes, config.batch_size))
    if strategy is not None:
        # Each replica gets its own shard of the global batch, placed on its device once.
        x, y = keras_multi_device.distribute_batch(strategy, x, y)

    if training:

        def step() -> object:
            return model.train_on_batch(x, y)  # returns the loss as a Python float: a host sync
    elif strategy is not None:

        def step() -> object:
            return model.predict_on_batch(x)  # every replica predicts its shard; returns NumPy
    else:
        predict = tf.function(lambda images: model(images, training=False), jit_compile=config.compiled)

        def step() -> object:
            return predict(x).numpy()  # .numpy() waits for the device

    gpu_names = [d for d in devices if "GPU" in d.upper()]

    def reset_peak() -> None:
        for name in gpu_names:
            tf.config.experimental.reset_memory_stats(name.replace("/device:", ""))

    def framework_memory() -> dict | None:
        if not gpu_names:
            return None
        return {
            "what": "TensorFlow allocator peak during timed steps, per device (memory growth on)",
            "peak_bytes": [
                tf.config.experimental.get_memory_info(n.replace("/device:", ""))["peak"] for n in gpu_names
            ],
        }

    def product(size: int, dtype: str):
        with tf.device(devices[0]):
            a = tf.cast(tf.random.normal((size, size)), dtype)
            b = tf.cast(tf.random.normal((size, size)), dtype)
        matmul = tf.function(lambda: tf.reduce_sum(tf.linalg.matmul(a, b)[0, :1]))
        # Reading one element back waits for the product; the slice keeps the copy negligible.
        return lambda: matmul().numpy()

    return PreparedCell(
        ceiling=lambda: measure_ceiling(product, bool(gpu_names), config.precision),
        step=step,
        sync=lambda: None,  # each step already ends with a device-to-host read
        images_per_step=config.batch_size,
        environment=keras_environment(devices),
        reset_peak_memory=reset_peak,
        framework_memory=framework_memory,
    )
