"""Accuracy runs: train one framework on a real data set in a worker process, report the curve.

The worker (``python -m benchmarks.worker --train '<json>'``) loads the data through the shared
loader, draws the shared initial weights, trains with the framework's trainer and prints the
history. The parent writes it as a results row with mode ``accuracy``.
"""

from __future__ import annotations

import hashlib
import sys
import time
import uuid
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from benchmarks.training import TrainConfig, TrainingData, run_training


def training_data(config: TrainConfig) -> TrainingData:
    """The data set as float32 NHWC, minus the training set's per-channel mean, at pixel scale
    (the paper's only preprocessing, section 2). Identical bytes for both frameworks."""
    from benchmarks.datasets import load_dataset

    dataset = load_dataset(
        config.dataset, Path(config.data_dir) if config.data_dir else None, download=config.download, seed=config.seed
    )
    mean = dataset.x_train.reshape(-1, dataset.x_train.shape[-1]).mean(axis=0, dtype=np.float64).astype(np.float32)

    def center(images: np.ndarray) -> np.ndarray:
        return images.astype(np.float32) - mean

    return TrainingData(
        center(dataset.x_train),
        dataset.y_train.astype(np.int64),
        center(dataset.x_test),
        dataset.y_test.astype(np.int64),
        dataset.classes,
        dataset.source,
    )


def make_trainer(config: TrainConfig, weights: dict | None = None):
    """The framework's trainer, from ``weights`` (PyTorch layout) or else the config's initial weights."""
    from implementations.initial_weights import initial_weights
    from implementations.variants import get_variant

    if weights is None:
        weights = initial_weights(get_variant(config.variant), config.seed, config.init)
    if config.framework == "torch":
        from benchmarks.torch_train import TorchTrainer

        return TorchTrainer(config, weights)
    if config.framework == "keras":
        from benchmarks.keras_train import KerasTrainer

        return KerasTrainer(config, weights)
    raise ValueError(f"unknown framework {config.framework!r}")


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


def train_key(config: TrainConfig) -> str:
    return hashlib.sha1(config.to_json().encode()).hexdigest()[:16]


def train_command(config: TrainConfig) -> list[str]:
    return [sys.executable, "-m", "benchmarks.worker", "--train", config.to_json()]


def make_accuracy_row(config: TrainConfig, result: dict, machine: dict, run_id: str, started: float) -> dict:
    """A results row in the same layout as throughput rows, with mode ``accuracy``."""
    metrics = result.get("metrics")
    framework_env = metrics.pop("environment", None) if metrics else None
    cell = {**asdict(config), "mode": "accuracy", "repeat": 0, "gpus": 0, "simulate_devices": 0}
    return {
        "key": train_key(config),
        "run_id": run_id,
        "cell": cell,
        "device_setup": "1 gpu" if framework_env and "cuda" in str(framework_env.get("devices")) else "cpu",
        "devices": 1,
        "parallel": "none",
        "simulated": False,
        "status": result["status"],
        "error": result.get("error"),
        "traceback": result.get("traceback"),
        "metrics": metrics,
        "environment": {**machine, "framework": framework_env},
        "started_at": datetime.fromtimestamp(started, timezone.utc).isoformat(),
        "wall_s": time.time() - started,
    }


def new_run_id() -> str:
    return uuid.uuid4().hex[:12]
