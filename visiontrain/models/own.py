"""A user's own network: any nn.Module behind the Classifier interface, and the names of models defined in Python.

`as_classifier(module)` leaves a Classifier as it is and wraps anything else in OwnModel, which runs the module
exactly as written (no layer is split off or replaced, so the caller's object still computes what it did). Grad-CAM
finds the module's last convolution (it is `features`), and fine-tuning from --weights treats its last nn.Linear as
the head.

A model passed to `visiontrain.train(model=...)` as an object, not as a registered name, is recorded in the run's
config as `python/<ClassName>`: a name that validates (the run folder is an ordinary one) but that the CLI cannot
build, since nothing names the code. Building it says, in one sentence, how to make it buildable: register its
builder under the `visiontrain.models` entry points (models/plugins.py), or hand the module to
`visiontrain.load(run, model=...)`.
"""
from __future__ import annotations

import inspect
from typing import Any, Callable

import torch
from torch import nn

from .._registry import MODELS
from ..errors import CheckpointError
from .base import Classifier

PYTHON_PREFIX = "python/"


class OwnModel(Classifier):
    """`features` is the user's module, unchanged, and its output the logits; `head` is an identity. `fc` is the
    module's last nn.Linear when it has one (looked up, not registered twice: the state dict holds each tensor once,
    under `features.`)."""

    def __init__(self, module: nn.Module):
        nn.Module.__init__(self)  # not Classifier's: there is no separate fc to register
        self.features, self.head = module, nn.Identity()
        linears = [name for name, layer in module.named_modules() if isinstance(layer, nn.Linear)]
        self._fc_name = linears[-1] if linears else None

    @property
    def fc(self) -> nn.Linear:  # type: ignore[override]
        if self._fc_name is None:  # AttributeError: hasattr(model, "fc") is False, as for a model without a head
            raise AttributeError(f"{type(self.features).__name__} has no nn.Linear layer to treat as its head")
        return self.features.get_submodule(self._fc_name)

    def forward_head(self, features: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        return features  # the module's output is already the logits

    def reset_classifier(self, num_classes: int) -> None:
        raise NotImplementedError(f"{type(self.features).__name__} is a model of your own; build it with "
                                  f"{num_classes} outputs instead")

    @property
    def num_classes(self) -> int:
        return self.fc.out_features


def as_classifier(module: Any, what: str = "the model") -> Classifier:
    """`module` behind the Classifier interface: itself if it is one, else wrapped in OwnModel."""
    if isinstance(module, Classifier):
        return module
    if not isinstance(module, nn.Module):
        raise ValueError(f"{what} is a {type(module).__name__}, not a torch nn.Module")
    return OwnModel(module)


def call_builder(builder: Callable[..., Any], name: str, *, num_classes: int, in_channels: int, image_size: int,
                 width: float = 1.0) -> Classifier:
    """Call a model builder (a function or an nn.Module class) with the keyword arguments of the registry's builders
    that it accepts (`num_classes`, `in_channels`, `image_size`, `width`), and wrap what it returns."""
    offered = {"num_classes": num_classes, "in_channels": in_channels, "image_size": image_size, "width": width}
    try:
        parameters = inspect.signature(builder).parameters
    except (TypeError, ValueError):  # a builtin or C extension: offer everything
        parameters = {}
    takes_any = not parameters or any(p.kind is p.VAR_KEYWORD for p in parameters.values())
    kwargs = offered if takes_any else {k: v for k, v in offered.items() if k in parameters}
    if width != 1.0 and "width" not in kwargs:
        raise ValueError(f"width: {name} takes no width argument; leave width at 1.0")
    return as_classifier(builder(**kwargs), f"what the builder of {name} returned")


def python_name(model: Any) -> str:
    """The registry name a model passed from Python trains under: the registered name of a builder that is an entry
    of MODELS (an entry point's, say), else python/<its class or function name>."""
    if not isinstance(model, nn.Module):
        for name in MODELS.names():
            if MODELS.get(name) is model or getattr(MODELS.get(name), "__wrapped__", None) is model:
                return name
    label = model.__name__ if not isinstance(model, nn.Module) and hasattr(model, "__name__") else type(model).__name__
    label = "".join(c if c.isalnum() or c in "-_." else "-" for c in label).strip("-.") or "model"
    return PYTHON_PREFIX + label


def _python_builder(label: str) -> Callable[..., nn.Module]:
    def build(**_: Any) -> nn.Module:
        raise CheckpointError(
            f"model {PYTHON_PREFIX}{label} was passed to visiontrain.train() from Python and is registered under no "
            f"name, so it cannot be rebuilt here: register its builder under the 'visiontrain.models' entry points "
            f"of a package and train with model='NAME' (docs/ecosystem.md), or load the run in Python with "
            f"visiontrain.load(RUN, model={label}(...))")

    build.__doc__ = f"a model defined in Python ({label}): only visiontrain.load(run, model=...) can rebuild it"
    return build


MODELS.register_prefix(PYTHON_PREFIX, _python_builder,
                       "a model passed to visiontrain.train(model=...) from Python; rebuilt only by "
                       "visiontrain.load(run, model=...)")
