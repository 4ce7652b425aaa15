"""The per-library TF32 switches set the flags each library reads (they are process-wide: restored here)."""

import jax
import pytest
import tensorflow as tf
import torch

from implementations import math_mode


@pytest.fixture
def restore_flags():
    saved = (
        torch.backends.cuda.matmul.allow_tf32,
        torch.backends.cudnn.allow_tf32,
        tf.config.experimental.tensor_float_32_execution_enabled(),
        jax.config.jax_default_matmul_precision,
    )
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved[:2]
    tf.config.experimental.enable_tensor_float_32_execution(saved[2])
    jax.config.update("jax_default_matmul_precision", saved[3])


def flags() -> dict[str, object]:
    return {
        "torch matmul": torch.backends.cuda.matmul.allow_tf32,
        "torch cudnn": torch.backends.cudnn.allow_tf32,
        "tensorflow": tf.config.experimental.tensor_float_32_execution_enabled(),
        "jax": jax.config.jax_default_matmul_precision,
    }


def test_switches_turn_tf32_off_and_on_in_every_library(restore_flags):
    for library in math_mode.LIBRARIES:
        math_mode.set_math_mode(library, math_mode.TF32)
    assert flags() == {"torch matmul": True, "torch cudnn": True, "tensorflow": True, "jax": "tensorfloat32"}
    for library in math_mode.LIBRARIES:
        math_mode.set_math_mode(library, math_mode.STRICT_FP32)
    assert flags() == {"torch matmul": False, "torch cudnn": False, "tensorflow": False, "jax": "highest"}


def test_each_switch_touches_only_its_own_library(restore_flags):
    for library in math_mode.LIBRARIES:
        math_mode.set_math_mode(library, math_mode.TF32)
    math_mode.set_math_mode("tensorflow", math_mode.STRICT_FP32)
    assert flags() == {"torch matmul": True, "torch cudnn": True, "tensorflow": False, "jax": "tensorfloat32"}


def test_an_unknown_mode_or_library_is_refused():
    with pytest.raises(ValueError, match="bf16"):
        math_mode.set_math_mode("torch", "bf16")
    with pytest.raises(ValueError, match="mxnet"):
        math_mode.set_math_mode("mxnet", math_mode.STRICT_FP32)
