"""The one interface every registered model has (timm's): forward_features -> forward_head -> logits."""
from __future__ import annotations

import torch
from torch import nn


class Classifier(nn.Module):
    """`features` maps images to a flat feature vector, `head` to pre-logits, `fc` to logits.

    Transfer learning, feature extraction, summaries and Grad-CAM use these names and never special-case an
    architecture.
    """

    def __init__(self, features: nn.Module, head: nn.Module, fc: nn.Linear):
        super().__init__()
        self.features, self.head, self.fc = features, head, fc

    def forward_features(self, images: torch.Tensor) -> torch.Tensor:
        """float (B, C, H, W), normalised -> (B, D)."""
        return self.features(images)

    def forward_head(self, features: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        hidden = self.head(features)
        return hidden if pre_logits else self.fc(hidden)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """float (B, C, H, W), normalised -> logits float (B, num_classes)."""
        return self.forward_head(self.forward_features(images))

    def reset_classifier(self, num_classes: int) -> None:
        self.fc = nn.Linear(self.fc.in_features, num_classes, bias=self.fc.bias is not None)

    @property
    def num_classes(self) -> int:
        return self.fc.out_features
