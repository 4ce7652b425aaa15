"""Keras 3 on TensorFlow: the model, synthetic data on the device, and the step to time.

One device: the functional model, compiled with the paper's SGD. Two or more devices: split
variants run model-parallel (one tower per device); single variants run data-parallel under
MirroredStrategy. ``--simulate-devices`` splits the CPU (or, with ``--gpus 1``, the one GPU) into
logical TensorFlow devices, which must happen before TensorFlow starts its runtime: this worker
process does nothing before it.
"""

from __future__ import annotations

import json
import os

import numpy as np

from benchmarks.cell import LEARNING_RATE, CellConfig, PreparedCell
from benchmarks.measure.ceiling import measure_ceiling
from benchmarks.measure.memory import _text, _visible_nvml_indices
from benchmarks.measure.timing import StopAgreement
from implementations import math_mode
from implementations.paper_sgd import MOMENTUM, WEIGHT_DECAY
from implementations.variants import get_variant

LOGICAL_GPU_FALLBACK_MB = 4096  # each logical GPU's memory where NVML cannot tell the device's size


def set_math_mode(mode: str) -> None:
    """fp32 arithmetic as the cell states (``implementations.math_mode``): TensorFlow runs fp32 matmuls and
    convolutions in TF32 on Ampere and newer GPUs unless told not to. No effect on CPUs."""
    math_mode.set_math_mode("tensorflow", math_mode.TF32 if mode == "tf32" else math_mode.STRICT_FP32)


def own_gpu_nvml_index(pynvml: object) -> int:
    """NVML's index of the GPU this process computes on: the first one CUDA_VISIBLE_DEVICES exposes.

    NVML numbers every GPU of the machine in its own order and ignores CUDA_VISIBLE_DEVICES, so the
    cell's GPU is found as the memory figures find it (by UUID, or by index in PCI bus order).
    """
    count = pynvml.nvmlDeviceGetCount()
    uuids = [_text(pynvml.nvmlDeviceGetUUID(pynvml.nvmlDeviceGetHandleByIndex(i))) for i in range(count)]
    visible = _visible_nvml_indices(count, uuids)
    if not visible:
        raise RuntimeError(f"none of the {count} GPUs NVML sees is visible to this process")
    return visible[0]


def logical_gpu_memory_mb(count: int) -> int:
    """Memory per logical GPU when the cell's GPU is split in ``count`` (TensorFlow needs a limit for each): 90% of
    that device's memory, shared equally."""
    try:
        import pynvml

        pynvml.nvmlInit()
        try:
            handle = pynvml.nvmlDeviceGetHandleByIndex(own_gpu_nvml_index(pynvml))
            total = pynvml.nvmlDeviceGetMemoryInfo(handle).total
        finally:
            pynvml.nvmlShutdown()
    except Exception:  # noqa: BLE001 - no NVML: a fixed size, stated in LOGICAL_GPU_FALLBACK_MB
        return LOGICAL_GPU_FALLBACK_MB
    return int(total * 0.9 / count / 2**20)


def configure_logical_gpus(count: int) -> list[str]:
    """Split the one visible GPU into ``count`` logical TensorFlow GPUs (two-GPU code paths on one GPU)."""
    import tensorflow as tf

    physical = tf.config.list_physical_devices("GPU")
    if not physical:
        raise RuntimeError("asked for logical devices on a GPU, but TensorFlow sees none")
    limit = logical_gpu_memory_mb(count)
    tf.config.set_logical_device_configuration(
        physical[0], [tf.config.LogicalDeviceConfiguration(memory_limit=limit) for _ in range(count)]
    )
    return [device.name for device in tf.config.list_logical_devices("GPU")]


def _devices(config: CellConfig) -> list[str]:
    if config.devices == 1 and not config.gpus:
        return ["/device:CPU:0"]
    from implementations import keras_multi_device

    if config.simulate_devices >= 2 and config.gpus:
        return configure_logical_gpus(config.simulate_devices)
    if config.simulate_devices >= 2:
        return keras_multi_device.configure_logical_cpus(config.simulate_devices)
    if config.gpus:
        found = keras_multi_device.visible_gpus()
        if len(found) < config.gpus:
            raise RuntimeError(f"asked for {config.gpus} GPUs, TensorFlow sees {len(found)}")
        return found[: config.gpus]
    return ["/device:CPU:0"]


def tf_config(addresses: list[str], index: int) -> dict:
    """TensorFlow's cluster description for worker ``index`` of ``addresses`` (one worker per node)."""
    return {"cluster": {"worker": addresses}, "task": {"type": "worker", "index": index}}


def join_cluster(config: CellConfig) -> tuple[object, list[str], list[str]]:
    """Several nodes: (MultiWorkerMirroredStrategy, this node's devices, every worker's address).

    The order matters, as each step must come before TensorFlow's runtime starts: the workers'
    addresses (``benchmarks.address_exchange``, which also refuses nodes with different options),
    then memory growth on the GPUs, then the strategy, which reads ``TF_CONFIG``.
    """
    from benchmarks.address_exchange import cluster_addresses

    addresses = cluster_addresses(config)
    os.environ["TF_CONFIG"] = json.dumps(tf_config(addresses, config.node_rank))
    from implementations import keras_multi_device

    keras_multi_device.enable_memory_growth()
    strategy = keras_multi_device.multi_worker_strategy(config.join_timeout_s)
    devices = list(strategy.extended.worker_devices)
    if config.gpus and sum("GPU" in d.upper() for d in devices) < config.gpus:
        raise RuntimeError(f"asked for {config.gpus} GPUs per node, TensorFlow sees {devices}")
    return strategy, devices, addresses


def stop_agreement(config: CellConfig, strategy: object) -> StopAgreement | None:
    """Several nodes: their workers (one each) train in lockstep, so they stop timing at the same step.
    One node drives all its replicas from this one process: nothing to agree."""
    if config.nodes < 2:
        return None
    from implementations import keras_multi_device

    return StopAgreement(config.nodes, keras_multi_device.all_workers_agree(strategy))


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
    # First: devices and the multi-worker runtime must be set up before TensorFlow initialises.
    strategy, workers = None, []
    if config.nodes > 1:
        strategy, devices, workers = join_cluster(config)
    else:
        devices = _devices(config)
    import keras
    import tensorflow as tf

    set_math_mode(config.math_mode)
    training = config.mode == "train"
    from implementations.keras_alexnet import build_keras_model

    if config.devices > 1 or training:
        from implementations import keras_multi_device

    keras.utils.set_random_seed(config.seed)
    if config.precision == "bf16":
        keras.mixed_precision.set_global_policy("mixed_bfloat16")  # bf16 compute, fp32 weights
    arch = get_variant(config.variant)
    if config.parallel == "data":
        replicas = strategy.num_replicas_in_sync if strategy else len(devices)
        if config.batch_size % replicas:
            raise ValueError(f"batch size {config.batch_size} does not split over {replicas} devices")
        strategy, model = keras_multi_device.build_data_parallel(
            arch,
            config.split_impl,
            devices,
            weight_decay=WEIGHT_DECAY,
            learning_rate=LEARNING_RATE,
            momentum=MOMENTUM,
            jit_compile=config.compiled,
            shared_device=config.simulate_devices >= 2,
            strategy=strategy,
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
        ceiling=lambda: measure_ceiling(product, bool(gpu_names), config.precision),  # in the math mode set above
        step=step,
        sync=lambda: None,  # each step already ends with a device-to-host read
        images_per_step=config.batch_size,
        environment={**keras_environment(devices), **({"workers": workers} if workers else {})},
        reset_peak_memory=reset_peak,
        framework_memory=framework_memory,
        stop_agreement=stop_agreement(config, strategy),
    )
