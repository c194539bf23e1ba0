"""Models: one registry, name -> builder(*, num_classes, in_channels, image_size, width) -> Classifier."""
from __future__ import annotations

from torch import nn

from .._registry import MODELS

from . import fast, pretrained, tutorial, zoo  # noqa: E402,F401  (registration happens on import)
from .base import Classifier  # noqa: E402


def create_model(name: str, *, num_classes: int, in_channels: int, image_size: int, width: float = 1.0) -> nn.Module:
    """Build a registered model for images of (in_channels, image_size, image_size) and num_classes outputs."""
    return MODELS.get(name)(num_classes=num_classes, in_channels=in_channels, image_size=image_size, width=width)


def list_models() -> list[str]:
    return MODELS.names()


__all__ = ["MODELS", "Classifier", "create_model", "list_models"]
