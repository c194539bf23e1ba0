"""fastnet: a small network tuned for time-to-accuracy on a CPU, after the airbench recipe (Keller Jordan).

What makes it fast to train, each measured on 2 Zen 4 cores:
- a frozen 2x2 patch-whitening first layer computed from the training data: the network starts from
  decorrelated inputs, so it needs fewer epochs;
- BatchNorm with a frozen scale, GELU, identity-like (Dirac) initialisation of the convolutions;
- three conv groups (conv -> max-pool -> BN -> GELU -> conv -> BN -> GELU): all the spatial reduction is
  max-pooling, so most FLOPs run at small resolution;
- global max-pool and a bias-free linear head with logits scaled by 1/9.
"""
from __future__ import annotations

import torch
from torch import nn

from .._registry import MODELS
from .base import Classifier


class FrozenScaleBatchNorm(nn.BatchNorm2d):
    def __init__(self, num_features: int):
        super().__init__(num_features, eps=1e-12, momentum=0.4)
        self.weight.requires_grad_(False)  # a learnable scale only slows convergence here (airbench)


class Conv(nn.Conv2d):
    def __init__(self, in_channels: int, out_channels: int):
        super().__init__(in_channels, out_channels, kernel_size=3, padding=1, bias=False)

    def reset_parameters(self) -> None:
        super().reset_parameters()
        with torch.no_grad():
            n = min(self.in_channels, self.out_channels)
            nn.init.dirac_(self.weight[:n, :n])  # start near the identity on the first channels


class ConvGroup(nn.Sequential):
    def __init__(self, in_channels: int, out_channels: int):
        super().__init__(Conv(in_channels, out_channels), nn.MaxPool2d(2), FrozenScaleBatchNorm(out_channels),
                         nn.GELU(), Conv(out_channels, out_channels), FrozenScaleBatchNorm(out_channels), nn.GELU())


class GlobalMaxPool(nn.Module):
    """(B, C, H, W) -> (B, C, 1, 1) maximum, as nn.AdaptiveMaxPool2d(1), whose CUDA backward has no deterministic
    kernel (--deterministic stopped fastnet on a GPU). A max-pool over the whole map is the same function with the
    same backward (the gradient goes to the first maximum; amax would split it between ties, which are common on
    black backgrounds, and changed results) and is deterministic: its windows do not overlap."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.max_pool2d(x, kernel_size=x.shape[-2:])


class Whitening(nn.Conv2d):
    """2x2 patch whitening: weights = eigenvectors / sqrt(eigenvalues) of the patch covariance, and their negation."""

    def __init__(self, in_channels: int, stride: int = 1):
        super().__init__(in_channels, 2 * in_channels * 4, kernel_size=2, stride=stride, padding=0, bias=True)
        self.weight.requires_grad_(False)

    @torch.no_grad()
    def fit(self, images: torch.Tensor, eps: float = 5e-4) -> None:
        """images: float (N, C, H, W), normalised, a few thousand training images."""
        patches = images.unfold(2, 2, 1).unfold(3, 2, 1)  # (N, C, H-1, W-1, 2, 2)
        # (N, W-1, H-1, C, 2, 2) -> rows of C*4 features, already in conv's (c, kh, kw) order
        patches = patches.transpose(1, 3).reshape(-1, images.shape[1] * 4).double()
        patches = patches - patches.mean(0)
        eigenvalues, eigenvectors = torch.linalg.eigh(patches.T @ patches / len(patches))
        filters = (eigenvectors.T / (eigenvalues + eps).sqrt()[:, None]).reshape(-1, images.shape[1], 2, 2)
        self.weight.copy_(torch.cat([filters, -filters]).float())


class FastNet(Classifier):
    def __init__(self, num_classes: int, in_channels: int, widths: tuple[int, int, int], stem_stride: int = 1):
        whiten = Whitening(in_channels, stem_stride)
        features = nn.Sequential(whiten, nn.GELU(), ConvGroup(whiten.out_channels, widths[0]),
                                 ConvGroup(widths[0], widths[1]), ConvGroup(widths[1], widths[2]),
                                 GlobalMaxPool(), nn.Flatten())
        super().__init__(features, nn.Identity(), nn.Linear(widths[2], num_classes, bias=False))
        self.logit_scale = 1 / 9  # airbench's temperature: keeps early logits small with Dirac-initialised convs

    def forward_head(self, features: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        return features if pre_logits else self.fc(features) * self.logit_scale

    def init_from_data(self, images: torch.Tensor) -> None:
        """Fit the whitening layer to normalised training images, float (N, C, H, W)."""
        self.features[0].fit(images)


def _fastnet(num_classes: int, in_channels: int, image_size: int, width: float, stem_stride: int,
             widths: tuple[int, int, int] = (64, 128, 256)) -> FastNet:
    if image_size < 8 * stem_stride:
        raise ValueError(f"needs images of at least {8 * stem_stride} pixels, got {image_size}")
    return FastNet(num_classes, in_channels, tuple(max(8, round(w * width)) for w in widths), stem_stride)


@MODELS.register("fastnet")
def fastnet(*, num_classes: int, in_channels: int, image_size: int, width: float = 1.0) -> Classifier:
    """The default: airbench-style, stride-2 whitening stem (4x fewer FLOPs; best CPU time-to-accuracy at 28 px)."""
    return _fastnet(num_classes, in_channels, image_size, width, stem_stride=2)


@MODELS.register("fastnet-s1")
def fastnet_s1(*, num_classes: int, in_channels: int, image_size: int, width: float = 1.0) -> Classifier:
    """airbench94's layout: stride-1 whitening stem; ~4x the FLOPs of fastnet, higher accuracy per epoch."""
    return _fastnet(num_classes, in_channels, image_size, width, stem_stride=1)


@MODELS.register("fastnet-wide")
def fastnet_wide(*, num_classes: int, in_channels: int, image_size: int, width: float = 1.0) -> Classifier:
    """airbench94's widths (64/256/256) with the stride-1 stem: the GPU preset's network (2.3x fastnet-s1's FLOPs)."""
    return _fastnet(num_classes, in_channels, image_size, width, stem_stride=1, widths=(64, 256, 256))
