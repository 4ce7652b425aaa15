"""Training for accuracy, the framework-neutral half: configuration, batch order, schedule, metrics.

Both frameworks see the same thing: the same initial weights (``initial_weights``, drawn once in
NumPy), the same images in the same order (one permutation per epoch from one seed), the same
learning-rate schedule and the same update rule (``implementations.paper_sgd``: the paper's
section 5 SGD, momentum 0.9, coupled weight decay 5e-4). Dropout masks come from each framework's
own generator, unless ``shared_dropout`` asks for masks drawn here in NumPy from (seed, step).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from benchmarks.results import job_key, known_fields
from implementations.paper_sgd import MOMENTUM, PAPER, WEIGHT_DECAY, check_rule, describe
from implementations.spec import Architecture, Dropout, infer

if TYPE_CHECKING:
    from benchmarks.cell import CellConfig


@dataclass(frozen=True)
class TrainConfig:
    framework: str
    variant: str = "cifar100-split"
    split_impl: str = "grouped"
    dataset: str = "digits"
    epochs: int = 4
    batch_size: int = 32
    learning_rate: float = 0.01
    # The paper divides the rate by 10 when validation error stops improving; with a fixed epoch
    # budget this suite divides it by 10 at these fractions of the run instead.
    decay_at: tuple[float, ...] = (0.75,)
    # Gradual warm-up (Goyal et al. 2017, "Accurate, Large Minibatch SGD"): the rate rises
    # linearly to its base value over this many epochs. Without it the first steps at full rate
    # and momentum 0.9 can throw a freshly initialised single-tower net into a plateau at chance.
    warmup_epochs: float = 1.0
    momentum: float = MOMENTUM
    weight_decay: float = WEIGHT_DECAY
    update_rule: str = PAPER  # see implementations.paper_sgd.RULES; others exist for mutation tests
    shared_dropout: bool = False  # masks drawn in NumPy from (seed, step), the same in both frameworks
    init: str = "torch-default"
    seed: int = 0
    deterministic: bool = False
    target_top1: float = 0.9
    max_train_images: int | None = None  # a prefix of each epoch's order, for quick checks
    data_dir: str | None = None
    download: bool = False

    worker_flag: ClassVar[str] = "--train"  # how the worker is told it runs a training job

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    def key(self) -> str:
        return job_key(asdict(self))

    def launch_cell(self) -> CellConfig:
        """Training starts its worker as a plain one-device cell does: no launcher of a fast path, one node."""
        from benchmarks.cell import CellConfig

        return CellConfig(self.framework, self.variant, "train", self.batch_size, split_impl=self.split_impl)

    def row_fields(self, framework_environment: dict | None = None) -> dict:
        """What a result row records of this run besides its figures (mode ``accuracy``)."""
        on_gpu = bool(framework_environment) and "cuda" in str(framework_environment.get("devices"))
        return {
            "cell": {**asdict(self), "mode": "accuracy", "repeat": 0, "gpus": 0, "simulate_devices": 0},
            "device_setup": "1 gpu" if on_gpu else "cpu",
            "devices": 1,
            "parallel": "none",
            "simulated": False,
        }

    @classmethod
    def from_dict(cls, data: dict) -> TrainConfig:
        data = known_fields(cls, data, "training")
        config = cls(**{**data, "decay_at": tuple(data.get("decay_at", cls.decay_at))})
        check_rule(config.update_rule)
        return config


def learning_rate(config: TrainConfig, epoch: int, done: float = 1.0) -> float:
    """The rate for a step that ends ``done`` (0 to 1) of the way through ``epoch`` (from 0).

    Step schedule: the base rate, divided by 10 at each fraction of ``decay_at`` passed; during
    the first ``warmup_epochs`` it is scaled by the share of the warm-up completed.
    """
    passed = sum(epoch >= round(fraction * config.epochs) for fraction in config.decay_at)
    rate = config.learning_rate * 0.1**passed
    if config.warmup_epochs > 0:
        rate *= min(1.0, (epoch + done) / config.warmup_epochs)
    return rate


def epoch_batches(config: TrainConfig, train_size: int, epoch: int) -> list[np.ndarray]:
    """Index batches for one epoch: a permutation seeded by (seed, epoch), the same in both frameworks.

    The last partial batch is dropped so that every step has the same size.
    """
    order = np.random.default_rng([config.seed, epoch]).permutation(train_size)
    if config.max_train_images:
        order = order[: config.max_train_images]
    usable = len(order) - len(order) % config.batch_size
    return [order[start : start + config.batch_size] for start in range(0, usable, config.batch_size)]


def dropout_masks(arch: Architecture, seed: int, step: int, batch_size: int) -> dict[str, np.ndarray]:
    """Per dropout layer, the mask for global step ``step`` (from 0): 0 or 1/(1-rate), float32.

    Drawn from (seed, step, layer index) alone, so both frameworks, in their own processes, drop
    the same units of the same images at the same step.
    """
    masks = {}
    for index, (layer, info) in enumerate(zip(arch.layers, infer(arch), strict=True)):
        if isinstance(layer, Dropout):
            draw = np.random.default_rng([seed, step, index]).random((batch_size, *info.output_shape))
            masks[layer.name] = ((draw >= layer.rate) / np.float32(1 - layer.rate)).astype(np.float32)
    return masks


def top_k_accuracy(logits: np.ndarray, labels: np.ndarray, k: int) -> float:
    k = min(k, logits.shape[1])
    top = np.argpartition(-logits, k - 1, axis=1)[:, :k]
    return float(np.mean(np.any(top == labels[:, None], axis=1)))


def cross_entropy(logits: np.ndarray, labels: np.ndarray) -> float:
    """Mean softmax cross-entropy, computed stably in float64 (the same formula for both frameworks)."""
    shifted = logits.astype(np.float64) - logits.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    return float(-log_probs[np.arange(len(labels)), labels].mean())


@dataclass(frozen=True)
class TrainingData:
    """Images as float32 NHWC, mean-subtracted at pixel scale (paper section 2); int64 labels."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    classes: int
    source: str


class Trainer:
    """What a framework provides; ``run_training`` drives it identically for both."""

    def set_learning_rate(self, rate: float) -> None:
        raise NotImplementedError

    def train_step(self, images: np.ndarray, labels: np.ndarray, masks: dict[str, np.ndarray] | None = None) -> float:
        """One SGD step on NHWC float32 images; returns the batch's cross-entropy (no decay term).

        ``masks``: dropout masks by layer name (shared-dropout mode); None: the framework's own dropout.
        """
        raise NotImplementedError

    def predict(self, images: np.ndarray) -> np.ndarray:
        """Logits in inference mode (dropout off)."""
        raise NotImplementedError


def training_steps(config: TrainConfig, train_size: int):
    """Every step of the run in order: (epoch, step in epoch from 1, steps in epoch, index batch)."""
    for epoch in range(config.epochs):
        batches = epoch_batches(config, train_size, epoch)
        for step, batch in enumerate(batches, start=1):
            yield epoch, step, len(batches), batch


def take_step(
    config: TrainConfig, data: TrainingData, trainer: Trainer, arch: Architecture, index: int, batch
) -> float:
    """Global step ``index`` (from 0) on ``batch``, with shared masks when the config asks for them."""
    masks = dropout_masks(arch, config.seed, index, len(batch)) if config.shared_dropout else None
    return trainer.train_step(data.x_train[batch], data.y_train[batch], masks)


def optimiser_metrics(config: TrainConfig) -> dict:
    """What a row says about the update rule and the dropout masks that ran."""
    return {
        "update_rule": describe(config.update_rule),
        "dropout": "shared masks from (seed, step)" if config.shared_dropout else "each framework's own generator",
    }


class TrainingDiverged(ArithmeticError):
    """The loss became inf or NaN: the run has no figures left to report, only where it went wrong."""


def run_training(config: TrainConfig, data: TrainingData, trainer: Trainer, eval_batch: int = 256) -> dict:
    """Train for ``config.epochs`` epochs, evaluating after each; returns the history."""
    import time

    from implementations.variants import get_variant

    arch = get_variant(config.variant)

    step_losses: list[float] = []
    curve: list[dict] = []
    train_seconds, time_to_target = 0.0, None
    rate = None
    for epoch in range(config.epochs):
        batches = epoch_batches(config, len(data.x_train), epoch)
        start = time.perf_counter()
        for step, batch in enumerate(batches, start=1):
            step_rate = learning_rate(config, epoch, step / len(batches))
            if step_rate != rate:
                trainer.set_learning_rate(step_rate)
                rate = step_rate
            step_losses.append(take_step(config, data, trainer, arch, len(step_losses), batch))
            if not math.isfinite(step_losses[-1]):
                raise TrainingDiverged(
                    f"training diverged: the loss became {step_losses[-1]} at step {len(step_losses)} (epoch "
                    f"{epoch + 1}, rate {rate:g}); lower --learning-rate, lengthen --warmup-epochs or raise the batch "
                    f"size (now {config.batch_size})"
                )
        epoch_seconds = time.perf_counter() - start
        train_seconds += epoch_seconds
        start = time.perf_counter()
        logits = np.concatenate(
            [trainer.predict(data.x_test[i : i + eval_batch]) for i in range(0, len(data.x_test), eval_batch)]
        )
        eval_seconds = time.perf_counter() - start
        top1 = top_k_accuracy(logits, data.y_test, 1)
        curve.append(
            {
                "epoch": epoch + 1,
                "learning_rate": rate,
                "train_loss": float(np.mean(step_losses[-len(batches) :])) if batches else None,
                "test_loss": cross_entropy(logits, data.y_test),
                "top1": top1,
                "top5": top_k_accuracy(logits, data.y_test, 5),
                "train_images_per_s": len(batches) * config.batch_size / epoch_seconds if batches else None,
                "eval_images_per_s": len(data.x_test) / eval_seconds,
                "train_seconds": train_seconds,
            }
        )
        if time_to_target is None and top1 >= config.target_top1:
            time_to_target = train_seconds
    final = curve[-1]
    return {
        "top1": final["top1"],
        "top5": final["top5"],
        "test_loss": final["test_loss"],
        "train_images_per_s": float(np.median([c["train_images_per_s"] for c in curve if c["train_images_per_s"]])),
        "train_seconds": train_seconds,
        "target_top1": config.target_top1,
        "time_to_target_s": time_to_target,
        "curve": curve,
        "step_losses": step_losses,
        **optimiser_metrics(config),
    }
