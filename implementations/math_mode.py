"""Per-library switches for the float32 matmul/convolution arithmetic on NVIDIA GPUs.

On Ampere and newer GPUs "float32" is ambiguous: TensorFloat-32 (TF32) keeps float32 storage but
multiplies with a 10-bit mantissa, about 1e-3 relative error per product. The libraries differ in
their defaults: PyTorch's matmuls are strict fp32 while its cuDNN convolutions use TF32;
TensorFlow and JAX use TF32 for both. A comparison of frameworks, or of a framework with its
ceiling, is only fair when every library is told the same thing, so each mode is set explicitly:

- ``fp32``: TF32 off, IEEE float32 products (``fp32`` cells, parity checks);
- ``tf32``: TF32 on for matmuls and convolutions (``tf32`` cells).

``bf16`` cells use autocast / mixed precision on top of either. Each switch is process-wide, takes
effect for work launched after it, and is harmless on a CPU-only host (the flags are simply not
consulted there). Each imports its library, so set only those the process uses:
``set_math_mode(library, mode)`` does that for one library by name.
"""

from __future__ import annotations

from collections.abc import Callable

STRICT_FP32 = "fp32"
TF32 = "tf32"
MODES = (STRICT_FP32, TF32)
LIBRARIES = ("torch", "tensorflow", "jax")
DESCRIPTIONS = {STRICT_FP32: "fp32 strict (TF32 off)", TF32: "TF32 on"}


def _torch_tf32(enabled: bool) -> None:
    import torch

    torch.backends.cuda.matmul.allow_tf32 = enabled
    torch.backends.cudnn.allow_tf32 = enabled


def _tensorflow_tf32(enabled: bool) -> None:
    from implementations.quiet_import import import_tensorflow_quietly

    import_tensorflow_quietly()
    import tensorflow as tf

    tf.config.experimental.enable_tensor_float_32_execution(enabled)


def _jax_tf32(enabled: bool) -> None:
    import jax

    jax.config.update("jax_default_matmul_precision", "tensorfloat32" if enabled else "highest")


# One setter per library: TF32 on (True) or strict fp32 (False). Looked up at call time, so a test can
# replace an entry.
SETTERS: dict[str, Callable[[bool], None]] = {"torch": _torch_tf32, "tensorflow": _tensorflow_tf32, "jax": _jax_tf32}


def set_math_mode(library: str, mode: str) -> None:
    """Set ``mode`` (``fp32`` strict or ``tf32``) in ``library`` (torch, tensorflow or jax)."""
    if mode not in MODES or library not in LIBRARIES:
        raise ValueError(f"no math mode {mode!r} for {library!r}; modes {MODES}, libraries {LIBRARIES}")
    SETTERS[library](mode == TF32)
