"""Keras across devices: model and data parallel on two logical CPUs, and the paper's SGD."""

import json
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
import torch

from implementations.keras_multi_device import CoupledDecaySGD, ModelParallelAlexNet, configure_logical_cpus
from implementations.variants import get_variant

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def two_devices() -> dict:
    done = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "keras_two_device_check.py")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**__import__("os").environ, "PYTHONPATH": str(ROOT)},
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_two_logical_cpus_exist(two_devices):
    assert two_devices["devices"] == ["/device:CPU:0", "/device:CPU:1"]


def test_model_parallel_matches_one_device_and_places_each_tower(two_devices):
    assert two_devices["mp_params"] == two_devices["spec_params"]
    assert two_devices["mp_max_diff"] <= 1e-5 * two_devices["logit_scale"]
    placed = two_devices["tower_devices"]
    assert placed["conv2_tower0"].endswith("CPU:0") and placed["conv2_tower1"].endswith("CPU:1")
    assert placed["fc6_tower0"].endswith("CPU:0") and placed["fc6_tower1"].endswith("CPU:1")


def test_data_parallel_step_equals_the_one_device_step(two_devices):
    torch_loss, single_loss = two_devices["dp_losses"]
    assert torch_loss == pytest.approx(single_loss, rel=1e-5)
    assert two_devices["min_layer_update"] > 1e-7  # every layer moved, so equal weights mean something
    assert two_devices["dp_max_weight_diff"] < 1e-6


def test_coupled_weight_decay_goes_through_momentum_like_torch():
    """Two steps with a fixed gradient: Keras' CoupledDecaySGD and torch.optim.SGD agree exactly."""
    start = np.array([1.0, -2.0, 0.5], dtype=np.float32)
    gradient = np.array([0.1, 0.0, -0.3], dtype=np.float32)
    variable = keras.Variable(start)
    optimizer = CoupledDecaySGD(decay=0.1, learning_rate=0.5, momentum=0.9)
    parameter = torch.nn.Parameter(torch.from_numpy(start.copy()))
    reference = torch.optim.SGD([parameter], lr=0.5, momentum=0.9, weight_decay=0.1)
    for _ in range(2):
        optimizer.apply_gradients([(tf.constant(gradient), variable)])
        parameter.grad = torch.from_numpy(gradient.copy())
        reference.step()
    np.testing.assert_allclose(np.asarray(variable), parameter.detach().numpy(), rtol=1e-6)
    # By hand, first step: w1 = w0 - lr (g + wd w0); the second carries 0.9 of the first step.
    w1 = start - 0.5 * (gradient + 0.1 * start)
    w2 = w1 + 0.9 * (w1 - start) - 0.5 * (gradient + 0.1 * w1)
    np.testing.assert_allclose(np.asarray(variable), w2, rtol=1e-6)
    plain, decoupled = keras.Variable(start), keras.optimizers.SGD(learning_rate=0.5, momentum=0.9, weight_decay=0.1)
    for _ in range(2):
        decoupled.apply_gradients([(tf.constant(gradient), plain)])
    assert not np.allclose(np.asarray(plain), w2, rtol=1e-3)  # Keras' own weight_decay skips the momentum


def test_logical_devices_after_start_up_are_refused_with_the_reason():
    tf.constant(1.0)  # the runtime is running
    with pytest.raises(RuntimeError, match="before TensorFlow starts its runtime"):
        configure_logical_cpus(2)


def test_model_parallel_refuses_single_tower_and_wrong_device_counts():
    with pytest.raises(ValueError, match="single tower"):
        ModelParallelAlexNet(get_variant("cifar100-single"), ["/CPU:0", "/CPU:0"])
    with pytest.raises(ValueError, match="needs one device per tower, got 3"):
        ModelParallelAlexNet(get_variant("cifar100-split"), ["/CPU:0"] * 3)
