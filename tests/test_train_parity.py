"""One update rule and one source of dropout masks for both frameworks, and a parity check that can fail.

The optimiser tests compare each framework's optimiser with the NumPy reference of
``implementations.paper_sgd`` under a rate that changes every step (as in the warm-up), where
the paper's form and ``torch.optim.SGD``'s form differ. The parity tests run each framework in
its own worker for a few steps (CIFAR-100 shapes, batch 4, a five-step warm-up) and check that
the unchanged pair passes and each mutation fails.
"""

from dataclasses import replace

import numpy as np
import pytest
import torch

from benchmarks.accuracy.parity import CONTROL_PERTURBATION, compare, parity_config, run_side, summary_lines
from benchmarks.accuracy.training import dropout_masks
from implementations.paper_sgd import DECOUPLED_DECAY, GRADIENT_UNITS, PAPER, RULES, update
from implementations.torch_training import PaperSGD
from implementations.variants import get_variant

RATES = [0.01, 0.02, 0.03, 0.05, 0.05]  # a warm-up, then constant
M, D = 0.9, 5e-4


def reference(rule: str, w0: np.ndarray, grads: list[np.ndarray], rates: list[float]) -> np.ndarray:
    w, state = w0.astype(np.float64), np.zeros_like(w0, dtype=np.float64)
    for g, lr in zip(grads, rates, strict=True):
        w, state = update(rule, w, state, g, lr, M, D)
    return w


def problem(seed: int = 0) -> tuple[np.ndarray, list[np.ndarray]]:
    rng = np.random.default_rng(seed)
    w0 = rng.normal(0, 1, 6).astype(np.float32)
    grads = [rng.normal(0, 1, 6).astype(np.float32) for _ in RATES]
    grads[0][1] = 0.0  # a zero gradient still decays
    return w0, grads


def torch_steps(optimizer_for, w0: np.ndarray, grads: list[np.ndarray], rates: list[float]) -> np.ndarray:
    parameter = torch.nn.Parameter(torch.from_numpy(w0.copy()))
    optimizer = optimizer_for([parameter])
    for g, lr in zip(grads, rates, strict=True):
        for group in optimizer.param_groups:
            group["lr"] = lr
        parameter.grad = torch.from_numpy(g.copy())
        optimizer.step()
    return parameter.detach().numpy()


@pytest.mark.parametrize("rule", list(RULES))
def test_paper_sgd_for_torch_follows_the_reference_under_a_changing_rate(rule):
    w0, grads = problem()
    ours = torch_steps(lambda p: PaperSGD(p, momentum=M, weight_decay=D, rule=rule), w0, grads, RATES)
    np.testing.assert_allclose(ours, reference(rule, w0, grads, RATES), rtol=1e-6, atol=1e-7)
    others = [reference(other, w0, grads, RATES) for other in RULES if other != rule]
    assert all(not np.allclose(ours, other, rtol=1e-4, atol=0) for other in others)  # the rules are distinct


def test_torch_sgd_is_the_paper_rule_only_while_the_rate_is_constant():
    w0, grads = problem(1)

    def sgd(params):
        return torch.optim.SGD(params, lr=0.01, momentum=M, weight_decay=D)

    constant = [0.03] * len(RATES)
    np.testing.assert_allclose(torch_steps(sgd, w0, grads, constant), reference(PAPER, w0, grads, constant), rtol=1e-6)
    changing = torch_steps(sgd, w0, grads, RATES)
    np.testing.assert_allclose(changing, reference(GRADIENT_UNITS, w0, grads, RATES), rtol=1e-6)
    assert not np.allclose(changing, reference(PAPER, w0, grads, RATES), rtol=1e-3, atol=0)


def test_keras_coupled_decay_sgd_follows_the_paper_rule_under_a_changing_rate():
    import keras
    import tensorflow as tf

    from implementations.keras_training import CoupledDecaySGD

    w0, grads = problem(2)
    variable = keras.Variable(w0)
    optimizer = CoupledDecaySGD(coupled_weight_decay=D, learning_rate=RATES[0], momentum=M)
    for g, lr in zip(grads, RATES, strict=True):
        optimizer.learning_rate.assign(lr)
        optimizer.apply_gradients([(tf.constant(g), variable)])
    np.testing.assert_allclose(np.asarray(variable), reference(PAPER, w0, grads, RATES), rtol=1e-6, atol=1e-7)
    assert CoupledDecaySGD.update_rule == PAPER


def test_dropout_masks_come_from_seed_and_step_alone():
    arch = get_variant("cifar100-split")
    masks = dropout_masks(arch, seed=0, step=3, batch_size=64)
    assert set(masks) == {"dropout6", "dropout7"} and masks["dropout6"].shape == (64, 4096)
    assert masks["dropout6"].dtype == np.float32 and set(np.unique(masks["dropout6"])) == {0.0, 2.0}
    assert abs(float((masks["dropout6"] == 0).mean()) - 0.5) < 0.01  # rate 0.5
    again = dropout_masks(arch, 0, 3, 64)
    assert all(np.array_equal(masks[name], again[name]) for name in masks)
    for other in (dropout_masks(arch, 0, 4, 64), dropout_masks(arch, 1, 3, 64)):
        assert not np.array_equal(other["dropout6"], masks["dropout6"])
    assert not np.array_equal(masks["dropout6"], masks["dropout7"])


def test_torch_model_applies_a_supplied_mask_only_while_training():
    from implementations.torch_alexnet import build_torch_model

    model = build_torch_model(get_variant("cifar100-split"))
    x = torch.randn(2, 3, 32, 32)
    masks = {name: torch.from_numpy(m) for name, m in dropout_masks(model.arch, 0, 0, 2).items()}
    model.train()
    assert torch.equal(model(x, dropout_masks=masks), model(x, dropout_masks=masks))  # no draw of its own
    model.eval()
    assert torch.equal(model(x, dropout_masks=masks), model(x))


# The parity check on a short run: five steps of a five-step warm-up (the rate changes each step).
SHORT = {"batch_size": 4, "max_train_images": 20, "epochs": 2}
IMPLS = {"torch": "grouped", "keras": "towers"}
VARIANT = "cifar100-split"


@pytest.fixture(scope="module")
def references():
    """Keras, and the control (Keras from perturbed kernels), run once for every PyTorch side."""
    keras_config = parity_config("keras", VARIANT, IMPLS["keras"], **SHORT)
    return run_side(keras_config, steps=5), run_side(keras_config, steps=5, perturb_init=CONTROL_PERTURBATION)


def torch_report(references, **mutation):
    config = replace(parity_config("torch", VARIANT, IMPLS["torch"], **SHORT), **mutation)
    return compare(config, run_side(config, steps=5), *references)


def test_parity_check_passes_for_the_same_rule_and_masks(references):
    report = torch_report(references)
    assert report.passed, summary_lines(report)
    assert np.all(report.loss_gaps <= report.allowed_gaps) and report.loss_gaps.max() < 1e-5
    assert report.control_gaps.max() > 0  # the control did start elsewhere
    assert len(report.torch_losses) == 5 and set(report.layers) == {f"conv{i}" for i in range(1, 6)} | {
        "fc6",
        "fc7",
        "fc8",
    }
    assert report.update_rules["torch"] == report.update_rules["keras"] and PAPER in report.update_rules["keras"]


@pytest.mark.parametrize(
    "mutation",
    [{"update_rule": GRADIENT_UNITS}, {"update_rule": DECOUPLED_DECAY}, {"shared_dropout": False}],
    ids=["momentum-in-gradient-units", "decay-outside-momentum", "unshared-dropout-masks"],
)
def test_parity_check_fails_for_each_mutation(references, mutation):
    report = torch_report(references, **mutation)
    assert not report.passed, summary_lines(report)
    assert report.failing_layers


def test_loss_gap_line_says_which_rule_ran_and_whether_masks_were_shared():
    from reports.accuracy_summary import loss_gaps

    def row(framework: str, rule: str, dropout: str) -> dict:
        cell = {"framework": framework, "variant": "cifar100-split", "dataset": "digits"}
        metrics = {"step_losses": [2.0, 1.5], "update_rule": f"{rule} (...)", "dropout": dropout}
        return {"status": "ok", "cell": cell, "metrics": metrics}

    own, shared = "each framework's own generator", "shared masks from (seed, step)"
    same = loss_gaps([row("torch", PAPER, own), row("keras", PAPER, own)])
    assert len(same) == 1 and same[0].endswith("(update rule paper in both; dropout masks differ between frameworks)")
    mixed = loss_gaps([row("torch", GRADIENT_UNITS, shared), row("keras", PAPER, shared)])
    assert mixed[0].endswith("(update rules differ: gradient-units vs paper; dropout masks shared)")


def test_more_parity_steps_than_the_run_has_is_the_users_mistake():
    """One line and exit code 2, as for any bad option; the run's step count is named."""
    import subprocess
    import sys
    from pathlib import Path

    command = [sys.executable, "bench.py", "train", "--check-parity", "--parity-steps", "100000"]
    command += ["-v", "cifar100-single", "--dataset", "digits", "--epochs", "1"]
    done = subprocess.run(command, cwd=Path(__file__).parent.parent, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "--parity-steps 100000 is more than the run has" in done.stderr and "Traceback" not in done.stderr


def test_ctrl_c_during_the_parity_check_is_one_line_and_exit_130(monkeypatch, capsys):
    import bench
    from benchmarks.accuracy import parity

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(parity, "run_check", interrupted)
    with pytest.raises(SystemExit) as exit_:
        bench.main(["train", "--check-parity", "--dataset", "digits", "-v", "cifar100-single"])
    assert exit_.value.code == 130
    assert "error: interrupted; the parity check writes nothing" in capsys.readouterr().err
