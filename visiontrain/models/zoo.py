"""torchvision's classification architectures, by name, behind the common Classifier interface.

Randomly initialised here; pretrained weights come from a local file (--weights) in models/pretrained.py, never
from the network.
"""
from __future__ import annotations

import torch
from torch import nn

from . import MODELS
from .base import Classifier


def _last_linear(model: nn.Module) -> tuple[str, nn.Linear]:
    linears = [(name, module) for name, module in model.named_modules() if isinstance(module, nn.Linear)]
    if not linears:
        raise ValueError(f"{type(model).__name__} has no linear classifier layer")
    return linears[-1]


def _set_submodule(model: nn.Module, dotted: str, module: nn.Module) -> None:
    parent_name, _, child = dotted.rpartition(".")
    setattr(model.get_submodule(parent_name) if parent_name else model, child, module)


def adapt_input_channels(model: nn.Module, in_channels: int) -> None:
    """Replace the first convolution for `in_channels` inputs; for 1 channel its RGB filters are summed (the
    pretrained response to a gray image is kept) rather than the image being copied to 3 channels."""
    name, conv = next((n, m) for n, m in model.named_modules() if isinstance(m, nn.Conv2d))
    if conv.in_channels == in_channels:
        return
    new = nn.Conv2d(in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding, conv.dilation,
                    conv.groups, conv.bias is not None)
    with torch.no_grad():
        if in_channels == 1:
            new.weight.copy_(conv.weight.sum(1, keepdim=True))
        else:
            new.weight.copy_(conv.weight.mean(1, keepdim=True).expand_as(new.weight) * conv.in_channels / in_channels)
        if conv.bias is not None:
            new.bias.copy_(conv.bias)
    _set_submodule(model, name, new)


class Wrapped(Classifier):
    """A torchvision/timm network split at its last Linear: body -> features, that Linear -> fc."""

    def __init__(self, model: nn.Module):
        name, linear = _last_linear(model)
        _set_submodule(model, name, nn.Identity())
        super().__init__(model, nn.Identity(), linear)


def _register_torchvision() -> None:
    import torchvision

    for name in torchvision.models.list_models(module=torchvision.models):
        if name in MODELS:
            continue

        def build(*, num_classes: int, in_channels: int, image_size: int, width: float = 1.0, _name: str = name):
            if width != 1.0:
                raise ValueError(f"width: {_name} has fixed widths; leave width at 1.0")
            kwargs = {"aux_logits": False, "init_weights": True} if _name in ("googlenet", "inception_v3") else {}
            model = torchvision.models.get_model(_name, weights=None, num_classes=num_classes, **kwargs)
            adapt_input_channels(model, in_channels)
            return Wrapped(model)

        build.__doc__ = f"torchvision's {name}, randomly initialised"
        MODELS.register(name)(build)


MODELS.register_lazy(_register_torchvision)
