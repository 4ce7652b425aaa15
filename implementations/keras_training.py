"""The paper's optimiser for Keras 3, on any backend (TensorFlow, JAX, PyTorch).

``compile_for_training`` is the one place the Keras training set-up lives: SGD with momentum,
softmax cross-entropy on logits, and the paper's *coupled* weight decay (``CoupledDecaySGD``).
It imports no backend itself, so the same model trains on whichever ``KERAS_BACKEND`` is set.
"""

from __future__ import annotations

import contextlib

import keras
from keras import ops

from implementations.paper_sgd import MOMENTUM, PAPER, WEIGHT_DECAY


def _on_the_variables_device(variable) -> contextlib.AbstractContextManager:
    """A scope that places an update beside its variable, where the variable names a device; else nothing.

    Keras leaves the update's arithmetic unplaced, and TensorFlow's placer then runs every
    variable's update on the first device (model parallelism puts towers on several); run it
    where the variable (and its momentum) lives. Only TensorFlow's optimizer hands ``update_step``
    its own variables, which name their device; JAX and PyTorch hand Keras variables, which do not,
    and place ops with their inputs anyway.
    """
    device = getattr(variable, "device", None)
    return keras.device(device) if device else contextlib.nullcontext()


@keras.saving.register_keras_serializable(package="alexnet")
class CoupledDecaySGD(keras.optimizers.SGD):
    """The paper's SGD (section 5), written out: v <- m v - d lr w - lr g; w <- w + v.

    The weight decay is coupled: it goes through the momentum, for kernels and biases alike (as
    ``implementations.paper_sgd.update`` and PyTorch's ``PaperSGD``). Keras' own ``weight_decay``
    argument is decoupled (AdamW-style: the weights shrink outside the momentum), a different
    optimiser, and is refused. The velocity is kept in weight units, as Keras' SGD keeps it; the
    update is written here term by term, in the same order as ``PaperSGD``, so both frameworks
    round alike and the rule does not depend on how the parent class happens to compute it.

    Why here and not as an L2 loss term (``add_loss`` or a custom ``train_step``): the reported
    loss stays the cross-entropy, the quantity PyTorch's training loop reports, so per-step loss
    gaps between the frameworks mean something; the decay is applied once per variable after
    the replicas' gradients are summed, so it cannot be counted once per replica; and the work
    is the same per-variable arithmetic as PyTorch's, so benchmarks compare like with like.
    """

    update_rule = PAPER

    def __init__(self, coupled_weight_decay: float = WEIGHT_DECAY, **kwargs) -> None:
        if kwargs.get("weight_decay"):
            raise ValueError("weight_decay is Keras' decoupled decay; the paper's is coupled_weight_decay")
        if kwargs.get("nesterov"):
            raise ValueError("the paper's SGD has no Nesterov momentum")
        super().__init__(**kwargs)
        if coupled_weight_decay < 0:
            raise ValueError(f"weight decay must be non-negative, got {coupled_weight_decay}")
        self.coupled_weight_decay = coupled_weight_decay

    def update_step(self, gradient, variable, learning_rate):
        with _on_the_variables_device(variable):
            dtype = variable.dtype
            lr = ops.cast(learning_rate, dtype)
            decay_lr = ops.multiply(ops.cast(self.coupled_weight_decay, dtype), lr)
            v = self.momentums[self._get_variable_index(variable)] if self.momentum != 0 else None
            carried = ops.multiply(v, ops.cast(self.momentum, dtype)) if v is not None else ops.zeros_like(variable)
            velocity = ops.subtract(
                ops.subtract(carried, ops.multiply(variable, decay_lr)), ops.multiply(ops.cast(gradient, dtype), lr)
            )
            if v is not None:
                self.assign(v, velocity)
            self.assign_add(variable, velocity)

    def get_config(self) -> dict:
        return {**super().get_config(), "coupled_weight_decay": self.coupled_weight_decay}


def compile_for_training(
    model: keras.Model,
    weight_decay: float = WEIGHT_DECAY,
    learning_rate: float = 0.01,
    momentum: float = MOMENTUM,
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
