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
        from implementations.paper_sgd import PAPER
        from implementations.variants import get_variant
        from implementations.weight_mapping import torch_to_keras

        if config.update_rule != PAPER:
            raise ValueError(f"Keras trains with the paper's update rule only, not {config.update_rule!r}")
        keras.utils.set_random_seed(config.seed)
        if config.deterministic:
            tf.config.experimental.enable_op_determinism()  # before compiling; XLA stays off
        self.arch = get_variant(config.variant)
        self.shared_dropout = config.shared_dropout
        self.model = build_keras_model(self.arch, config.split_impl, supplied_dropout_masks=config.shared_dropout)
        load_weights(self.model, torch_to_keras(weights, self.arch))
        compile_for_training(self.model, config.weight_decay, config.learning_rate, config.momentum)
        self._predict = tf.function(lambda inputs: self.model(inputs, training=False))
        self.deterministic = config.deterministic

    def _inputs(self, images: np.ndarray, masks: dict[str, np.ndarray] | None):
        """The model's inputs: the images, plus the masks when the model takes them (ones: no effect)."""
        if not self.shared_dropout:
            return images
        if masks is None:  # inference: the layer ignores its mask, but the graph still needs one
            masks = {name: np.ones((len(images), *inp.shape[1:]), np.float32) for name, inp in self._mask_inputs()}
        return {"image": images, **{f"{name}_mask": mask for name, mask in masks.items()}}

    def _mask_inputs(self):
        return [(name[: -len("_mask")], inp) for name, inp in self.model.input.items() if name != "image"]

    def set_learning_rate(self, rate: float) -> None:
        self.model.optimizer.learning_rate.assign(rate)

    def train_step(self, images: np.ndarray, labels: np.ndarray, masks: dict[str, np.ndarray] | None = None) -> float:
        if masks is not None and not self.shared_dropout:
            raise ValueError("dropout masks given to a model built without mask inputs (shared_dropout is off)")
        return float(self.model.train_on_batch(self._inputs(images, masks), labels))

    def predict(self, images: np.ndarray) -> np.ndarray:
        return self._predict(self._inputs(images, None)).numpy()

    def export_weights(self) -> LayerWeights:
        """The current weights in PyTorch layout, through ``weight_mapping``."""
        from implementations.keras_alexnet import export_weights
        from implementations.weight_mapping import keras_to_torch

        return keras_to_torch(export_weights(self.model, self.arch), self.arch)

    def environment(self) -> dict:
        import tensorflow as tf

        from benchmarks.frameworks.keras_tf_cell import keras_environment

        # TensorFlow places the model on the first GPU when it sees one, else on the CPU.
        devices = [d.name for d in tf.config.list_logical_devices("GPU")[:1]] or ["/device:CPU:0"]
        return {**keras_environment(devices), "deterministic": self.deterministic}
