"""The framework-neutral half of accuracy runs: order, schedule, metrics, and the driver loop."""

import numpy as np
import pytest

from benchmarks.accuracy.training import (
    TrainConfig,
    Trainer,
    TrainingData,
    TrainingDiverged,
    cross_entropy,
    dropout_masks,
    epoch_batches,
    learning_rate,
    run_training,
    top_k_accuracy,
)
from implementations.initial_weights import initial_weights
from implementations.spec import parameter_count
from implementations.variants import get_variant


def test_batch_order_is_fixed_by_seed_and_epoch_and_drops_the_partial_batch():
    config = TrainConfig("torch", batch_size=4)
    first = epoch_batches(config, 10, epoch=0)
    assert [len(b) for b in first] == [4, 4]
    assert all(np.array_equal(a, b) for a, b in zip(first, epoch_batches(config, 10, 0), strict=True))
    assert not np.array_equal(np.concatenate(first), np.concatenate(epoch_batches(config, 10, 1)))
    other_seed = TrainConfig("keras", batch_size=4, seed=1)
    assert not np.array_equal(np.concatenate(first), np.concatenate(epoch_batches(other_seed, 10, 0)))
    assert sum(len(b) for b in epoch_batches(TrainConfig("torch", batch_size=4, max_train_images=5), 10, 0)) == 4


def test_step_schedule_divides_by_ten_at_half_and_three_quarters():
    config = TrainConfig("torch", epochs=8, learning_rate=0.1, decay_at=(0.5, 0.75), warmup_epochs=0)
    assert [round(learning_rate(config, e), 6) for e in range(8)] == [0.1] * 4 + [0.01] * 2 + [0.001] * 2


def test_warm_up_rises_linearly_to_the_base_rate_then_the_steps_apply():
    config = TrainConfig("torch", epochs=4, learning_rate=0.1, decay_at=(0.75,), warmup_epochs=2)
    rising = [learning_rate(config, epoch, done) for epoch in (0, 1) for done in (0.25, 0.5, 1.0)]
    assert rising == pytest.approx([0.0125, 0.025, 0.05, 0.0625, 0.075, 0.1])
    assert learning_rate(config, 2, 0.5) == pytest.approx(0.1)
    assert learning_rate(config, 3, 0.5) == pytest.approx(0.01)


def test_metrics_against_hand_computed_values():
    logits = np.array([[3.0, 1.0, 2.0], [0.0, 5.0, 1.0]])
    labels = np.array([2, 1])
    assert top_k_accuracy(logits, labels, 1) == 0.5
    assert top_k_accuracy(logits, labels, 2) == 1.0
    expected = -(np.log(np.exp(2) / np.exp([3, 1, 2]).sum()) + np.log(np.exp(5) / np.exp([0, 5, 1]).sum())) / 2
    assert cross_entropy(logits, labels) == pytest.approx(expected)


def test_config_round_trips_and_refuses_unknown_fields():
    config = TrainConfig("keras", epochs=3, decay_at=(0.5,))
    import json

    assert TrainConfig.from_dict(json.loads(config.to_json())) == config
    with pytest.raises(ValueError, match="unknown training fields: lr"):
        TrainConfig.from_dict({"framework": "torch", "lr": 1})


class MemorisingTrainer(Trainer):
    """A fake framework that learns the test labels after its first step, to check the loop."""

    def __init__(self, labels: np.ndarray) -> None:
        self.labels, self.steps, self.rates, self.masks = labels, 0, [], []

    def set_learning_rate(self, rate: float) -> None:
        self.rates.append(rate)

    def train_step(self, images, labels, masks=None) -> float:
        self.steps += 1
        self.masks.append(masks)
        return 1.0 / self.steps

    def predict(self, images) -> np.ndarray:
        logits = np.zeros((len(images), 10))
        logits[np.arange(len(images)), self.labels[: len(images)]] = 1.0
        return logits


def random_data(train: int, test: int, side: int) -> TrainingData:
    """Seeded random images (NHWC, 3 channels) and labels of 10 classes."""
    rng = np.random.default_rng(0)
    images = [rng.standard_normal((n, side, side, 3)).astype(np.float32) for n in (train, test)]
    return TrainingData(images[0], rng.integers(0, 10, train), images[1], rng.integers(0, 10, test), 10, "test")


def test_run_training_drives_epochs_and_records_the_curve():
    data = random_data(20, 6, 4)
    trainer = MemorisingTrainer(data.y_test)
    config = TrainConfig("torch", epochs=4, batch_size=8, learning_rate=0.1, decay_at=(0.5, 0.75))
    history = run_training(config, data, trainer)
    assert trainer.steps == 4 * 2 and len(history["step_losses"]) == 8
    # Two steps per epoch: half the rate for the first step of warm-up, then the step schedule.
    assert trainer.rates == pytest.approx([0.05, 0.1, 0.01, 0.001])
    assert [c["epoch"] for c in history["curve"]] == [1, 2, 3, 4]
    assert history["top1"] == 1.0 and history["time_to_target_s"] is not None
    assert trainer.masks == [None] * 8 and history["update_rule"].startswith("paper (")
    assert history["dropout"] == "each framework's own generator"


class DivergingTrainer(MemorisingTrainer):
    """Its loss blows up at the third step, as a too-high rate on a tiny batch does."""

    def train_step(self, images, labels, masks=None) -> float:
        super().train_step(images, labels, masks)
        return float("nan") if self.steps >= 3 else 2.0


def test_a_loss_that_becomes_nan_stops_the_run_with_where_and_what_to_change():
    data = random_data(20, 6, 4)
    trainer = DivergingTrainer(data.y_test)
    config = TrainConfig("torch", epochs=4, batch_size=8)
    with pytest.raises(
        TrainingDiverged, match=r"the loss became nan at step 3 \(epoch 2, rate 0.01\).*--learning-rate"
    ):
        run_training(config, data, trainer)
    assert trainer.steps == 3  # nothing trained past the divergence


def test_shared_dropout_hands_each_step_its_own_masks():
    data = random_data(16, 4, 32)
    trainer = MemorisingTrainer(data.y_test)
    config = TrainConfig("torch", variant="cifar100-split", epochs=2, batch_size=8, shared_dropout=True)
    history = run_training(config, data, trainer)
    assert [sorted(m) for m in trainer.masks] == [["dropout6", "dropout7"]] * 4
    assert trainer.masks[0]["dropout6"].shape == (8, 4096)
    assert not np.array_equal(trainer.masks[0]["dropout6"], trainer.masks[1]["dropout6"])
    expected = dropout_masks(get_variant("cifar100-split"), 0, 3, 8)["dropout7"]  # global step 3: epoch 2, step 2
    assert np.array_equal(trainer.masks[3]["dropout7"], expected)
    assert history["dropout"] == "shared masks from (seed, step)"


def test_config_refuses_an_unknown_update_rule():
    with pytest.raises(ValueError, match="unknown update rule 'adam'"):
        TrainConfig.from_dict({"framework": "torch", "update_rule": "adam"})


@pytest.mark.parametrize("scheme", ["torch-default", "paper"])
def test_initial_weights_have_the_spec_parameter_count_and_depend_on_the_seed(scheme):
    arch = get_variant("cifar100-split")
    weights = initial_weights(arch, seed=0, scheme=scheme)
    assert sum(a.size for layer in weights.values() for a in layer.values()) == parameter_count(arch)
    assert weights["conv2"]["kernel"].shape == (256, 48, 5, 5)
    again, other = initial_weights(arch, 0, scheme), initial_weights(arch, 1, scheme)
    assert np.array_equal(again["fc6"]["kernel"], weights["fc6"]["kernel"])
    assert not np.array_equal(other["fc6"]["kernel"], weights["fc6"]["kernel"])


def test_paper_initialisation_follows_section_5():
    weights = initial_weights(get_variant("cifar100-single"), scheme="paper")
    assert weights["conv1"]["kernel"].std() == pytest.approx(0.01, rel=0.05)
    assert {name for name, w in weights.items() if np.all(w["bias"] == 1)} == {"conv2", "conv4", "conv5", "fc6", "fc7"}
    assert np.all(weights["fc8"]["bias"] == 0) and np.all(weights["conv1"]["bias"] == 0)
