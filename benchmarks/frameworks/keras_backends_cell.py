"""The same Keras 3 model on the JAX or PyTorch backend, one device (``keras-jax``, ``keras-torch``).

The runner sets ``KERAS_BACKEND`` for this worker process before anything imports Keras, so
``build_keras_model`` and ``compile_for_training`` are the very code the TensorFlow cells run,
now traced by another backend. The step is Keras' own ``train_on_batch`` / ``predict_on_batch``
with the inputs converted to backend tensors once, ahead of the timed loop.

Compilation follows each backend's normal use, which is also Keras' default (``"auto"``): JAX
always runs jit-compiled (eager JAX is an op-by-op debugging mode), PyTorch runs eagerly.
"""

from __future__ import annotations

import importlib
import os
from typing import TYPE_CHECKING

import numpy as np

from benchmarks.cell import LEARNING_RATE, CellConfig, PreparedCell
from benchmarks.measure.ceiling import measure_ceiling
from implementations import math_mode
from implementations.paper_sgd import MOMENTUM, WEIGHT_DECAY
from implementations.variants import get_variant

if TYPE_CHECKING:
    from benchmarks.frameworks.keras_backends import KerasOnOtherBackend


def jax_device() -> tuple[str, bool]:
    """The device JAX computes on, and whether it is a GPU."""
    import jax

    device = jax.devices()[0]
    return f"{device.platform}:{device.id}", device.platform == "gpu"


def torch_device() -> tuple[str, bool]:
    """The device Keras on torch computes on (the first GPU when there is one), and whether it is a GPU."""
    import torch

    on_gpu = torch.cuda.is_available()
    return (f"cuda:0 ({torch.cuda.get_device_name(0)})" if on_gpu else "cpu"), on_gpu


def checked_device(backend: str, device: tuple[str, bool], want_gpu: bool) -> list[str]:
    """The backend's device (``device``: its name and whether it is a GPU), checked against what the cell asked for."""
    name, on_gpu = device
    if want_gpu and not on_gpu:
        raise RuntimeError(f"asked for a GPU, but Keras' {backend} backend computes on {name}")
    if on_gpu and not want_gpu:
        raise RuntimeError(
            f"Keras' {backend} backend would compute on {name}, not the CPU this cell asks for; "
            "hide the GPUs (CUDA_VISIBLE_DEVICES=) or use --gpus 1"
        )
    return [name]


def set_math_mode(backend: str, mode: str) -> None:
    """fp32 arithmetic as the cell states, in the library the Keras backend computes with
    (``implementations.math_mode``): JAX's default dot precision, or torch's TF32 flags. No effect on CPUs."""
    math_mode.set_math_mode(backend, math_mode.TF32 if mode == "tf32" else math_mode.STRICT_FP32)


def backend_environment(backend: str, devices: list[str], jit_compile: bool) -> dict:
    import keras

    module = importlib.import_module(backend)
    return {
        "framework": f"keras-{backend}",
        "keras": keras.__version__,
        "backend": backend,
        backend: module.__version__,
        "devices": devices,
        "jit_compile": jit_compile,
        "threads": os.cpu_count(),
    }


def jax_memory(devices: list) -> tuple[object, object]:
    """JAX's own allocator peak (``Device.memory_stats()['peak_bytes_in_use']``) on GPUs; nothing on CPUs.

    XLA has no reset of its peak, so the figure is the process's peak up to the end of the timed steps (the
    warm-up's compilation included); workers run without preallocation (``XLA_PYTHON_CLIENT_PREALLOCATE=false``,
    set by the adapter), so it is what the model used, not 75% of the device.
    """
    gpus = [device for device in devices if device.platform == "gpu"]
    if not gpus:
        return None, None

    def framework_memory() -> dict:
        return {
            "what": "JAX (XLA) allocator peak over the worker's life up to the end of the timed steps, per device",
            "peak_bytes_in_use": [(device.memory_stats() or {}).get("peak_bytes_in_use") for device in gpus],
        }

    return None, framework_memory


def jax_memory_hooks() -> tuple[object, object]:
    """JAX's allocator peak on the GPUs this process sees (``jax_memory``)."""
    import jax

    return jax_memory(jax.local_devices())


def torch_memory_hooks() -> tuple[object, object]:
    """PyTorch's allocator peak on the GPU, reset before the timed steps; nothing on CPUs (NVML still samples GPUs)."""
    import torch

    if not torch.cuda.is_available():
        return None, None

    def framework_memory() -> dict:
        return {
            "what": "PyTorch allocator peak during timed steps (Keras on the torch backend)",
            "max_allocated_bytes": [torch.cuda.max_memory_allocated(0)],
            "max_reserved_bytes": [torch.cuda.max_memory_reserved(0)],
        }

    return torch.cuda.reset_peak_memory_stats, framework_memory


def prepare_keras_backend(config: CellConfig, adapter: KerasOnOtherBackend) -> PreparedCell:
    """The cell on ``adapter``'s backend: what differs between backends (device, memory, compilation) is the
    adapter's to say."""
    import keras

    backend = adapter.keras_backend
    if keras.backend.backend() != backend:
        raise RuntimeError(
            f"Keras was imported with the {keras.backend.backend()} backend, not {backend}: "
            f"set KERAS_BACKEND={backend} before Keras is imported"
        )
    from implementations.keras_alexnet import build_keras_model
    from implementations.keras_training import compile_for_training

    devices = checked_device(backend, adapter.device(), config.gpus > 0)
    set_math_mode(backend, config.math_mode)
    keras.utils.set_random_seed(config.seed)
    if config.precision == "bf16":
        keras.mixed_precision.set_global_policy("mixed_bfloat16")  # bf16 compute, fp32 weights
    arch = get_variant(config.variant)
    model = build_keras_model(arch, config.split_impl)
    jit = adapter.jit_compile
    if config.mode == "train":
        compile_for_training(model, WEIGHT_DECAY, LEARNING_RATE, MOMENTUM, jit_compile=jit)
    else:
        model.compile(jit_compile=jit)

    rng = np.random.default_rng(config.seed)
    c, h, w = arch.input_shape
    x = keras.ops.convert_to_tensor(rng.standard_normal((config.batch_size, h, w, c), dtype=np.float32))
    y = keras.ops.convert_to_tensor(rng.integers(0, arch.classes, config.batch_size))

    if config.mode == "train":

        def step() -> object:
            return model.train_on_batch(x, y)  # the loss as a Python float: waits for the device
    else:

        def step() -> object:
            return model.predict_on_batch(x)  # NumPy logits: waits for the device

    def product(size: int, dtype: str):
        a = keras.random.normal((size, size), dtype=dtype, seed=1)
        b = keras.random.normal((size, size), dtype=dtype, seed=2)
        # Reading one element back waits for the product; the slice keeps the copy negligible.
        return lambda: keras.ops.convert_to_numpy(keras.ops.matmul(a, b)[0, :1])

    reset_peak, framework_memory = adapter.memory_hooks()
    return PreparedCell(
        ceiling=lambda: measure_ceiling(product, config.gpus > 0, config.precision),
        step=step,
        sync=lambda: None,  # each step already ends with a device-to-host read
        images_per_step=config.batch_size,
        environment=backend_environment(backend, devices, jit),
        reset_peak_memory=reset_peak,
        framework_memory=framework_memory,
    )
