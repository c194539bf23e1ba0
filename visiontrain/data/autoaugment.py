"""TrivialAugmentWide (Müller & Hutter 2021) and RandAugment (Cubuk et al. 2020) as batched tensor operations.

The operations, their magnitudes and their sign flips are torchvision's (transforms.v2.TrivialAugmentWide and
RandAugment, 31 magnitude bins, nearest interpolation, black fill), so `visiontrain eject` can write the same
transforms; they were checked against torchvision's functional ops on real images (tests/test_autoaugment.py):
the geometric ones build torchvision's own inverse affine matrices and sampling grid and agree exactly, the colour
ones agree to within one grey level (torchvision rounds to uint8 after each op, these stay float as the trainer's
images are).

Per image, the parameters (which operation, which magnitude bin, which sign) are drawn by data/augment.py's
make_params from the step's generator; here the images are grouped by operation, and each operation runs once on
its group: 14 tensor operations per round at most, never a loop over images. The grouping is read from the CPU
copy of the parameters, so a GPU run does not wait for the device to find out which images take which operation.
"""
from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F

BINS = 31  # torchvision's num_magnitude_bins
GRAY = (0.2989, 0.587, 0.114)  # torchvision's rgb_to_grayscale weights (adjust_saturation, adjust_contrast)


def _linspace(high: float) -> Callable[[int, int], torch.Tensor]:
    return lambda height, width: torch.linspace(0.0, high, BINS, dtype=torch.float64)


def _posterize_bits(spread: int) -> Callable[[int, int], torch.Tensor]:
    return lambda height, width: (8 - (torch.arange(BINS) / ((BINS - 1) / spread))).round().double()


_SOLARIZE = lambda height, width: torch.linspace(255.0, 0.0, BINS, dtype=torch.float64)  # noqa: E731  threshold
# name -> (magnitudes per bin for an image of (height, width), or None; whether the sign is flipped at random)
TRIVIAL_WIDE = {
    "Identity": (None, False), "ShearX": (_linspace(0.99), True), "ShearY": (_linspace(0.99), True),
    "TranslateX": (_linspace(32.0), True), "TranslateY": (_linspace(32.0), True), "Rotate": (_linspace(135.0), True),
    "Brightness": (_linspace(0.99), True), "Color": (_linspace(0.99), True), "Contrast": (_linspace(0.99), True),
    "Sharpness": (_linspace(0.99), True), "Posterize": (_posterize_bits(6), False), "Solarize": (_SOLARIZE, False),
    "AutoContrast": (None, False), "Equalize": (None, False),
}
RANDAUGMENT = {
    "Identity": (None, False), "ShearX": (_linspace(0.3), True), "ShearY": (_linspace(0.3), True),
    "TranslateX": (lambda h, w: torch.linspace(0.0, 150.0 / 331.0 * w, BINS, dtype=torch.float64), True),
    "TranslateY": (lambda h, w: torch.linspace(0.0, 150.0 / 331.0 * h, BINS, dtype=torch.float64), True),
    "Rotate": (_linspace(30.0), True), "Brightness": (_linspace(0.9), True), "Color": (_linspace(0.9), True),
    "Contrast": (_linspace(0.9), True), "Sharpness": (_linspace(0.9), True), "Posterize": (_posterize_bits(4), False),
    "Solarize": (_SOLARIZE, False), "AutoContrast": (None, False), "Equalize": (None, False),
}
POLICIES = {"trivial": TRIVIAL_WIDE, "randaugment": RANDAUGMENT}
GEOMETRIC = ("ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate")


def magnitudes(policy: str, op: torch.Tensor, bin_: torch.Tensor, sign: torch.Tensor, height: int, width: int
               ) -> torch.Tensor:
    """float64 (B,) the signed magnitude of each image's operation (0 for operations without one), on the CPU."""
    values = torch.zeros(len(op), dtype=torch.float64)
    for index, (name, (table, signed)) in enumerate(POLICIES[policy].items()):
        chosen = op == index
        if table is not None and chosen.any():
            picked = table(height, width)[bin_[chosen]]
            values[chosen] = torch.where(sign[chosen], -picked, picked) if signed else picked
    return values


def apply_policy(images: torch.Tensor, policy: str, ops: torch.Tensor, bins: torch.Tensor, signs: torch.Tensor
                 ) -> torch.Tensor:
    """Float (B, C, H, W) 0..255 images after the policy's operations: ops, bins int64 (B, R) and signs bool (B, R)
    (CPU), one round per column (TrivialAugmentWide: 1, RandAugment: its number of operations)."""
    names = list(POLICIES[policy])
    height, width = images.shape[-2:]
    for round_ in range(ops.shape[1]):
        op = ops[:, round_].cpu()
        values = magnitudes(policy, op, bins[:, round_].cpu(), signs[:, round_].cpu(), height, width)
        images = images.clone()
        geometric = [names.index(name) for name in GEOMETRIC]
        chosen = torch.isin(op, torch.tensor(geometric)).nonzero()[:, 0]
        if len(chosen):  # all five geometric operations in one grid_sample
            rows = chosen.to(images.device)
            images[rows] = affine(images[rows], [names[int(i)] for i in op[chosen]], values[chosen])
        for index, name in enumerate(names):
            if name in GEOMETRIC or name == "Identity":
                continue
            chosen = (op == index).nonzero()[:, 0]
            if len(chosen):
                rows = chosen.to(images.device)
                images[rows] = COLOUR_OPS[name](images[rows], values[chosen].to(images.device, images.dtype))
    return images


# -- geometric ------------------------------------------------------------------------------------------------
def inverse_affine(names: list[str], values: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """float64 (n, 2, 3): torchvision's _get_inverse_affine_matrix for each image's operation, with the centre and
    arguments that TrivialAugmentWide's _apply_image_or_video_transform passes (shears about the top-left corner,
    translations by whole pixels, rotations about the centre with the angle negated, as F.rotate does)."""
    n = len(names)
    angle, shear_x, shear_y, tx, ty, cx, cy = (torch.zeros(n, dtype=torch.float64) for _ in range(7))
    for i, (name, value) in enumerate(zip(names, values.tolist())):
        if name in ("ShearX", "ShearY"):
            cx[i], cy[i] = -width * 0.5, -height * 0.5  # center=[0, 0] in pixels, moved to the centre's frame
            (shear_x if name == "ShearX" else shear_y)[i] = math.atan(value)  # radians(degrees(atan(m)))
        elif name == "TranslateX":
            tx[i] = float(int(value))
        elif name == "TranslateY":
            ty[i] = float(int(value))
        else:  # Rotate
            angle[i] = math.radians(-value)
    a = torch.cos(angle - shear_y) / torch.cos(shear_y)
    b = -torch.cos(angle - shear_y) * torch.tan(shear_x) / torch.cos(shear_y) - torch.sin(angle)
    c = torch.sin(angle - shear_y) / torch.cos(shear_y)
    d = -torch.sin(angle - shear_y) * torch.tan(shear_x) / torch.cos(shear_y) + torch.cos(angle)
    m0, m1, m3, m4 = d, -b, -c, a  # the inverse of [[a, b], [c, d]] (its determinant is 1)
    m2 = m0 * (-cx - tx) + m1 * (-cy - ty) + cx
    m5 = m3 * (-cx - tx) + m4 * (-cy - ty) + cy
    return torch.stack([torch.stack([m0, m1, m2], 1), torch.stack([m3, m4, m5], 1)], 1)


def affine(images: torch.Tensor, names: list[str], values: torch.Tensor) -> torch.Tensor:
    """Each image's shear, translation or rotation: torchvision's _affine_grid and grid_sample (nearest, zeros)."""
    batch, _, height, width = images.shape
    device = images.device  # only the (n, 2, 3) matrices are copied there, the grid is made there
    theta = inverse_affine(names, values, height, width).to(device, torch.float32)  # (n, 2, 3)
    xs = torch.linspace(-width * 0.5 + 0.5, width * 0.5 - 0.5, width, device=device)
    ys = torch.linspace(-height * 0.5 + 0.5, height * 0.5 - 0.5, height, device=device)
    base = torch.stack([xs.expand(height, width), ys[:, None].expand(height, width),
                        torch.ones(height, width, device=device)], 2)  # (H, W, 3) pixel coordinates, 1
    rescaled = theta.transpose(1, 2) / torch.tensor([0.5 * width, 0.5 * height], device=device)  # (n, 3, 2)
    grid = base.view(1, height * width, 3).expand(batch, -1, -1).bmm(rescaled).view(batch, height, width, 2)
    return F.grid_sample(images, grid.to(images.dtype), mode="nearest", padding_mode="zeros", align_corners=False)


# -- colour (float 0..255, per-image factors (n,)) ---------------------------------------------------------------
def _blend(images: torch.Tensor, reference: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    return (factor.view(-1, 1, 1, 1) * images + (1 - factor.view(-1, 1, 1, 1)) * reference).clamp(0, 255)


def _gray(images: torch.Tensor) -> torch.Tensor:
    if images.shape[1] == 1:
        return images
    weights = torch.tensor(GRAY, dtype=images.dtype, device=images.device).view(1, 3, 1, 1)
    return (images * weights).sum(1, keepdim=True)


def brightness(images: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    return _blend(images, torch.zeros_like(images), 1 + value)


def color(images: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    return images if images.shape[1] == 1 else _blend(images, _gray(images), 1 + value)  # gray: no saturation


def contrast(images: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    return _blend(images, _gray(images).mean((1, 2, 3), keepdim=True), 1 + value)


def sharpness(images: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    """Blend with the image smoothed by torchvision's 3x3 kernel (1s around a 5, / 13), the border pixels kept."""
    channels, height, width = images.shape[1:]
    if height <= 2 or width <= 2:
        return images
    kernel = torch.ones(3, 3, dtype=images.dtype, device=images.device)
    kernel[1, 1] = 5
    blurred = F.conv2d(images, (kernel / 13).expand(channels, 1, 3, 3), groups=channels).round()  # (n, C, H-2, W-2)
    degenerate = images.clone()
    degenerate[..., 1:-1, 1:-1] = blurred
    return _blend(images, degenerate, 1 + value)


def posterize(images: torch.Tensor, bits: torch.Tensor) -> torch.Tensor:
    step = (2.0 ** (8 - bits)).view(-1, 1, 1, 1)  # keep the top `bits` bits of each level
    return torch.div(images, step, rounding_mode="floor") * step


def solarize(images: torch.Tensor, threshold: torch.Tensor) -> torch.Tensor:
    return torch.where(images >= threshold.view(-1, 1, 1, 1), 255 - images, images)


def autocontrast(images: torch.Tensor, _: torch.Tensor) -> torch.Tensor:
    low, high = images.amin((2, 3), keepdim=True), images.amax((2, 3), keepdim=True)
    flat = high == low
    scale = torch.where(flat, 1.0, 255 / (high - low).clamp_min(1e-12))
    return torch.where(flat, images, ((images - low) * scale).clamp(0, 255))


def equalize(images: torch.Tensor, _: torch.Tensor) -> torch.Tensor:
    """torchvision's equalize_image (PIL's lookup table) on each channel of each image, all at once."""
    batch, channels, height, width = images.shape
    levels = images.round().clamp(0, 255).long().view(batch, channels, -1)  # (n, C, HW)
    hist = torch.zeros(batch, channels, 256, dtype=torch.long, device=images.device)
    hist.scatter_add_(2, levels, torch.ones_like(levels))
    cumulative = hist.cumsum(2)
    last = cumulative.argmax(2, keepdim=True)  # the last level present
    step = torch.div(levels.shape[2] - hist.gather(2, last), 255, rounding_mode="floor")  # (n, C, 1)
    lut = torch.div(cumulative[..., :-1] + torch.div(step, 2, rounding_mode="floor"), step.clamp_min(1),
                    rounding_mode="floor").clamp(0, 255)
    lut = torch.cat([torch.zeros_like(lut[..., :1]), lut], 2)
    equalized = lut.gather(2, levels).view(batch, channels, height, width).to(images.dtype)
    return torch.where((step != 0).view(batch, channels, 1, 1), equalized, images)


COLOUR_OPS = {"Brightness": brightness, "Color": color, "Contrast": contrast, "Sharpness": sharpness,
              "Posterize": posterize, "Solarize": solarize, "AutoContrast": autocontrast, "Equalize": equalize}
