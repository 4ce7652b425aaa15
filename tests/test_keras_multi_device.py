"""Keras across devices: the paper's SGD, model and data parallelism on two logical CPUs.

Logical devices can only be configured before TensorFlow starts its runtime, which other tests in
this pytest process have already done; the two-device checks therefore run this file as a script
in a fresh process (``python tests/test_keras_multi_device.py two-cpus OUT.json``), which writes
what it measured as JSON, and the tests assert on that.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
import torch

from implementations.keras_multi_device import build_model_parallel, configure_logical_cpus
from implementations.keras_training import CoupledDecaySGD, compile_for_training
from implementations.variants import get_variant

ROOT = Path(__file__).resolve().parent.parent
LR, MOMENTUM, DECAY = 0.01, 0.9, 5e-4
# Ops whose placement says where the work runs; forward and backward.
HEAVY_OPS = {
    "Conv2D",
    "Conv2DBackpropFilter",
    "Conv2DBackpropInput",
    "MatMul",
    "BiasAddGrad",
    "LRN",
    "LRNGrad",
    "MaxPool",
    "MaxPoolGrad",
}


def _run_fresh(out: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    env["CUDA_VISIBLE_DEVICES"] = ""  # the logical-CPU checks compare float32 numbers; keep TF32 GPU kernels out
    done = subprocess.run(
        [sys.executable, __file__, str(out)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900
    )
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads(out.read_text())


@pytest.fixture(scope="module")
def two_cpus(tmp_path_factory) -> dict:
    return _run_fresh(tmp_path_factory.mktemp("keras_md") / "two_cpus.json")


# --- model parallel on two logical CPUs ------------------------------------------------


def test_two_logical_cpus_are_configured(two_cpus):
    assert two_cpus["devices"] == ["/device:CPU:0", "/device:CPU:1"]


def test_model_parallel_logits_equal_one_device_keras_and_torch(two_cpus):
    mp = two_cpus["model_parallel"]
    assert mp["max_diff_vs_keras"] <= 1e-5 * mp["logit_scale"]
    assert mp["max_diff_vs_torch"] <= 1e-5 * mp["logit_scale"]
    assert mp["export_round_trip_exact"]  # export_weights joins the halves load_weights split


def test_model_parallel_parameters_match_the_spec(two_cpus):
    mp = two_cpus["model_parallel"]
    assert mp["params"] == mp["spec_params"]
    assert mp["layer_params"] == mp["spec_layer_params"]


def test_model_parallel_holds_each_towers_weights_and_momenta_on_its_device(two_cpus):
    placed = two_cpus["model_parallel"]["variable_devices"]
    assert len(placed) == 2 * 16 * 2  # 8 weight layers x kernel, bias x 2 towers, weights and momenta
    for path, device in placed.items():
        tower = int(path.split("_tower")[1][0])
        assert device.endswith(f"CPU:{tower}"), (path, device)


def test_model_parallel_training_step_runs_each_tower_on_its_device(two_cpus):
    """Forward, backward and update ops of tower i are placed on device i (Keras' own tape would not)."""
    placement = two_cpus["model_parallel"]["train_step_placement"]
    assert placement["misplaced"] == []
    for tower in ("0", "1"):
        assert {"Conv2D", "Conv2DBackpropFilter", "Conv2DBackpropInput", "MatMul", "LRNGrad"} <= set(
            placement["types"][tower]
        )
    assert placement["update_devices"] == ["CPU:0", "CPU:1"]


def test_model_parallel_training_step_equals_the_one_device_step(two_cpus):
    step = two_cpus["model_parallel"]["train_step"]
    assert step["loss"] == pytest.approx(step["reference_loss"], rel=1e-5)
    assert step["min_update"] > 0  # every layer moved, so equal weights mean something
    assert step["update_error"] < 1e-4


# --- data parallel on two logical CPUs -------------------------------------------------


def test_data_parallel_splits_the_global_batch_over_the_replicas(two_cpus):
    dp = two_cpus["data_parallel"]
    assert dp["shards"] == [[[2, 32, 32, 3], "CPU:0"], [[2, 32, 32, 3], "CPU:1"]]
    # Keras' loss tracker counts the images the replicas saw: 4, not 2 x 4 (each replica the whole batch).
    assert dp["images_seen"] == [4.0, 4.0]
    assert "does not split evenly over 2 replicas" in dp["uneven_error"]
    assert dp["predict_max_diff"] < 1e-5
    assert dp["test_losses"][0] == pytest.approx(dp["test_losses"][1], rel=1e-5)


def test_data_parallel_steps_equal_the_one_device_steps_and_torch(two_cpus):
    dp = two_cpus["data_parallel"]
    for mirrored, alone, torch_loss in zip(dp["losses"], dp["reference_losses"], dp["torch_losses"], strict=True):
        assert mirrored == pytest.approx(alone, rel=1e-5)
        assert alone == pytest.approx(torch_loss, rel=1e-5)
    assert dp["min_update"] > 0
    assert dp["update_error"] < 1e-4
    assert dp["torch_update_error"] < 1e-4


# --- the coupled weight decay ----------------------------------------------------------


def test_coupled_decay_sgd_is_torch_sgd_and_the_gradient_of_the_l2_term():
    """Two steps with a fixed gradient (one entry zero): PyTorch's SGD, the paper's rule, the L2 term."""
    w0 = np.array([1.0, -2.0, 0.5], dtype=np.float32)
    g = np.array([0.1, 0.0, -0.3], dtype=np.float32)
    lr, momentum, decay = 0.5, 0.9, 0.1
    ours = keras.Variable(w0)
    optimizer = CoupledDecaySGD(coupled_weight_decay=decay, learning_rate=lr, momentum=momentum)
    parameter = torch.nn.Parameter(torch.from_numpy(w0.copy()))
    reference = torch.optim.SGD([parameter], lr=lr, momentum=momentum, weight_decay=decay)
    # Plain SGD on loss = g.w + 0.5 * decay * sum(w^2): the coupled decay as a loss term.
    l2 = tf.Variable(w0)
    plain = keras.optimizers.SGD(learning_rate=lr, momentum=momentum)
    for _ in range(2):
        optimizer.apply_gradients([(tf.constant(g), ours)])
        parameter.grad = torch.from_numpy(g.copy())
        reference.step()
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(g * l2) + 0.5 * decay * tf.reduce_sum(l2**2)
        plain.apply_gradients([(tape.gradient(loss, l2), l2)])
    # By hand: w1 = w0 - lr (g + wd w0); the second step carries momentum x the first, decay included.
    w1 = w0 - lr * (g + decay * w0)
    w2 = w1 + momentum * (w1 - w0) - lr * (g + decay * w1)
    for other in (parameter.detach().numpy(), l2.numpy(), w2):
        np.testing.assert_allclose(np.asarray(ours), other, rtol=1e-6)
    assert np.asarray(ours)[1] != w0[1]  # a zero gradient still decays
    keras_own = keras.Variable(w0)
    decoupled = keras.optimizers.SGD(learning_rate=lr, momentum=momentum, weight_decay=decay)
    for _ in range(2):
        decoupled.apply_gradients([(tf.constant(g), keras_own)])
    assert not np.allclose(np.asarray(keras_own), w2, rtol=1e-3)  # Keras' weight_decay skips the momentum


def test_compile_for_training_decays_weights_with_zero_gradient_through_momentum():
    """Zero inputs give the kernel a zero gradient: train_on_batch moves it by the decay alone."""
    kernel = np.arange(1.0, 7.0, dtype=np.float32).reshape(3, 2) / 10
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.layers[0].set_weights([kernel, np.zeros(2, np.float32)])
    compile_for_training(model, DECAY, LR, MOMENTUM)
    assert isinstance(model.optimizer, CoupledDecaySGD) and not model.jit_compile
    assert model.loss.from_logits
    x, y = np.zeros((4, 3), np.float32), np.array([0, 1, 1, 1])
    model.train_on_batch(x, y)
    w1 = kernel - LR * DECAY * kernel
    np.testing.assert_allclose(model.layers[0].kernel.numpy(), w1, rtol=1e-6)
    model.train_on_batch(x, y)
    w2 = w1 + MOMENTUM * (w1 - kernel) - LR * DECAY * w1
    np.testing.assert_allclose(model.layers[0].kernel.numpy(), w2, rtol=1e-6)
    assert model.layers[0].bias.numpy()[0] < 0 < model.layers[0].bias.numpy()[1]  # the bias did learn


def test_coupled_decay_sgd_round_trips_through_its_config():
    optimizer = CoupledDecaySGD(coupled_weight_decay=1e-3, learning_rate=0.1, momentum=0.5)
    again = CoupledDecaySGD.from_config(optimizer.get_config())
    assert again.coupled_weight_decay == 1e-3 and float(again.momentum) == 0.5
    with pytest.raises(ValueError, match="non-negative"):
        CoupledDecaySGD(coupled_weight_decay=-1.0)
    with pytest.raises(ValueError, match="decoupled"):
        CoupledDecaySGD(weight_decay=5e-4)  # Keras' own, AdamW-style decay: refused, not added on top


# --- refusals --------------------------------------------------------------------------


def test_logical_devices_after_start_up_are_refused_with_the_reason():
    tf.constant(1.0)  # the runtime is running
    with pytest.raises(RuntimeError, match=r"call configure_logical_cpus\(2\) first, in a fresh process"):
        configure_logical_cpus(2)
    with pytest.raises(ValueError, match="at least one"):
        configure_logical_cpus(0)


def test_model_parallel_runs_on_one_device_too_and_refuses_xla():
    """Both towers may share a device (as torch's ["cpu", "cpu"]); XLA cannot span devices."""
    model = build_model_parallel(get_variant("cifar100-split"), ["/device:CPU:0", "/device:CPU:0"])
    assert model(np.zeros((2, 32, 32, 3), np.float32)).shape == (2, 100)
    with pytest.raises(ValueError, match="XLA"):
        compile_for_training(model, DECAY, LR, MOMENTUM, jit_compile=True)
    compile_for_training(model, DECAY, LR, MOMENTUM)
    assert model.jit_compile is False


def test_model_parallel_refuses_single_tower_and_wrong_device_counts():
    with pytest.raises(ValueError, match="single tower"):
        build_model_parallel(get_variant("cifar100-single"), ["/CPU:0", "/CPU:0"])
    with pytest.raises(ValueError, match="needs one device per tower, got 3"):
        build_model_parallel(get_variant("cifar100-split"), ["/CPU:0"] * 3)
    odd = replace(get_variant("cifar100-split").replace_layer("fc8", units=101), classes=101)
    with pytest.raises(ValueError, match="fc8: 101 outputs do not split over 2 devices"):
        build_model_parallel(odd, ["/CPU:0", "/CPU:0"])


# --- the fresh process ----------------------------------------------------------------------


def _update_error(before: dict, after: dict, reference: dict) -> tuple[float, float]:
    """The largest per-tensor |after - reference| / |reference - before| (L2 norms), and the smallest update.

    Norms, not the worst element: one max-pool window with two near-equal inputs can send one
    element's gradient elsewhere after a rounding-level change, which says nothing about the code.
    """
    errors, updates = [], []
    for name in before:
        for key in ("kernel", "bias"):
            update = float(np.linalg.norm(reference[name][key] - before[name][key]))
            errors.append(float(np.linalg.norm(after[name][key] - reference[name][key])) / update)
            updates.append(update)
    return max(errors), min(updates)


def _torch_steps(arch, weights_torch: dict, x: np.ndarray, y: np.ndarray, steps: int) -> tuple[list[float], list]:
    """PyTorch's SGD (momentum, coupled weight decay) from the same weights: losses, weights after each step."""
    from implementations.torch_alexnet import build_torch_model

    model = build_torch_model(arch)
    model.import_weights(weights_torch)
    optimizer = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM, weight_decay=DECAY)
    images, labels = torch.from_numpy(x.transpose(0, 3, 1, 2).copy()), torch.from_numpy(y)
    losses, weights = [], []
    for _ in range(steps):
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(images), labels)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        weights.append(model.export_weights())
    return losses, weights


def _model_parallel_report(devices: list[str], x: np.ndarray, y: np.ndarray) -> dict:
    from implementations import keras_alexnet
    from implementations.spec import infer, parameter_count
    from implementations.torch_alexnet import build_torch_model
    from implementations.weight_mapping import torch_to_keras

    split = get_variant("cifar100-split")
    torch_model = build_torch_model(split).eval()
    weights = torch_to_keras(torch_model.export_weights(), split)
    model = build_model_parallel(split, devices)
    keras_alexnet.load_weights(model, weights)
    reference = keras_alexnet.build_keras_model(split, "grouped")
    keras_alexnet.load_weights(reference, weights)
    logits = np.asarray(model(x, training=False))
    with torch.no_grad():
        torch_logits = torch_model(torch.from_numpy(x.transpose(0, 3, 1, 2).copy())).numpy()
    exported = keras_alexnet.export_weights(model, split)

    compile_for_training(model, DECAY, LR, MOMENTUM)
    graph = (
        tf.function(model.train_step)
        .get_concrete_function((tf.TensorSpec(x.shape, tf.float32), tf.TensorSpec(y.shape, tf.int64), None))
        .graph
    )
    misplaced, types = [], {"0": set(), "1": set()}
    for op in graph.get_operations():
        if op.type in HEAVY_OPS and "_tower" in op.name:
            tower = op.name.split("_tower")[1][0]
            types[tower].add(op.type)
            if not op.device.endswith(f"CPU:{tower}"):
                misplaced.append([op.name, op.device])
    update_devices = sorted(
        {op.device[-5:] for op in graph.get_operations() if op.type == "AssignVariableOp" and "sgd" in op.name}
    )
    variables = [*model.trainable_variables, *(v for v in model.optimizer.variables if "_tower" in v.path)]

    # One training step against the one-device model (towers formulation), dropout off in both.
    quiet = split.replace_layer("dropout6", rate=0.0).replace_layer("dropout7", rate=0.0)
    trained = build_model_parallel(quiet, devices)
    one_device = keras_alexnet.build_keras_model(quiet, "towers")
    for m in (trained, one_device):
        keras_alexnet.load_weights(m, weights)
        compile_for_training(m, DECAY, LR, MOMENTUM)
    losses = [float(m.train_on_batch(x, y)) for m in (trained, one_device)]
    error, update = _update_error(
        weights, keras_alexnet.export_weights(trained, quiet), keras_alexnet.export_weights(one_device, quiet)
    )
    return {
        "max_diff_vs_keras": float(np.abs(logits - np.asarray(reference(x, training=False))).max()),
        "max_diff_vs_torch": float(np.abs(logits - torch_logits).max()),
        "logit_scale": float(np.abs(torch_logits).max()),
        "export_round_trip_exact": all(
            np.array_equal(exported[n][k], weights[n][k]) for n in weights for k in ("kernel", "bias")
        ),
        "params": model.count_params(),
        "spec_params": parameter_count(split),
        "layer_params": keras_alexnet.layer_parameter_counts(model, split),
        "spec_layer_params": {info.name: info.params for info in infer(split)},
        "variable_devices": {v.path: v.value.device for v in variables},
        "train_step_placement": {
            "misplaced": misplaced,
            "types": {k: sorted(v) for k, v in types.items()},
            "update_devices": update_devices,
        },
        "train_step": {
            "loss": losses[0],
            "reference_loss": losses[1],
            "update_error": error,
            "min_update": update,
        },
    }


def _images_seen(model: keras.Model) -> float:
    """What Keras' loss tracker (a mean weighted by batch size) counted over all replicas."""
    return float(next(m for m in model.metrics if m.name == "loss").count.numpy())


def _data_parallel_report(x: np.ndarray, y: np.ndarray, devices: list[str]) -> dict:
    from implementations import keras_alexnet
    from implementations.keras_multi_device import build_data_parallel, distribute_batch
    from implementations.torch_alexnet import build_torch_model
    from implementations.weight_mapping import keras_to_torch, torch_to_keras

    single = get_variant("cifar100-single").replace_layer("dropout6", rate=0.0).replace_layer("dropout7", rate=0.0)
    weights = torch_to_keras(build_torch_model(single).export_weights(), single)
    strategy, mirrored = build_data_parallel(single, "grouped", devices, DECAY, LR, MOMENTUM)
    keras_alexnet.load_weights(mirrored, weights)
    alone = keras_alexnet.build_keras_model(single, "grouped")
    keras_alexnet.load_weights(alone, weights)
    compile_for_training(alone, DECAY, LR, MOMENTUM)

    # Inference and evaluation split the global batch too.
    predict_diff = float(np.abs(mirrored.predict_on_batch(x) - np.asarray(alone(x, training=False))).max())
    evaluated = [float(m.test_on_batch(x, y)) for m in (mirrored, alone)]

    # Step 1 from a plain global batch (sharded by the model); its weights against one device's
    # and PyTorch's. Step 2 from pre-distributed shards, momentum included; its loss only, since
    # a rounding-level difference in the weights can move a max-pool's choice and so a gradient.
    torch_losses, torch_weights = _torch_steps(single, keras_to_torch(weights, single), x, y, steps=2)
    losses = [float(mirrored.train_on_batch(x, y))]
    reference_losses = [float(alone.train_on_batch(x, y))]
    images_seen = [_images_seen(mirrored)]
    after = keras_alexnet.export_weights(alone, single)
    error, update = _update_error(weights, keras_alexnet.export_weights(mirrored, single), after)
    torch_error, _ = _update_error(weights, torch_to_keras(torch_weights[0], single), after)
    shards_x, shards_y = distribute_batch(strategy, x, y)
    losses.append(float(mirrored.train_on_batch(shards_x, shards_y)))
    reference_losses.append(float(alone.train_on_batch(x, y)))
    images_seen.append(_images_seen(mirrored))
    try:
        distribute_batch(strategy, x[:3])
    except ValueError as refused:
        uneven = str(refused)
    else:
        uneven = ""
    return {
        "shards": [[list(t.shape), t.device[-5:]] for t in strategy.experimental_local_results(shards_x)],
        "images_seen": images_seen,
        "uneven_error": uneven,
        "predict_max_diff": predict_diff,
        "test_losses": evaluated,
        "losses": losses,
        "reference_losses": reference_losses,
        "torch_losses": torch_losses,
        "update_error": error,
        "torch_update_error": torch_error,
        "min_update": update,
    }


def _fresh_process(out: Path) -> None:
    devices = configure_logical_cpus(2)  # first: nothing may start TensorFlow's runtime before it
    keras.utils.set_random_seed(0)
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((4, 32, 32, 3)) * 50).astype(np.float32)  # pixel scale, as the paper's inputs
    y = np.array([1, 5, 7, 99])
    report = {
        "devices": devices,
        "model_parallel": _model_parallel_report(devices, x, y),
        "data_parallel": _data_parallel_report(x, y, devices),
    }
    out.write_text(json.dumps(report))


if __name__ == "__main__":
    _fresh_process(Path(sys.argv[1]))
