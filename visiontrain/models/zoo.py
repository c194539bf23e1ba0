"""torchvision's and timm's classification architectures, by name, behind the common Classifier interface.

torchvision's are registered by their own names (`resnet18`), timm's by `timm/<name>` (`timm/convnext_atto`),
looked up on demand so that the ~1,400 of them neither slow down nor flood `visiontrain models`.
Randomly initialised here; pretrained weights (models/pretrained.py) come from a local file (--weights), or by
name from torchvision's or timm's own download and cache (--pretrained).
"""
from __future__ import annotations

import difflib
from typing import Callable, Sequence

import torch
from torch import nn

from ..errors import UnknownNameError
from .._registry import MODELS
from .base import Classifier

TIMM_PREFIX = "timm/"


def _last_linear(model: nn.Module) -> str:
    """The name of the network's classifier layer: its last nn.Linear, else its last convolution when that is a 1x1
    one (squeezenet's and DLA's classifiers, before their global pooling)."""
    linears = [name for name, module in model.named_modules() if isinstance(module, nn.Linear)]
    if linears:
        return linears[-1]
    convs = [(name, module) for name, module in model.named_modules() if isinstance(module, nn.Conv2d)]
    if convs and _is_pointwise(convs[-1][1]):
        return convs[-1][0]
    raise ValueError(f"{type(model).__name__} has no linear (or final 1x1 convolution) classifier layer")


def _is_pointwise(module: nn.Module) -> bool:
    return isinstance(module, nn.Conv2d) and module.kernel_size == (1, 1) and module.groups == 1


def _as_linear(layer: nn.Module) -> nn.Linear:
    """A classifier layer as an nn.Linear: itself, or the Linear a 1x1 convolution equals on pooled features
    (a 1x1 convolution then global average pooling = the pooling then this Linear)."""
    if isinstance(layer, nn.Linear):
        return layer
    if not _is_pointwise(layer):
        raise ValueError(f"the classifier layer {type(layer).__name__} is neither nn.Linear nor a 1x1 convolution")
    linear = nn.Linear(layer.in_channels, layer.out_channels, bias=layer.bias is not None)
    with torch.no_grad():
        linear.weight.copy_(layer.weight.flatten(1))
        if layer.bias is not None:
            linear.bias.copy_(layer.bias)
    return linear


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
    """A torchvision/timm network split at its classifier layer (default: its last Linear): the network with that
    layer replaced by nn.Identity -> features, the layer (as an nn.Linear) -> fc.

    Squeezenet's classifier is a 1x1 convolution, ReLU and global average pooling: the convolution becomes fc (the
    Linear it equals after the pooling), and its ReLU then acts on the already non-negative features rather than
    on the class maps, so logits can be negative as every other model's. Two-head networks (timm's distilled
    DeiT and LeViT) name both heads; both become nn.Identity (the network averages them) and the first is fc.
    """

    def __init__(self, model: nn.Module, classifiers: Sequence[str] = ()):
        names = list(classifiers) or [_last_linear(model)]
        fc = _as_linear(model.get_submodule(names[0]))
        for name in names:
            _set_submodule(model, name, nn.Identity())
        super().__init__(model, nn.Identity(), fc)


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


# -- timm ------------------------------------------------------------------------------------------------------
def _import_timm(what: str, error: type[Exception] = ValueError):
    try:
        import timm
    except ImportError:
        raise error(f"{what} needs timm: pip install timm") from None
    return timm


def timm_model(name: str, *, num_classes: int, in_channels: int, image_size: int,
               pretrained: bool = False) -> Classifier:
    """timm's architecture `name`, wrapped at the classifier layer timm names: randomly initialised, or with
    pretrained=True timm's pretrained weights (models/pretrained.py: downloaded by timm once, then from its cache).
    A fixed-input-size network (ViT, Swin, ...) is built for image_size."""
    timm = _import_timm(name)
    kwargs = dict(pretrained=pretrained, num_classes=num_classes, in_chans=in_channels)
    cfg = timm.models.get_pretrained_cfg(name)
    if cfg is not None and cfg.fixed_input_size and tuple(cfg.input_size[1:]) != (image_size, image_size):
        try:
            model = timm.create_model(name, img_size=image_size, **kwargs)
        except TypeError:  # no img_size argument: it runs at its own size only, which its forward then says
            model = timm.create_model(name, **kwargs)
    else:
        model = timm.create_model(name, **kwargs)
    return Wrapped(model, _timm_classifiers(model))


def _timm_classifiers(model: nn.Module) -> list[str]:
    """The names of the classifier layers timm's get_classifier() gives (two for distilled models), each the layer
    itself or the last Linear inside it (LeViT's BatchNorm+Linear head); [] when there is none to find."""
    heads = model.get_classifier()
    names = {id(module): name for name, module in model.named_modules() if name}
    found = []
    for head in heads if isinstance(heads, tuple) else (heads,):
        name = names.get(id(head))
        if name is None or isinstance(head, nn.Identity):
            return []
        found.append(name if isinstance(head, nn.Linear) or _is_pointwise(head) else f"{name}.{_last_linear(head)}")
    return found


def timm_names(pattern: str = "*") -> list[str]:
    """timm's architecture names matching a wildcard pattern (e.g. 'convnext*'), as `timm/<name>` model names."""
    return [TIMM_PREFIX + name for name in _import_timm("listing timm's models", UnknownNameError).list_models(pattern)]


def _timm_builder(name: str) -> Callable[..., nn.Module]:
    """The registry's builder for `timm/<name>`; an unknown name raises one sentence with timm's closest names."""
    timm = _import_timm(f"model {TIMM_PREFIX + name!r}", UnknownNameError)
    if not name or not timm.is_model(name):
        known = timm.list_models()
        close = difflib.get_close_matches(name, known, n=3, cutoff=0.6)
        hint = f"did you mean {' or '.join(repr(TIMM_PREFIX + c) for c in close)}? " if close else ""
        raise UnknownNameError(f"unknown model {TIMM_PREFIX + name!r}: {hint}timm has {len(known)} architectures, "
                               f"listed by `visiontrain models --timm PATTERN` (e.g. --timm 'resnet*')")

    def build(*, num_classes: int, in_channels: int, image_size: int, width: float = 1.0) -> nn.Module:
        if width != 1.0:
            raise ValueError(f"width: {TIMM_PREFIX + name} has fixed widths; leave width at 1.0")
        return timm_model(name, num_classes=num_classes, in_channels=in_channels, image_size=image_size)

    build.__doc__ = f"timm's {name}, randomly initialised"
    return build


MODELS.register_prefix(TIMM_PREFIX, _timm_builder,
                       "any of timm's ~1,400 architectures by name, randomly initialised "
                       "(`visiontrain models --timm PATTERN` lists them)")
