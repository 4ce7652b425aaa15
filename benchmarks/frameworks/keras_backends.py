"""The same Keras 3 model on Keras' JAX and PyTorch backends, on one device.

Each backend runs as it normally does, which is also Keras' default: JAX jit-compiled, torch
eagerly. So ``--compile`` does not apply; the split formulation and bf16 are their fast paths.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from benchmarks.frameworks.base import Framework

if TYPE_CHECKING:
    from benchmarks.cell import CellConfig, PreparedCell


class KerasOnOtherBackend(Framework):
    """Keras on a backend other than TensorFlow; each backend says what differs (``keras_backends_cell`` runs it)."""

    fast_paths = ("bf16",)
    jit_compile = False  # how the backend normally runs, which is Keras' own default ("auto")

    def prepare(self, config: CellConfig) -> PreparedCell:
        from benchmarks.frameworks.keras_backends_cell import prepare_keras_backend

        return prepare_keras_backend(config, self)

    def device(self) -> tuple[str, bool]:
        """The device the backend computes on, and whether it is a GPU (in the worker)."""
        raise NotImplementedError

    def memory_hooks(self) -> tuple[object, object]:
        """(reset the allocator's peak, read it) on GPUs; (None, None) where there is nothing to read."""
        return None, None


class KerasOnJax(KerasOnOtherBackend):
    name = "keras-jax"
    label = "Keras on JAX"
    colour = "#2ca02c"
    marker = "^"
    # towers: XLA's CPU grouped convolution ran at 0.14x towers' img/s in inference, 0.25x in training.
    default_split_impl = "towers"
    packages = ("keras", "jax")
    install_hint = "pip install -e '.[jax]'"
    keras_backend = "jax"
    math_library = "jax"
    jit_compile = True  # eager JAX is an op-by-op debugging mode

    def device(self) -> tuple[str, bool]:
        from benchmarks.frameworks.keras_backends_cell import jax_device

        return jax_device()

    def memory_hooks(self) -> tuple[object, object]:
        from benchmarks.frameworks.keras_backends_cell import jax_memory_hooks

        return jax_memory_hooks()

    def worker_environment(self, config: CellConfig | None) -> dict[str, str]:
        # JAX preallocates 75% of a GPU's memory when it starts: NVML would then report that, not the model's use.
        return {**super().worker_environment(config), "XLA_PYTHON_CLIENT_PREALLOCATE": "false"}


class KerasOnTorch(KerasOnOtherBackend):
    name = "keras-torch"
    label = "Keras on torch"
    colour = "#9467bd"
    marker = "D"
    # grouped: torch's native grouped convolution (towers ran at 0.94x in inference, 0.87x in training).
    default_split_impl = "grouped"
    packages = ("keras", "torch")
    install_hint = "pip install -e '.[keras,torch]'"
    keras_backend = "torch"
    math_library = "torch"

    def device(self) -> tuple[str, bool]:
        from benchmarks.frameworks.keras_backends_cell import torch_device

        return torch_device()

    def memory_hooks(self) -> tuple[object, object]:
        from benchmarks.frameworks.keras_backends_cell import torch_memory_hooks

        return torch_memory_hooks()
