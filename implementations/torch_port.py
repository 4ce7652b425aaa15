"""Reading and checking a PyTorch port (``nn.Module``) for ``bench.py check-model``: its leaf-module calls as port
layers, their kinds and configurations, and the check against the suite's own PyTorch model (``torch_alexnet``)."""

from __future__ import annotations

import numpy as np

from implementations.port_check import (
    CheckModelError,
    LayerCheck,
    PortLayer,
    PortReader,
    first_of,
    link_activations,
    lrn_config,
    output_sources,
    tower_weights,
    weight_pairs,
)
from implementations.spec import Architecture


def torch_layers(model, x) -> tuple[list[PortLayer], dict[int, np.ndarray]]:
    """Leaf-module calls in the order they ran, and each call's output (by position).

    A module called more than once (one LRN or pooling module applied to each tower) is listed once
    per call: each call is one tower's part of a spec layer.
    """
    import torch
    from torch import nn

    calls: list[tuple[str, nn.Module, object, torch.Tensor, torch.Tensor]] = []

    def record(module, inputs, out, name):
        # The clone keeps the values an in-place ReLU overwrites; the tensors themselves say who feeds whom.
        calls.append((name, module, inputs[0] if inputs else None, out, out.detach().clone()))

    hooks = [
        module.register_forward_hook(lambda mod, args, out, name=name: record(mod, args, out, name))
        for name, module in model.named_modules()
        if not list(module.children())
    ]
    try:
        with torch.no_grad():
            model.eval()(x)
    except Exception as error:
        raise CheckModelError(f"the model fails on a {tuple(x.shape)} input: {type(error).__name__}: {error}") from None
    finally:
        for hook in hooks:
            hook.remove()
    layers = []
    for index, (name, module, taken, out, _) in enumerate(calls):
        params = sum(p.numel() for p in module.parameters(recurse=False))
        layer = PortLayer(name, "other", {}, tuple(out.shape[1:]), params, module, index=index, takes=taken, gives=out)
        layer.input_shape = tuple(taken.shape[1:]) if isinstance(taken, torch.Tensor) else ()
        layer.kind, layer.config = torch_kind(module)
        layers.append(layer)
    link_activations(layers)
    return layers, {index: call[4].numpy() for index, call in enumerate(calls)}


def torch_kind(module) -> tuple[str, dict]:
    """A PyTorch leaf module's kind and the configuration the spec is compared with."""
    from torch import nn

    from implementations.torch_alexnet import LocalResponseNorm as PaperLRN

    if isinstance(module, nn.Conv2d):
        padding = module.padding if isinstance(module.padding, str) else module.padding[0]
        config = {"filters": module.out_channels, "kernel": module.kernel_size[0], "stride": module.stride[0]}
        return "conv", config | {"padding": padding, "groups": module.groups}
    if isinstance(module, nn.Linear):
        return "dense", {"units": module.out_features}
    if isinstance(module, nn.MaxPool2d):
        return "pool", {"size": first_of(module.kernel_size), "stride": first_of(module.stride)}
    if isinstance(module, nn.LocalResponseNorm):  # divides alpha by size
        config = {"size": module.size, "alpha": module.alpha / module.size, "given_alpha": module.alpha}
        return "lrn", config | {"k": module.k, "beta": module.beta, "divides": True}
    if isinstance(module, PaperLRN):
        return "lrn", lrn_config(module)
    if isinstance(module, nn.Dropout):
        return "dropout", {"rate": module.p}
    plain = {nn.Flatten: "flatten", nn.ReLU: "activation", nn.Identity: "activation"}  # nothing to compare
    return next((kind for kinds, kind in plain.items() if isinstance(module, kinds)), "other"), {}


class TorchPortReader(PortReader):
    framework = "torch"
    library = "torch"
    model_type = "nn.Module"

    def layers(self, model, x: np.ndarray) -> list[PortLayer]:
        import torch

        return torch_layers(model, torch.from_numpy(x))[0]

    def outputs(self, model, arch: Architecture, checks: list[LayerCheck], weights: dict, x: np.ndarray) -> tuple:
        import torch

        from implementations.torch_alexnet import build_torch_model

        with torch.no_grad():
            for check in weight_pairs(checks):
                pieces = check.port.pieces
                for part, (kernel, bias) in zip(
                    pieces, tower_weights(weights[check.name], len(pieces), 0), strict=True
                ):
                    module = part.handle
                    module.weight.copy_(torch.from_numpy(kernel).reshape(module.weight.shape))
                    module.bias.copy_(torch.from_numpy(bias))
        _, outputs = torch_layers(model, torch.from_numpy(x))  # the same calls in the same order, new weights
        port_out = {
            name: np.concatenate([outputs[source.index] for source in sources], axis=1)
            for name, sources in output_sources(checks).items()
        }
        reference = build_torch_model(arch, "grouped").eval()
        reference.import_weights(weights)
        with torch.no_grad():
            return port_out, {k: v.numpy() for k, v in reference.layer_outputs(torch.from_numpy(x)).items()}
