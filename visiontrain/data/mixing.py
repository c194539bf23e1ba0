"""MixUp (Zhang et al. 2018) and CutMix (Yun et al. 2019) on a training batch, as torchvision.transforms.v2 does them.

Each batch is mixed with itself rolled by one image (image i with image i - 1): MixUp blends the two images with a
weight lam drawn from Beta(alpha, alpha), CutMix pastes a box of the partner whose area is about 1 - lam, and the
targets become the same mix of the two one-hot labels (class probabilities, which nn.CrossEntropyLoss takes, label
smoothing included). With both on, each batch takes one of them, with even odds (timm's and torchvision's
RandomChoice default). One lam per batch, as torchvision.transforms.v2.MixUp/CutMix and timm's default 'batch'
mode draw it. Both are affine in the pixels, so mixing before the normalisation is mixing after it.

The parameters come from the step's generator (data/augment.py make_params), so a resumed run mixes exactly as
the uninterrupted one did. Beta is not among torch's generator-aware samplers, so lam comes from numpy's Beta with
a seed drawn from that generator.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F


def mix_params(mixup: float, cutmix: float, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """mix_cutmix bool (1,), mix_lambda float64 (1,), mix_center float64 (2,): the box centre (row, column) as
    fractions of the image, which CutMix turns into pixels as torchvision's randint(H), randint(W)."""
    use_cutmix = bool(cutmix) and (not mixup or bool(torch.rand(1, generator=generator) < 0.5))
    alpha = cutmix if use_cutmix else mixup
    seed = int(torch.randint(0, 2**62, (1,), generator=generator))
    lam = float(np.random.default_rng(seed).beta(alpha, alpha))
    return {"mix_cutmix": torch.tensor([use_cutmix]), "mix_lambda": torch.tensor([lam], dtype=torch.float64),
            "mix_center": torch.rand(2, generator=generator, dtype=torch.float64)}


def cutmix_box(lam: float, center: torch.Tensor, height: int, width: int) -> tuple[int, int, int, int]:
    """(top, left, bottom, right) of the pasted box: torchvision v2 CutMix's, from lam and the drawn centre."""
    row, column = int(float(center[0]) * height), int(float(center[1]) * width)
    half = 0.5 * math.sqrt(1.0 - lam)
    half_h, half_w = int(half * height), int(half * width)
    return max(row - half_h, 0), max(column - half_w, 0), min(row + half_h, height), min(column + half_w, width)


def mix(images: torch.Tensor, labels: torch.Tensor, params: dict[str, torch.Tensor], num_classes: int
        ) -> tuple[torch.Tensor, torch.Tensor]:
    """(mixed images (B, C, H, W), targets float32 (B, K): the class probabilities of each mixed image)."""
    lam = float(params["mix_lambda"][0])
    partner = images.roll(1, 0)
    if bool(params["mix_cutmix"][0]):
        top, left, bottom, right = cutmix_box(lam, params["mix_center"], *images.shape[-2:])
        images = images.clone()
        images[..., top:bottom, left:right] = partner[..., top:bottom, left:right]
        lam = 1.0 - (bottom - top) * (right - left) / (images.shape[-2] * images.shape[-1])  # the area kept
    else:
        images = images * lam + partner * (1.0 - lam)
    one_hot = F.one_hot(labels, num_classes).float()
    return images, one_hot * lam + one_hot.roll(1, 0) * (1.0 - lam)


def describe_targets(targets: torch.Tensor, classes: list[str]) -> list[str]:
    """'62% cat\n38% dog' (or the one class name) per row of soft targets (B, K): show-batch's captions."""
    captions = []
    for row in targets:
        shares = [(float(p), classes[int(i)]) for i, p in enumerate(row) if p > 1e-6]
        shares.sort(key=lambda share: -share[0])
        captions.append(shares[0][1] if len(shares) == 1 else "\n".join(f"{p:.0%} {name}" for p, name in shares))
    return captions
