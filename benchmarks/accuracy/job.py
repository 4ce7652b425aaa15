"""Accuracy runs: train one framework on a real data set in a worker process, report the curve.

The worker (``python -m benchmarks.worker --train '<json>'``) loads the data through the shared
loader, draws the shared initial weights, trains with the framework's trainer and prints the
history. The parent writes it as a results row with mode ``accuracy`` (see ``TrainConfig.row_fields``).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from benchmarks import frameworks
from benchmarks.accuracy.training import TrainConfig, Trainer, TrainingData, run_training
from implementations.weight_mapping import LayerWeights


def training_data(config: TrainConfig) -> TrainingData:
    """The data set as float32 NHWC, minus the training set's per-channel mean, at pixel scale
    (the paper's only preprocessing, section 2). Identical bytes for both frameworks."""
    from benchmarks.accuracy.datasets import channel_mean, load_dataset, normalize

    dataset = load_dataset(
        config.dataset, Path(config.data_dir) if config.data_dir else None, download=config.download, seed=config.seed
    )
    mean = channel_mean(dataset.x_train)

    return TrainingData(
        normalize(dataset.x_train, mean),
        dataset.y_train.astype(np.int64),
        normalize(dataset.x_test, mean),
        dataset.y_test.astype(np.int64),
        dataset.classes,
        dataset.source,
    )


def make_trainer(config: TrainConfig, weights: LayerWeights | None = None) -> Trainer:
    """The framework's trainer, from ``weights`` (PyTorch layout) or else the config's shared initial weights."""
    from implementations.initial_weights import initial_weights
    from implementations.variants import get_variant

    if weights is None:
        weights = initial_weights(get_variant(config.variant), config.seed, config.init)
    return frameworks.get(config.framework).trainer(config, weights)


def train(config: TrainConfig) -> dict:
    """Everything the worker does for one accuracy run; the figures for the row."""
    data = training_data(config)
    if data.classes > _classes(config):
        raise ValueError(
            f"{config.dataset} has {data.classes} classes but {config.variant} predicts only "
            f"{_classes(config)}; use a variant with a larger classifier"
        )
    trainer = make_trainer(config)
    started = time.perf_counter()
    history = run_training(config, data, trainer)
    history["wall_s"] = time.perf_counter() - started
    history["data_source"] = data.source
    history["train_images"] = len(data.x_train)
    history["test_images"] = len(data.x_test)
    history["environment"] = trainer.environment()
    return history


def _classes(config: TrainConfig) -> int:
    from implementations.variants import get_variant

    return get_variant(config.variant).classes
