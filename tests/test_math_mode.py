"""The per-library TF32 switches set the flags each library reads (they are process-wide: restored here).

JAX is an optional extra: the switches are checked with the real JAX where it is installed, with a
stand-in JAX on any machine, and without JAX, where the other libraries' switches must still work.
"""

import sys
import types

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
    )
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved[:2]
    tf.config.experimental.enable_tensor_float_32_execution(saved[2])


def _stand_in_jax() -> types.ModuleType:
    """A ``jax`` whose config holds what ``jax.config.update`` sets, as the real one does."""
    config = types.SimpleNamespace(jax_default_matmul_precision=None)
    config.update = lambda name, value: setattr(config, name, value)
    module = types.ModuleType("jax")
    module.config = config
    return module


@pytest.fixture(params=["jax", "stand-in-jax", "no-jax"])
def jax(request, monkeypatch):
    """The JAX the switches meet: the installed one (only where it is), a stand-in, or none (None)."""
    if request.param == "jax":
        real = pytest.importorskip("jax", reason="the jax extra is not installed; the stand-in covers it")
        saved = real.config.jax_default_matmul_precision
        yield real
        real.config.update("jax_default_matmul_precision", saved)
    elif request.param == "stand-in-jax":
        monkeypatch.setitem(sys.modules, "jax", _stand_in_jax())
        yield sys.modules["jax"]
    else:
        monkeypatch.setitem(sys.modules, "jax", None)  # import jax fails as where it is not installed
        yield None


def libraries(jax) -> list[str]:
    return [library for library in math_mode.LIBRARIES if jax is not None or library != "jax"]


def flags(jax) -> dict[str, object]:
    found = {
        "torch matmul": torch.backends.cuda.matmul.allow_tf32,
        "torch cudnn": torch.backends.cudnn.allow_tf32,
        "tensorflow": tf.config.experimental.tensor_float_32_execution_enabled(),
    }
    return found if jax is None else {**found, "jax": jax.config.jax_default_matmul_precision}


def with_jax(jax, expected: dict[str, object], jax_flag: str) -> dict[str, object]:
    return expected if jax is None else {**expected, "jax": jax_flag}


def test_switches_turn_tf32_off_and_on_in_every_library(restore_flags, jax):
    for library in libraries(jax):
        math_mode.set_math_mode(library, math_mode.TF32)
    on = {"torch matmul": True, "torch cudnn": True, "tensorflow": True}
    assert flags(jax) == with_jax(jax, on, "tensorfloat32")
    for library in libraries(jax):
        math_mode.set_math_mode(library, math_mode.STRICT_FP32)
    off = {"torch matmul": False, "torch cudnn": False, "tensorflow": False}
    assert flags(jax) == with_jax(jax, off, "highest")
    if jax is None:
        with pytest.raises(ImportError):  # only a keras-jax worker sets it, and no such cell is planned without JAX
            math_mode.set_math_mode("jax", math_mode.TF32)


def test_each_switch_touches_only_its_own_library(restore_flags, jax):
    for library in libraries(jax):
        math_mode.set_math_mode(library, math_mode.TF32)
    math_mode.set_math_mode("tensorflow", math_mode.STRICT_FP32)
    expected = {"torch matmul": True, "torch cudnn": True, "tensorflow": False}
    assert flags(jax) == with_jax(jax, expected, "tensorfloat32")


def test_an_unknown_mode_or_library_is_refused():
    with pytest.raises(ValueError, match="bf16"):
        math_mode.set_math_mode("torch", "bf16")
    with pytest.raises(ValueError, match="mxnet"):
        math_mode.set_math_mode("mxnet", math_mode.STRICT_FP32)
