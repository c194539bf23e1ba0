"""Batched augmentation with per-sample random parameters: one tensor op per batch, never a per-image loop.

Parameters are drawn (`make_params`) separately from being applied (`apply`), as in torchvision v2, so every
augmentation can be tested and replayed. The generator of step s of epoch e is seeded from (seed, e, s): a
resumed run draws exactly the parameters the uninterrupted run drew.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .loader import epoch_seed


@dataclass(frozen=True)
class AugmentSpec:
    crop_padding: int = 0  # random translate by up to this many pixels (random crop from a padded copy)
    flip: bool = False  # random horizontal flip
    rotation: float = 0.0  # random rotation, degrees
    pad_mode: str = "constant"  # border fill: 'constant' (black) or 'reflect'

    @property
    def active(self) -> bool:
        return bool(self.crop_padding or self.flip or self.rotation)


def step_generator(seed: int, epoch: int, step: int) -> torch.Generator:
    return torch.Generator().manual_seed(epoch_seed(seed, epoch * 1_000_003 + step, salt=1))


def make_params(spec: AugmentSpec, batch_size: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """Per-sample parameters: shift int64 (B, 2) in [-p, p], flip bool (B,), angle float (B,) degrees."""
    params = {}
    if spec.crop_padding:
        params["shift"] = torch.randint(-spec.crop_padding, spec.crop_padding + 1, (batch_size, 2), generator=generator)
    if spec.flip:
        params["flip"] = torch.rand(batch_size, generator=generator) < 0.5
    if spec.rotation:
        params["angle"] = (torch.rand(batch_size, generator=generator) * 2 - 1) * spec.rotation
    return params


def apply(images: torch.Tensor, params: dict[str, torch.Tensor], spec: AugmentSpec) -> torch.Tensor:
    """Augment float (B, C, H, W) images (0..255 or normalised) with the given per-sample parameters."""
    if "angle" in params:
        images = rotate(images, params["angle"].to(images.device), spec.pad_mode)
    if "shift" in params:
        images = translate(images, params["shift"].to(images.device), spec.crop_padding, spec.pad_mode)
    if "flip" in params:
        images = torch.where(params["flip"].to(images.device)[:, None, None, None], images.flip(3), images)
    return images


def translate(images: torch.Tensor, shift: torch.Tensor, padding: int, pad_mode: str) -> torch.Tensor:
    """Random crop of the original size from a copy padded by `padding`: two gathers, no loop over samples."""
    batch, channels, height, width = images.shape
    padded = F.pad(images, (padding,) * 4, mode=pad_mode)  # (B, C, H+2p, W+2p)
    rows = (shift[:, 0] + padding)[:, None] + torch.arange(height, device=images.device)  # (B, H)
    cols = (shift[:, 1] + padding)[:, None] + torch.arange(width, device=images.device)  # (B, W)
    padded = padded.gather(2, rows[:, None, :, None].expand(batch, channels, height, width + 2 * padding))
    return padded.gather(3, cols[:, None, None, :].expand(batch, channels, height, width))  # (B, C, H, W)


def rotate(images: torch.Tensor, degrees: torch.Tensor, pad_mode: str) -> torch.Tensor:
    radians = degrees.float() * (math.pi / 180)
    cos, sin, zero = radians.cos(), radians.sin(), torch.zeros_like(radians)
    theta = torch.stack([torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], 1)  # (B, 2, 3)
    grid = F.affine_grid(theta.to(images.dtype), list(images.shape), align_corners=False)
    padding = "reflection" if pad_mode == "reflect" else "zeros"
    return F.grid_sample(images, grid, mode="bilinear", padding_mode=padding, align_corners=False)
