"""The paper's SGD for PyTorch (see ``implementations.paper_sgd`` for the rule and why).

``torch.optim.SGD`` with momentum and weight decay keeps its buffer in gradient units and scales
it by the current rate, so under a warm-up it is not the paper's update (nor Keras'). ``PaperSGD``
applies the paper's rule, in the same order of operations as the Keras optimiser, so the two
frameworks round alike. ``rule`` selects a deliberately different update, for mutation tests.
"""

from __future__ import annotations

import numpy as np
import torch

from implementations.paper_sgd import DECOUPLED_DECAY, GRADIENT_UNITS, MOMENTUM, PAPER, WEIGHT_DECAY, check_rule


class PaperSGD(torch.optim.Optimizer):
    """v <- m v - d lr w - lr g; w <- w + v (paper section 5), per parameter, biases included."""

    def __init__(
        self,
        params,
        lr: float = 0.01,
        momentum: float = MOMENTUM,
        weight_decay: float = WEIGHT_DECAY,
        rule: str = PAPER,
    ) -> None:
        if lr < 0 or momentum < 0 or weight_decay < 0:
            raise ValueError(f"lr, momentum and weight decay must be non-negative: {lr}, {momentum}, {weight_decay}")
        super().__init__(params, {"lr": lr, "momentum": momentum, "weight_decay": weight_decay})
        self.rule = check_rule(rule)

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            # Rounded to float32 as Keras holds them, so decay * lr is the same product in both.
            lr, momentum, decay = (float(np.float32(group[key])) for key in ("lr", "momentum", "weight_decay"))
            decay_lr = float(np.float32(decay) * np.float32(lr))
            for w in group["params"]:
                if w.grad is None:
                    continue
                state = self.state[w]
                if "velocity" not in state:
                    state["velocity"] = torch.zeros_like(w)
                v = state["velocity"]
                if self.rule == PAPER:
                    v.mul_(momentum).sub_(w * decay_lr).sub_(w.grad * lr)
                    w.add_(v)
                elif self.rule == GRADIENT_UNITS:
                    v.mul_(momentum).add_(w.grad).add_(w * decay)
                    w.sub_(v * lr)
                elif self.rule == DECOUPLED_DECAY:
                    shrink = w * decay_lr  # from the weight before this step, as in the reference
                    v.mul_(momentum).sub_(w.grad * lr)
                    w.add_(v).sub_(shrink)
        return loss
