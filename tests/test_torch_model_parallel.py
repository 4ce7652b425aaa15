"""The model-parallel AlexNet (one tower per device) against the single-device grouped model.

Everything runs on ``["cpu", "cpu"]``: the same code as two GPUs, only the devices differ.
"""

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from implementations import torch_model_parallel
from implementations.parity import DEFAULT_INPUT_SCALE
from implementations.spec import Architecture, parameter_count
from implementations.torch_alexnet import LayerWeights, build_torch_model
from implementations.torch_model_parallel import ModelParallelAlexNet
from implementations.variants import get_variant

CPUS = ["cpu", "cpu"]


def _pair(arch: Architecture) -> tuple[nn.Module, ModelParallelAlexNet]:
    """A grouped single-device model and a model-parallel one holding the same weights."""
    torch.manual_seed(0)
    grouped = build_torch_model(arch, "grouped")
    parallel = ModelParallelAlexNet(arch, CPUS)
    parallel.import_weights(grouped.export_weights())
    return grouped, parallel


def _batch(arch: Architecture, n: int) -> Tensor:
    # Pixel-scaled, like the paper's mean-subtracted inputs, so that LRN really normalises.
    generator = torch.Generator().manual_seed(1)
    return torch.randn(n, *arch.input_shape, generator=generator) * DEFAULT_INPUT_SCALE


def _same_logits(a: nn.Module, b: nn.Module, x: Tensor) -> bool:
    with torch.no_grad():
        return torch.allclose(a.eval()(x), b.eval()(x), rtol=1e-5, atol=1e-7)


class _HWCFlatten(nn.Module):
    """A wrong flatten: (H, W, C) order, as Keras would, instead of PyTorch's (C, H, W)."""

    def forward(self, x: Tensor) -> Tensor:
        return x.permute(0, 2, 3, 1).flatten(1)


def test_logits_match_the_grouped_model():
    arch = get_variant("cifar100-split")
    grouped, parallel = _pair(arch)
    x = _batch(arch, 3)
    with torch.no_grad():
        torch.testing.assert_close(parallel.eval()(x), grouped.eval()(x), rtol=1e-5, atol=1e-7)


def test_logit_check_fails_for_a_wrong_flatten_order():
    arch = get_variant("cifar100-split")
    grouped, parallel = _pair(arch)
    parallel.blocks["flatten"] = _HWCFlatten()
    assert not _same_logits(parallel, grouped, _batch(arch, 3))


def test_logit_check_fails_when_the_towers_are_joined_in_swapped_order(monkeypatch):
    arch = get_variant("cifar100-split")
    grouped, parallel = _pair(arch)
    x = _batch(arch, 3)
    assert _same_logits(parallel, grouped, x)
    join = torch_model_parallel._join
    monkeypatch.setattr(torch_model_parallel, "_join", lambda xs, device: join(xs[::-1], device))
    assert not _same_logits(parallel, grouped, x)


def test_weights_round_trip_in_the_grouped_layout():
    arch = get_variant("cifar100-split")
    grouped, parallel = _pair(arch)
    exported, expected = parallel.export_weights(), grouped.export_weights()
    assert exported.keys() == expected.keys() == {"conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7", "fc8"}
    for name, layer in expected.items():
        for key, value in layer.items():
            np.testing.assert_array_equal(exported[name][key], value, err_msg=f"{name} {key}")


def test_each_device_holds_half_of_every_weight_layer():
    arch = get_variant("cifar100-split")
    parallel = ModelParallelAlexNet(arch, CPUS)
    conv3 = [tower[0] for tower in parallel.blocks["conv3"].towers]
    conv4 = [tower[0] for tower in parallel.blocks["conv4"].towers]
    assert [(m.in_channels, m.out_channels) for m in conv3] == [(256, 192), (256, 192)]
    assert [(m.in_channels, m.out_channels) for m in conv4] == [(192, 192), (192, 192)]
    assert [tower[0].out_features for tower in parallel.blocks["fc8"].towers] == [50, 50]


def test_parameter_counts_match_the_spec_and_the_grouped_model():
    arch = get_variant("cifar100-split")
    grouped, parallel = _pair(arch)
    assert sum(p.numel() for p in parallel.parameters()) == parameter_count(arch)
    assert parallel.layer_parameter_counts() == grouped.layer_parameter_counts()


def _sgd_steps(model: nn.Module, x: Tensor, labels: Tensor, steps: int = 2, weight_decay: float = 5e-4) -> list[float]:
    """The paper's optimiser (section 5): SGD, momentum 0.9, weight decay 5e-4, on cross-entropy."""
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=weight_decay)
    losses = []
    for _ in range(steps):  # the second step uses the momentum buffers
        optimizer.zero_grad()
        loss = nn.functional.cross_entropy(model(x), labels)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


def _updates(model: nn.Module, before: LayerWeights) -> dict[str, np.ndarray]:
    after = model.export_weights()
    return {f"{name} {key}": after[name][key] - value for name, layer in before.items() for key, value in layer.items()}


def test_a_training_step_matches_the_grouped_model():
    """Dropout off, so both models are the same network. The weight updates are compared, not the
    weights (which two steps change by only ~1e-5); leaving out weight decay must be caught."""
    arch = get_variant("cifar100-split").replace_layer("dropout6", rate=0.0).replace_layer("dropout7", rate=0.0)
    grouped, parallel = _pair(arch)
    before = grouped.export_weights()
    x, labels = _batch(arch, 4) / DEFAULT_INPUT_SCALE, torch.tensor([0, 7, 42, 99])
    expected_losses = _sgd_steps(grouped, x, labels)
    expected = _updates(grouped, before)
    assert all(np.abs(update).max() > 1e-6 for update in expected.values()), "a layer did not move"

    def agree(updates: dict[str, np.ndarray]) -> dict[str, bool]:
        return {name: np.allclose(updates[name], update, rtol=1e-3, atol=1e-8) for name, update in expected.items()}

    np.testing.assert_allclose(_sgd_steps(parallel, x, labels), expected_losses, rtol=1e-5)
    assert agree(_updates(parallel, before)) == dict.fromkeys(expected, True)

    parallel.import_weights(before)
    _sgd_steps(parallel, x, labels, weight_decay=0.0)
    assert not all(agree(_updates(parallel, before)).values())


def test_a_single_tower_network_is_refused():
    with pytest.raises(ValueError, match="single tower.*split variant"):
        ModelParallelAlexNet(get_variant("cifar100-single"), CPUS)


@pytest.mark.parametrize("devices", [["cpu"], ["cpu", "cpu", "cpu"]])
def test_a_wrong_device_count_is_refused(devices):
    with pytest.raises(ValueError, match=f"2 towers and needs one device per tower, got {len(devices)}"):
        ModelParallelAlexNet(get_variant("cifar100-split"), devices)


@pytest.mark.parametrize("found", [0, 2], ids=["no-gpu", "two-gpus"])
def test_a_missing_gpu_is_refused_with_the_count_found(monkeypatch, found):
    monkeypatch.setattr(torch.cuda, "device_count", lambda: found)
    with pytest.raises(ValueError, match=f"device cuda:{found} asked for, but {found} CUDA device"):
        ModelParallelAlexNet(get_variant("cifar100-split"), ["cpu", f"cuda:{found}"])
    for present in range(found):  # the devices the host has pass the check
        torch_model_parallel._check_device(torch.device("cuda", present))


def test_loading_a_wrong_shape_names_the_layer():
    arch = get_variant("cifar100-split")
    weights = build_torch_model(arch).export_weights()
    weights["conv4"]["kernel"] = weights["conv4"]["kernel"][:, :96]
    with pytest.raises(ValueError, match="conv4"):
        ModelParallelAlexNet(arch, CPUS).import_weights(weights)


def test_imagenet_split_gives_one_row_of_logits_per_image():
    arch = get_variant("imagenet-split")
    model = ModelParallelAlexNet(arch, CPUS).eval()
    with torch.no_grad():
        logits = model(_batch(arch, 1))
    assert logits.shape == (1, 1000) and logits.device == torch.device("cpu")
