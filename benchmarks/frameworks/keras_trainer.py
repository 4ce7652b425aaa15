"""Keras 3 trainer for accuracy runs (see ``benchmarks.accuracy.training``)."""

from __future__ import annotations

import numpy as np

from benchmarks.accuracy.training import TrainConfig, Trainer
from implementations.weight_mapping import LayerWeights


class KerasTrainer(Trainer):
    def __init__(self, config: TrainConfig, weights: LayerWeights) -> None:
        import keras
        import tensorflow as tf

        from implementations.keras_alexnet import build_keras_model, load_weights
        from implementations.keras_training import compile_for_training
        from implementations.variants import get_variant
        from implementations.weight_mapping import torch_to_keras

        keras.utils.set_random_seed(config.seed)
        if config.deterministic:
            tf.config.experimental.enable_op_determinism()  # before compiling; XLA stays off
        arch = get_variant(config.variant)
        self.model = build_keras_model(arch, config.split_impl)
        load_weights(self.model, torch_to_keras(weights, arch))
        compile_for_training(self.model, config.weight_decay, config.learning_rate, config.momentum)
        self._predict = tf.function(lambda images: self.model(images, training=False))
        self.deterministic = config.deterministic

    def set_learning_rate(self, rate: float) -> None:
        self.model.optimizer.learning_rate.assign(rate)

    def train_step(self, images: np.ndarray, labels: np.ndarray) -> float:
        return float(self.model.train_on_batch(images, labels))

    def predict(self, images: np.ndarray) -> np.ndarray:
        return self._predict(images).numpy()

    def environment(self) -> dict:
        import tensorflow as tf

        from benchmarks.frameworks.keras_tf_cell import keras_environment

        # TensorFlow places the model on the first GPU when it sees one, else on the CPU.
        devices = [d.name for d in tf.config.list_logical_devices("GPU")[:1]] or ["/device:CPU:0"]
        return {**keras_environment(devices), "deterministic": self.deterministic}
