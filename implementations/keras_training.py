"""The paper's optimiser for Keras 3, on any backend (TensorFlow, JAX, PyTorch).

``compile_for_training`` is the one place the Keras training set-up lives: SGD with momentum,
softmax cross-entropy on logits, and the paper's *coupled* weight decay (``CoupledDecaySGD``).
It imports no backend itself, so the same model trains on whichever ``KERAS_BACKEND`` is set.
"""

from __future__ import annotations

import contextlib

import keras
from keras import ops


def _on_the_variables_device(variable) -> contextlib.AbstractContextManager:
    """On TensorFlow, a scope that places an update beside its variable; elsewhere nothing.

    Keras leaves the update's arithmetic unplaced, and TensorFlow's placer then runs every
    variable's update on the first device (model parallelism puts towers on several); run it
    where the variable (and its momentum) lives. JAX and PyTorch place ops with their inputs.
    """
    device = getattr(variable, "device", None)
    if keras.backend.backend() != "tensorflow" or not device:
        return contextlib.nullcontext()
    import tensorflow as tf

    return tf.device(device)


@keras.saving.register_keras_serializable(package="alexnet")
class CoupledDecaySGD(keras.optimizers.SGD):
    """SGD with the paper's weight decay, coupled: it goes through the momentum.

    The paper (section 5) updates v <- 0.9 v - 0.0005 lr w - lr grad; w <- w + v, and
    ``torch.optim.SGD(weight_decay=...)`` adds ``weight_decay * w`` to every parameter's gradient
    before its momentum. Keras' own ``weight_decay`` argument is decoupled (AdamW-style: the
    weights shrink outside the momentum), a different optimiser. This adds ``wd * w`` to the
    gradient of every trainable variable, kernels and biases alike as torch does, which is the
    gradient of the L2 term 0.5 * wd * sum(w^2).

    Why here and not as that loss term (``add_loss`` or a custom ``train_step``): the reported
    loss stays the cross-entropy, the quantity PyTorch's training loop reports, so per-step loss
    gaps between the frameworks mean something; the decay is applied once per variable after
    the replicas' gradients are summed, so it cannot be counted once per replica; and the work
    is the same per-variable add that torch's SGD does, so benchmarks compare like with like.
    """

    def __init__(self, coupled_weight_decay: float = 5e-4, **kwargs) -> None:
        if kwargs.get("weight_decay"):
            raise ValueError("weight_decay is Keras' decoupled decay; the paper's is coupled_weight_decay")
        super().__init__(**kwargs)
        if coupled_weight_decay < 0:
            raise ValueError(f"weight decay must be non-negative, got {coupled_weight_decay}")
        self.coupled_weight_decay = coupled_weight_decay

    def update_step(self, gradient, variable, learning_rate):
        with _on_the_variables_device(variable):
            if self.coupled_weight_decay:
                decay = ops.cast(self.coupled_weight_decay, gradient.dtype)
                gradient = ops.add(gradient, ops.multiply(decay, ops.cast(variable, gradient.dtype)))
            super().update_step(gradient, variable, learning_rate)

    def get_config(self) -> dict:
        return {**super().get_config(), "coupled_weight_decay": self.coupled_weight_decay}


def compile_for_training(
    model: keras.Model,
    weight_decay: float = 5e-4,
    learning_rate: float = 0.01,
    momentum: float = 0.9,
    jit_compile: bool = False,
) -> None:
    """The one place the training set-up is defined, for one device or many.

    The paper's SGD (momentum 0.9, coupled decay 5e-4) and softmax cross-entropy on the logits
    (the model returns logits; the softmax belongs to the loss). XLA stays off unless asked for:
    Keras' default ``"auto"`` turns it on silently on GPUs, which would change what is measured
    and break TensorFlow's op determinism.
    """
    model.compile(
        optimizer=CoupledDecaySGD(coupled_weight_decay=weight_decay, learning_rate=learning_rate, momentum=momentum),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile=jit_compile,
    )
