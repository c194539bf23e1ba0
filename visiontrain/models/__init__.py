"""Models: one registry, name -> builder(*, num_classes, in_channels, image_size, width) -> Classifier.

Other packages add builders through the `visiontrain.models` entry points (plugins.py)."""
from __future__ import annotations

from torch import nn

from .._registry import MODELS

from . import fast, own, pretrained, tutorial, zoo  # noqa: E402,F401  (registration happens on import)
from .base import Classifier  # noqa: E402
from .own import as_classifier  # noqa: E402


def create_model(name: str, *, num_classes: int, in_channels: int, image_size: int, width: float = 1.0) -> nn.Module:
    """Build a registered model for images of (in_channels, image_size, image_size) and num_classes outputs."""
    model = MODELS.get(name)(num_classes=num_classes, in_channels=in_channels, image_size=image_size, width=width)
    return as_classifier(model, f"what the builder of model {name} returned")  # an entry point's may be any module


def list_models() -> list[str]:
    return MODELS.names()


__all__ = ["MODELS", "Classifier", "create_model", "list_models"]
