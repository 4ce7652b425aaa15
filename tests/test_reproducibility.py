"""Same seed, deterministic mode: identical per-step losses in each framework; and the cross-framework gap."""

import functools

import numpy as np
import pytest

from benchmarks.accuracy.job import make_trainer
from benchmarks.accuracy.training import TrainConfig, TrainingData, run_training
from reports.accuracy_summary import loss_gap, repro_verdicts


def tiny_data(seed: int = 0) -> TrainingData:
    """A few learnable 32x32 images: the class is the brightest quadrant (pixel scale, centred)."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 4, 40)
    images = rng.normal(0, 20, (40, 32, 32, 3)).astype(np.float32)
    for i, label in enumerate(labels):
        r, c = divmod(int(label), 2)
        images[i, r * 16 : r * 16 + 16, c * 16 : c * 16 + 16] += 100
    return TrainingData(images[:32], labels[:32], images[32:], labels[32:], 4, "synthetic")


def losses(framework: str, **changes) -> list[float]:
    config = TrainConfig(
        framework, variant="cifar100-split", split_impl="towers", epochs=1, batch_size=8, deterministic=True, **changes
    )
    return run_training(config, tiny_data(), make_trainer(config))["step_losses"]


@functools.cache
def first_run(framework: str) -> tuple[float, ...]:
    """The default run's losses, trained once and shared by the tests that only read them."""
    return tuple(losses(framework))


@pytest.mark.parametrize("framework", ["torch", "keras"])
def test_same_seed_deterministic_runs_give_identical_losses(framework):
    first, second = list(first_run(framework)), losses(framework)
    assert len(first) == 4
    assert first == second  # bit-identical, not approximately equal
    assert losses(framework, seed=1) != first  # and the seed matters


def test_both_frameworks_start_from_the_same_loss():
    """Same weights and batch: the first step's loss differs only by the dropout masks."""
    torch_losses, keras_losses = list(first_run("torch")), list(first_run("keras"))
    gap = loss_gap(torch_losses, keras_losses)
    assert gap["step1"] < 0.05 * torch_losses[0]


def test_repro_verdicts_name_the_first_differing_step():
    row = {
        "key": "k",
        "status": "ok",
        "cell": {"framework": "torch", "variant": "v", "dataset": "d"},
        "metrics": {"step_losses": [1.0, 0.9, 0.8]},
    }
    changed = {**row, "metrics": {"step_losses": [1.0, 0.9, 0.7]}}
    assert repro_verdicts([row, row]) == [(True, "torch v on d: 3 step losses identical across 2 runs")]
    assert repro_verdicts([row, changed]) == [(False, "torch v on d: losses differ from step 3 (1 of 3 steps)")]


@pytest.mark.parametrize("framework", ["torch", "keras"])
def test_a_trainer_names_its_device_and_deterministic_mode(framework):
    config = TrainConfig(framework, variant="cifar100-split", split_impl="towers", deterministic=True)
    environment = make_trainer(config).environment()
    assert environment["framework"] == framework and environment["deterministic"] is True
    assert len(environment["devices"]) == 1 and "cpu" in str(environment["devices"][0]).lower()
