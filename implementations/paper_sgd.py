"""The paper's SGD update, written once in NumPy: the rule both frameworks' optimisers implement.

Krizhevsky et al. 2012, section 5, with momentum m = 0.9 and weight decay d = 0.0005::

    v <- m v - d lr w - lr g
    w <- w + v

The velocity is kept in weight units: each step's rate is applied when the step is taken, so a
rate that changes every step (the linear warm-up) leaves earlier contributions as they were.
``torch.optim.SGD`` keeps its buffer in gradient units (b <- m b + g + d w; w <- w - lr b) and
multiplies the whole buffer by the *current* rate: the same update only while the rate is
constant. The other rules here exist so tests can show that a parity check catches them.
"""

from __future__ import annotations

import numpy as np

MOMENTUM = 0.9
WEIGHT_DECAY = 5e-4

PAPER = "paper"
GRADIENT_UNITS = "gradient-units"
DECOUPLED_DECAY = "decoupled-decay"

RULES: dict[str, str] = {
    PAPER: "paper section 5: v <- m v - d lr w - lr g; w <- w + v",
    GRADIENT_UNITS: "torch.optim.SGD's form: b <- m b + g + d w; w <- w - lr b",
    DECOUPLED_DECAY: "decay outside the momentum: v <- m v - lr g; w <- w + v - d lr w",
}


def check_rule(rule: str) -> str:
    if rule not in RULES:
        raise ValueError(f"unknown update rule {rule!r}; choose from {', '.join(RULES)}")
    return rule


def describe(rule: str) -> str:
    """What a results row says about the optimiser that ran."""
    return f"{rule} ({RULES[check_rule(rule)]})"


def update(
    rule: str, w: np.ndarray, state: np.ndarray, g: np.ndarray, lr: float, momentum: float, decay: float
) -> tuple[np.ndarray, np.ndarray]:
    """One step of ``rule``: (new weights, new momentum state). The reference the optimisers are tested against."""
    if check_rule(rule) == PAPER:
        v = momentum * state - decay * lr * w - lr * g
        return w + v, v
    if rule == GRADIENT_UNITS:
        b = momentum * state + g + decay * w
        return w - lr * b, b
    v = momentum * state - lr * g
    return w + v - decay * lr * w, v
