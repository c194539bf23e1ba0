"""Batched augmentation with per-sample random parameters: one tensor op per batch, never a per-image loop.

Parameters are drawn (`make_params`) separately from being applied (`apply`), as in torchvision v2, so every
augmentation can be tested and replayed. The generator of step s of epoch e is seeded from (seed, e, s): a
resumed run draws exactly the parameters the uninterrupted run drew.

Photo mode adds torchvision's RandomResizedCrop (a box of random area and aspect ratio, resized back to the
training size: one grid_sample for the whole batch) and ColorJitter (brightness, contrast and saturation factors
per image, applied in a random order per image, as batched tensor ops).
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..config import Config
from .autoaugment import BINS, POLICIES, apply_policy
from .loader import epoch_seed
from .mixing import mix_params


PHOTO_RATIO = (3 / 4, 4 / 3)  # torchvision RandomResizedCrop's default aspect-ratio range
PHOTO_JITTER = 0.4  # photo mode's colour jitter when --jitter is not given (timm's default color_jitter)
GRAY_WEIGHTS = (0.299, 0.587, 0.114)  # ITU-R 601 luma, as PIL's convert("L"), which an ejected ColorJitter uses
_CROP_TRIES = 10  # RandomResizedCrop tries 10 boxes per image, then falls back to a centre crop


@dataclass(frozen=True)
class AugmentSpec:
    crop_padding: int = 0  # random translate by up to this many pixels (random crop from a padded copy)
    flip: bool = False  # random horizontal flip
    rotation: float = 0.0  # random rotation, degrees
    pad_mode: str = "constant"  # border fill: 'constant' (black) or 'reflect'
    crop_scale: float = 0.0  # random resized crop keeping this fraction of the area up to all of it (0: off)
    crop_ratio: tuple[float, float] = PHOTO_RATIO  # ... with an aspect ratio (width / height) in this range
    jitter: float = 0.0  # colour jitter: brightness, contrast, saturation factors in [1 - j, 1 + j] (0: off)
    policy: str = "none"  # 'trivial' (TrivialAugmentWide) or 'randaugment' (data/autoaugment.py)
    policy_ops: int = 2  # RandAugment: operations per image
    policy_magnitude: int = 9  # RandAugment: the magnitude bin (of 31)
    mixup: float = 0.0  # MixUp's Beta(alpha, alpha) (0: off; data/mixing.py)
    cutmix: float = 0.0  # CutMix's alpha (0: off); with both, each batch takes one

    @property
    def active(self) -> bool:
        return bool(self.crop_padding or self.flip or self.rotation or self.crop_scale or self.jitter
                    or self.policy != "none" or self.mixes)

    @property
    def mixes(self) -> bool:
        """MixUp or CutMix: the targets become class probabilities (Trainer.batch)."""
        return bool(self.mixup or self.cutmix)

    def describe(self) -> str:
        """'crop +-2 px (constant border), horizontal flip' or 'none', in the order apply() applies them: what training
        does to each image (show-batch's title, summary.json; compare.html compares it, so two --augment values that
        resolve to the same operations, auto and crop+flip on photos, read the same)."""
        parts = [f"rotation +-{self.rotation:g} deg"] if self.rotation else []
        parts += [f"crop +-{self.crop_padding} px ({self.pad_mode} border)"] if self.crop_padding else []
        low, high = self.crop_ratio
        parts += [f"random resized crop (area {self.crop_scale:g}-1, ratio {low:.3g}-{high:.3g})"] if self.crop_scale else []
        parts += ["horizontal flip"] if self.flip else []
        parts += [f"colour jitter {self.jitter:g}"] if self.jitter else []
        parts += ["TrivialAugmentWide"] if self.policy == "trivial" else []
        parts += [f"RandAugment ({self.policy_ops} ops, magnitude {self.policy_magnitude})"] \
            if self.policy == "randaugment" else []
        mixes = [f"MixUp alpha {self.mixup:g}"] * bool(self.mixup) + [f"CutMix alpha {self.cutmix:g}"] * bool(self.cutmix)
        parts += [" or ".join(mixes) + (" (one per batch)" if len(mixes) == 2 else "")] if mixes else []
        return ", ".join(parts) or "none"

def augment_spec(config: Config, allow_flip: bool, pad_mode: str) -> AugmentSpec:
    """The augmentation a run trains with: config.augment resolved for data that may (allow_flip) or may not be
    mirrored (digits), translated with its border fill (pad_mode). eject passes what the run recorded."""
    mode = config.augment
    if mode == "auto":
        mode = "crop+flip" if allow_flip else "crop"
    photo = mode == "photo"  # opt-in: random resized crop + flip (unless digits) + colour jitter
    jitter = config.jitter if config.jitter is not None else (PHOTO_JITTER if photo else 0.0)
    return AugmentSpec(crop_padding=config.crop_padding if "crop" in mode else 0,
                       flip="flip" in mode or (photo and allow_flip),  # auto and photo never mirror digits
                       rotation=config.rotation, pad_mode=pad_mode,
                       crop_scale=config.crop_scale if photo else 0.0, jitter=jitter,
                       policy=config.auto_augment, policy_ops=config.randaugment_ops,
                       policy_magnitude=config.randaugment_magnitude, mixup=config.mixup, cutmix=config.cutmix)


def step_generator(seed: int, epoch: int, step: int) -> torch.Generator:
    return torch.Generator().manual_seed(epoch_seed(seed, epoch * 1_000_003 + step, salt=1))


def image_flips(flip_mode: str, count: int, seed: int) -> torch.Tensor | None:
    """`--flip-mode alternate`: bool (count,), each training image's own flip bit, inverted on odd epochs, so every
    image is seen both ways in any two consecutive epochs (airbench: 10.8 -> 9.9 epochs to 94%). random: None."""
    if flip_mode != "alternate":
        return None
    return torch.rand(count, generator=torch.Generator().manual_seed(epoch_seed(seed, 0, salt=2))) < 0.5


def batch_params(spec: AugmentSpec, indices: torch.Tensor, seed: int, epoch: int, step: int,
                 flips: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """The parameters of step `step` of epoch `epoch` for the training images `indices` (the trainer's and
    show-batch's one way to draw them); `flips` from image_flips."""
    params = make_params(spec, len(indices), step_generator(seed, epoch, step))
    if flips is not None and "flip" in params:
        params["flip"] = flips[indices] ^ bool(epoch % 2)
    return params


def make_params(spec: AugmentSpec, batch_size: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """Per-sample parameters: shift int64 (B, 2) in [-p, p], flip bool (B,), angle float (B,) degrees;
    resized crop: crop_area float64 (B, 10) area fractions in [crop_scale, 1], crop_log_ratio float64 (B, 10),
    crop_position float64 (B, 2) in [0, 1) (turned into pixel boxes by `crop_boxes`, which knows the image size);
    jitter: jitter float (B, 3) brightness, contrast, saturation factors, jitter_order int64 (B, 3) a permutation;
    policy: policy_op, policy_bin int64 and policy_sign bool (B, rounds); MixUp/CutMix (per batch): mix_cutmix,
    mix_lambda, mix_center (data/mixing.py).

    The draws of the older augmentations come first and are unchanged, so their runs replay as before.
    """
    params = {}
    if spec.crop_padding:
        params["shift"] = torch.randint(-spec.crop_padding, spec.crop_padding + 1, (batch_size, 2), generator=generator)
    if spec.flip:
        params["flip"] = torch.rand(batch_size, generator=generator) < 0.5
    if spec.rotation:
        params["angle"] = (torch.rand(batch_size, generator=generator) * 2 - 1) * spec.rotation
    if spec.crop_scale:
        shape = (batch_size, _CROP_TRIES)
        low, high = math.log(spec.crop_ratio[0]), math.log(spec.crop_ratio[1])
        params["crop_area"] = spec.crop_scale + (1 - spec.crop_scale) * torch.rand(shape, generator=generator,
                                                                                   dtype=torch.float64)
        params["crop_log_ratio"] = low + (high - low) * torch.rand(shape, generator=generator, dtype=torch.float64)
        params["crop_position"] = torch.rand(batch_size, 2, generator=generator, dtype=torch.float64)
    if spec.jitter:
        low = max(0.0, 1 - spec.jitter)
        params["jitter"] = low + (1 + spec.jitter - low) * torch.rand(batch_size, 3, generator=generator)
        params["jitter_order"] = torch.rand(batch_size, 3, generator=generator).argsort(1)
    if spec.policy != "none":  # per image and round: the operation, its magnitude bin, a sign flip
        rounds = spec.policy_ops if spec.policy == "randaugment" else 1
        params["policy_op"] = torch.randint(len(POLICIES[spec.policy]), (batch_size, rounds), generator=generator)
        params["policy_bin"] = torch.randint(BINS, (batch_size, rounds), generator=generator) \
            if spec.policy == "trivial" else torch.full((batch_size, rounds), spec.policy_magnitude)
        params["policy_sign"] = torch.rand(batch_size, rounds, generator=generator) < 0.5
    if spec.mixes:  # per batch: MixUp or CutMix, its lam, CutMix's box centre
        params |= mix_params(spec.mixup, spec.cutmix, generator)
    return params


def apply(images: torch.Tensor, params: dict[str, torch.Tensor], spec: AugmentSpec) -> torch.Tensor:
    """Augment float (B, C, H, W) images with the given per-sample parameters, in this order: rotation, translate,
    resized crop, flip, colour jitter, TrivialAugmentWide / RandAugment (as torchvision's recipes put the policy
    after the crop and flip). Pixels are 0..255 (as Trainer.batch passes them); only the colour jitter
    needs that scale (it clamps to 0..255), the geometric steps also work on normalised images."""
    if "angle" in params:
        images = rotate(images, params["angle"].to(images.device), spec.pad_mode)
    if "shift" in params:
        images = translate(images, params["shift"].to(images.device), spec.crop_padding, spec.pad_mode)
    if "crop_area" in params:
        images = resized_crop(images, crop_boxes(params, spec, images.shape[-2], images.shape[-1]))
    if "flip" in params:
        images = torch.where(params["flip"].to(images.device)[:, None, None, None], images.flip(3), images)
    if "jitter" in params:
        images = color_jitter(images, params["jitter"].to(images.device), params["jitter_order"].to(images.device))
    if "policy_op" in params:
        images = apply_policy(images, spec.policy, params["policy_op"], params["policy_bin"], params["policy_sign"])
    return images  # MixUp/CutMix change the labels too: mixing.mix, after this (Trainer.batch, show-batch)


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



def crop_boxes(params: dict[str, torch.Tensor], spec: AugmentSpec, height: int, width: int) -> torch.Tensor:
    """int64 (B, 4) boxes (top, left, box height, box width) from the drawn parameters, as torchvision's
    RandomResizedCrop.get_params picks them: the first of 10 (area, ratio) draws whose rounded box fits inside the
    image, placed uniformly; a centre crop with the ratio clamped to the range when none fits. On the CPU, in float64.
    """
    area = params["crop_area"] * (height * width)  # (B, 10) pixels
    ratio = params["crop_log_ratio"].exp()
    w = (area * ratio).sqrt().round().long()  # torch.round and Python's round both round half to even
    h = (area / ratio).sqrt().round().long()
    fits = (w > 0) & (w <= width) & (h > 0) & (h <= height)
    first = fits.long().argmax(1, keepdim=True)  # the first try that fits
    h, w = h.gather(1, first)[:, 0], w.gather(1, first)[:, 0]
    position = params["crop_position"]
    top = (position[:, 0] * (height - h + 1)).floor().long().clamp(max=height - h)
    left = (position[:, 1] * (width - w + 1)).floor().long().clamp(max=width - w)
    low, high = spec.crop_ratio
    if width / height < low:  # the fallback: the whole image, or its centre at the nearest allowed ratio
        fallback_w, fallback_h = width, int(round(width / low))
    elif width / height > high:
        fallback_w, fallback_h = int(round(height * high)), height
    else:
        fallback_w, fallback_h = width, height
    fallback = torch.tensor([(height - fallback_h) // 2, (width - fallback_w) // 2, fallback_h, fallback_w])
    boxes = torch.stack([top, left, h, w], 1)
    return torch.where(fits.any(1, keepdim=True), boxes, fallback)


def resized_crop(images: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """Each image's box (top, left, height, width) resized bilinearly to the full H x W: one grid_sample per batch.

    The sampling grid is the one F.interpolate(align_corners=False) uses on the cropped image (pixel centres,
    coordinates clamped to the box), so the result equals torchvision's resized_crop of each image up to float
    rounding; boxes are never larger than the image, so this only enlarges and needs no antialiasing.
    """
    batch, _, height, width = images.shape
    boxes = boxes.to(images.device, torch.float32)
    top, left, box_h, box_w = boxes.unbind(1)  # (B,)
    ys = top[:, None] + (torch.arange(height, device=images.device) + 0.5) * (box_h / height)[:, None] - 0.5
    xs = left[:, None] + (torch.arange(width, device=images.device) + 0.5) * (box_w / width)[:, None] - 0.5
    ys = torch.minimum(ys.clamp(min=0).maximum(top[:, None]), (top + box_h - 1)[:, None])  # (B, H) source rows
    xs = torch.minimum(xs.clamp(min=0).maximum(left[:, None]), (left + box_w - 1)[:, None])  # (B, W) source columns
    grid = torch.stack([((2 * xs + 1) / width - 1)[:, None, :].expand(batch, height, width),
                        ((2 * ys + 1) / height - 1)[:, :, None].expand(batch, height, width)], 3)  # (B, H, W, 2)
    return F.grid_sample(images, grid.to(images.dtype), mode="bilinear", padding_mode="border", align_corners=False)


def color_jitter(images: torch.Tensor, factors: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
    """torchvision's ColorJitter on float 0..255 (B, C, H, W) images, batched.

    factors float (B, 3): brightness, contrast, saturation; order int64 (B, 3): the permutation of the three
    adjustments for each image (ColorJitter shuffles them per image). Each adjustment blends the image with a
    reference and clamps to 0..255, as torchvision's _blend does: brightness blends with black, contrast with the mean
    gray level of the image, saturation with its gray version (3-channel images only: a grayscale image has no
    saturation and is left as it is). Factors of 1 change nothing. One blend per stage, in place on one copy.
    """
    batch, channels, height, width = images.shape
    rgb = channels == 3
    images = images.reshape(batch, channels, height * width).clone()  # (B, C, HW), blended in place below
    weights = _gray_weights(images.device, images.dtype)  # (1, 1, 3)
    factors = factors.to(images.dtype)
    for stage in range(3):
        step = order[:, stage, None, None]  # (B, 1, 1) each image's adjustment: 0 brightness, 1 contrast, 2 saturation
        factor = factors.gather(1, order[:, stage, None])[:, :, None]  # (B, 1, 1)
        gray = torch.matmul(weights, images) if rgb else images  # (B, 1, HW)
        is_contrast = (step == 1).to(images.dtype)
        if rgb:  # reference: black, the mean gray level, or the gray image
            reference = torch.addcmul(gray.mean(2, keepdim=True) * is_contrast, gray, (step == 2).to(images.dtype))
        else:
            reference = gray.mean(2, keepdim=True) * is_contrast
            factor = torch.where(step == 2, 1.0, factor)  # no saturation in a gray image
        images.lerp_(reference, 1 - factor).clamp_(0, 255)  # factor * image + (1 - factor) * reference
    return images.view(batch, channels, height, width)


@functools.lru_cache(maxsize=None)
def _gray_weights(device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """The luma weights on the device, copied there once (a copy per batch would be a host sync on a GPU)."""
    return torch.tensor(GRAY_WEIGHTS, dtype=dtype, device=device).view(1, 1, 3)
