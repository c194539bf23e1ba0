"""Decoding one image file into uint8 pixels under one explicit policy, the same in train, eval and predict.

The policy (recorded in summary.json and in every checkpoint):
- files that declare more than `max_pixels` pixels are refused from their header, before any memory is used;
- the EXIF orientation of phone photos is applied (`exif_transpose`), unless switched off;
- 16-bit images (PNG/TIFF 'I;16', 'I') are scaled from 0..65535 to 0..255 (value / 257), never clipped;
- transparency (RGBA, LA, P with a transparent colour) is composited onto a white background;
- CMYK, palette and other modes are converted to RGB; grayscale stays one channel;
- a truncated or corrupt file is an error (Pillow's LOAD_TRUNCATED_IMAGES stays off).
"""
from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".pgm", ".ppm", ".pbm")
_GRAY_MODES = {"1", "L", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"}


class DecodeError(Exception):
    """The file cannot be used; the message is the reason (the caller adds the path)."""


@dataclass(frozen=True)
class DecodePolicy:
    max_pixels: int = 64_000_000  # width x height above which a file is refused (decompression-bomb guard)
    exif_transpose: bool = True  # apply the EXIF orientation tag
    max_side: int = 256  # images larger than this are reduced at decode time (memory stays bounded)

    @classmethod
    def from_dict(cls, values: dict) -> "DecodePolicy":
        """The policy recorded by to_dict() in a checkpoint or model.json (its descriptive extra keys dropped)."""
        return cls(**{k: v for k, v in values.items() if k in cls.__dataclass_fields__})

    def to_dict(self) -> dict:
        return asdict(self) | {"sixteen_bit": "value/257", "alpha": "composited on white", "cmyk": "converted to RGB"}


def decode_image(path: str | Path, policy: DecodePolicy, size: int | None = None) -> np.ndarray:
    """Decode `path` to uint8 (C, H, W), C = 1 for grayscale files and 3 otherwise.

    size: if given, the shorter side is resized to `size` and the centre cropped to size x size; otherwise
    images whose longer side exceeds `policy.max_side` are reduced the same way to max_side.
    """
    path = Path(path)
    try:
        if path.stat().st_size == 0:
            raise DecodeError("empty file (0 bytes)")
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                width, height = image.size  # from the header: nothing decoded yet
                if width * height > policy.max_pixels:
                    raise DecodeError(f"declares {width}x{height} pixels, above the limit of {policy.max_pixels:,} "
                                      "(a decompression-bomb guard; raise max_pixels if the file is genuine)")
                image.load()
                if policy.exif_transpose:
                    image = ImageOps.exif_transpose(image)
                pixels = _to_uint8(image)
    except DecodeError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:  # Pillow's own, larger limit
        raise DecodeError(f"declares too many pixels ({error}); above the limit of {policy.max_pixels:,} "
                          "(a decompression-bomb guard)") from None
    except UnidentifiedImageError as error:
        raise DecodeError(f"not a readable image ({type(error).__name__})") from None
    except (OSError, SyntaxError, ValueError) as error:
        raise DecodeError(f"truncated or corrupt ({error})") from None
    target = size if size is not None else (policy.max_side if max(pixels.shape[:2]) > policy.max_side else None)
    if target is not None:
        pixels = _resize_center_crop(pixels, target)
    return pixels.transpose(2, 0, 1).copy()  # (H, W, C) -> (C, H, W)


def _to_uint8(image: Image.Image) -> np.ndarray:
    """(H, W, 1) or (H, W, 3) uint8 under the policy above."""
    mode = image.mode
    if mode in _GRAY_MODES:
        if mode in ("1", "L"):
            array = np.asarray(image.convert("L"), dtype=np.uint8)
        else:
            wide = np.asarray(image, dtype=np.float64)
            array = np.clip(np.rint(wide / 257.0), 0, 255).astype(np.uint8)  # 65535 / 257 = 255
        return array[:, :, None]
    if mode in ("LA", "RGBA", "PA") or (mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        if mode == "LA":
            return np.asarray(Image.alpha_composite(background, rgba).convert("L"), dtype=np.uint8)[:, :, None]
        return np.asarray(Image.alpha_composite(background, rgba).convert("RGB"), dtype=np.uint8)
    return np.asarray(image.convert("RGB"), dtype=np.uint8)


def _resize_center_crop(pixels: np.ndarray, size: int) -> np.ndarray:
    height, width, channels = pixels.shape
    scale = size / min(height, width)
    new_w, new_h = max(size, round(width * scale)), max(size, round(height * scale))
    image = Image.fromarray(pixels[:, :, 0] if channels == 1 else pixels)
    image = image.resize((new_w, new_h), Image.Resampling.BILINEAR, reducing_gap=3.0)
    left, top = (new_w - size) // 2, (new_h - size) // 2
    array = np.asarray(image.crop((left, top, left + size, top + size)), dtype=np.uint8)
    return array[:, :, None] if array.ndim == 2 else array


def to_channels(pixels: np.ndarray, channels: int) -> np.ndarray:
    """(C, H, W) uint8 with C in {1, 3} -> `channels` (grayscale repeated; RGB to luma with ITU-R 601 weights)."""
    if pixels.shape[0] == channels:
        return pixels
    if channels == 3:
        return np.repeat(pixels, 3, axis=0)
    weights = np.array([299, 587, 114], dtype=np.uint32)[:, None, None]
    return ((pixels.astype(np.uint32) * weights).sum(0, keepdims=True) // 1000).astype(np.uint8)
