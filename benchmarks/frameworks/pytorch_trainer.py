"""PyTorch trainer for accuracy runs (see ``benchmarks.accuracy.training``)."""

from __future__ import annotations

import os

import numpy as np
import torch
from torch.nn import functional as F

from benchmarks.accuracy.training import TrainConfig, Trainer
from implementations.torch_alexnet import build_torch_model
from implementations.torch_training import PaperSGD
from implementations.variants import get_variant
from implementations.weight_mapping import LayerWeights


def make_deterministic(seed: int) -> None:
    """Seeded everything and deterministic kernels (cuBLAS needs its workspace setting)."""
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.benchmark = False


class TorchTrainer(Trainer):
    def __init__(self, config: TrainConfig, weights: LayerWeights) -> None:
        torch.manual_seed(config.seed)
        if config.deterministic:
            make_deterministic(config.seed)
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.model = build_torch_model(get_variant(config.variant), config.split_impl)
        self.model.import_weights(weights)
        self.model.to(self.device)
        self.optimizer = PaperSGD(
            self.model.parameters(),
            lr=config.learning_rate,
            momentum=config.momentum,
            weight_decay=config.weight_decay,
            rule=config.update_rule,
        )

    def _tensor(self, images: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2))).to(self.device)

    def set_learning_rate(self, rate: float) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = rate

    def train_step(self, images: np.ndarray, labels: np.ndarray, masks: dict[str, np.ndarray] | None = None) -> float:
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        supplied = {name: torch.from_numpy(mask).to(self.device) for name, mask in masks.items()} if masks else None
        logits = self.model(self._tensor(images), dropout_masks=supplied)
        loss = F.cross_entropy(logits, torch.from_numpy(labels).to(self.device))
        loss.backward()
        self.optimizer.step()
        return float(loss.item())

    def export_weights(self) -> LayerWeights:
        """The current weights in PyTorch layout (``weight_mapping``'s common ground)."""
        return self.model.export_weights()

    @torch.inference_mode()
    def predict(self, images: np.ndarray) -> np.ndarray:
        self.model.eval()
        return self.model(self._tensor(images)).cpu().numpy()

    def environment(self) -> dict:
        from benchmarks.frameworks.pytorch_cell import torch_environment

        return {**torch_environment([self.device]), "deterministic": torch.are_deterministic_algorithms_enabled()}
