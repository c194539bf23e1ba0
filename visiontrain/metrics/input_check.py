"""Is an input like the training images? Cheap pixel statistics, with ranges learnt from the training split.

A classifier answers for every input, also for one unlike anything it was trained on: a digit drawn black on white,
given to a model trained on MNIST's white-on-black digits, came back "8 (0.77)". So `predict` compares each image
with the training split on a few statistics of its pixels and notes the ones far outside what training saw:

- the mean of each channel (brightness; for RGB also the colour cast),
- the standard deviation of each channel (contrast: a blank or washed-out image has almost none),
- the mean of the border, a frame of ~1/14 of the side (the background: black for MNIST, white for a scan of a
  drawing on paper, busy for a photo).

Why these and not the model's own features or its confidence: they need no forward pass (they work the same for
a run and an ONNX bundle, in numpy), the note can say in words what is unusual ("border brightness 251, training
images 0-12"), and they catch the common mistakes of a user (inverted or differently lit images, a photo given to
a model of scans, an empty image). They do not catch an image that has ordinary statistics but shows something the
model never learnt (a letter given to a digit model): no cheap statistic does, and the softmax confidence is known
to be a poor guard there (Hendrycks & Gimpel 2017), which is why the note does not pretend to.

The ranges: for each statistic, the 0.1% and 99.9% quantiles of (a sample of) the training images. An image's
score is how far its worst statistic lies outside its range, in units of the range's width; the threshold is the
99.5% quantile of the training images' own scores plus a margin of a quarter of the range, so about 0.5% or fewer
of the training images (and, measured, of the test images) are flagged. numpy only: an ONNX bundle needs no torch.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

TAIL = 0.001  # each statistic's range: its TAIL and 1 - TAIL quantiles over the training images
FLAGGED = 0.005  # the threshold lets this share of the training images' scores through ... 
MARGIN = 0.25  # ... plus this much of a range's width (0.1 flagged 1-2% of real test digits after 300-900 training images)
MIN_WIDTH = 8.0  # pixel levels: a statistic that is constant in training (MNIST's black border) still allows noise
SAMPLE = 20_000  # training images measured (evenly spaced); enough for 0.1% quantiles, fast on any split ...
SAMPLE_BYTES = 256 << 20  # ... but no more than this many bytes of pixels (1,783 images of 224x224 RGB)
VERSION = 1  # of the recorded dict; an unknown version is ignored, not misread


def border_width(side: int) -> int:
    return max(1, round(side / 14))  # 2 px at 28, 2 at 32, 16 at 224


def statistic_names(channels: int) -> list[str]:
    colours = ["brightness"] if channels == 1 else ["red mean", "green mean", "blue mean"]
    spreads = ["contrast"] if channels == 1 else ["red contrast", "green contrast", "blue contrast"]
    return colours + spreads + ["border brightness"]


def statistics(images: Any, chunk: int = 1 << 20) -> np.ndarray:
    """float64 (N, 2C + 1) for uint8 images (N, C, H, W: an array, or a tensor on any device): per-channel mean and
    std, then the border's mean, in pixel levels 0..255. From integer sums and sums of squares, a chunk of about
    `chunk` pixels at a time: a float64 copy of the whole batch took 52 s for 1,783 images of 224x224 RGB on 2 cores,
    this takes 1 s, and equal to 1e-13."""
    images = _as_numpy(images)
    step = max(1, chunk // max(1, math.prod(images.shape[1:])))
    return np.concatenate([_statistics(images[start:start + step]) for start in range(0, len(images), step)]) \
        if len(images) else np.zeros((0, 2 * images.shape[1] + 1))


def _statistics(images: np.ndarray) -> np.ndarray:
    batch, channels, height, width = images.shape
    flat = images.reshape(batch, channels, -1)
    pixels = flat.shape[2]
    sums = flat.sum(2, dtype=np.int64)
    as_float = flat.astype(np.float64)
    squares = np.einsum("ncp,ncp->nc", as_float, as_float)  # exact: integers far below 2**53
    mean = sums / pixels
    std = np.sqrt(np.maximum(squares / pixels - mean ** 2, 0.0))
    b = border_width(min(height, width))
    inner = images[:, :, b:height - b, b:width - b].reshape(batch, -1).sum(1, dtype=np.int64)
    border = (sums.sum(1) - inner) / (channels * (height * width - max(0, height - 2 * b) * max(0, width - 2 * b)))
    return np.concatenate([mean, std, border[:, None]], axis=1)


def ranges_sample(count: int, shape: tuple[int, ...], sample: int = SAMPLE) -> int:
    """How many of `count` training images of `shape` fit_ranges measures."""
    return min(count, sample, max(1000, SAMPLE_BYTES // max(1, math.prod(shape))))


def fit_ranges(images: Any, sample: int = SAMPLE) -> dict[str, Any]:
    """The training split's ranges, for a uint8 (N, C, H, W) array or tensor (a memory-mapped split too: only the
    sampled images are read, in chunks). What checkpoints and model.json record as `input_stats`."""
    count = len(images)
    indices = np.unique(np.linspace(0, count - 1, ranges_sample(count, tuple(images.shape[1:]), sample)).round()
                        .astype(np.int64))
    chunks = [_as_numpy(images[indices[start:start + 2048]]) for start in range(0, len(indices), 2048)]
    values = statistics(np.concatenate(chunks))
    low, high = np.quantile(values, TAIL, axis=0), np.quantile(values, 1 - TAIL, axis=0)
    width = np.maximum(high - low, MIN_WIDTH)
    scores = _scores(values, low, high, width)
    threshold = float(np.quantile(scores, 1 - FLAGGED)) + MARGIN
    return {"version": VERSION, "statistics": statistic_names(values.shape[1] // 2), "low": low.tolist(),
            "high": high.tolist(), "width": width.tolist(), "threshold": threshold, "images": int(len(values)),
            "flagged_in_training": float((scores > threshold).mean()),
            "method": "per-image channel mean, std and border mean against the training images' 0.1-99.9% ranges"}


def _as_numpy(images: Any) -> np.ndarray:
    return images.cpu().numpy() if hasattr(images, "numpy") else np.asarray(images)


def _scores(values: np.ndarray, low: np.ndarray, high: np.ndarray, width: np.ndarray) -> np.ndarray:
    """(N,) how far each image's worst statistic lies outside its range, in range widths (0: inside all)."""
    return (np.maximum(low - values, values - high).clip(min=0) / width).max(1)


def usable(ranges: Any, channels: int) -> bool:
    """Whether `ranges` (from a checkpoint or model.json) is a well-formed record for images of `channels`."""
    if not isinstance(ranges, dict) or ranges.get("version") != VERSION:
        return False
    size = 2 * channels + 1
    lists = [ranges.get(key) for key in ("low", "high", "width")]
    return (all(isinstance(v, list) and len(v) == size and all(_finite(x) for x in v) for v in lists)
            and all(w > 0 for w in ranges["width"]) and _finite(ranges.get("threshold")))


def _finite(value: Any) -> bool:
    return type(value) in (int, float) and math.isfinite(value)


def unfamiliar_notes(images: np.ndarray, ranges: dict[str, Any] | None) -> list[str]:
    """A note per uint8 (N, C, H, W) image: '' when it is like the training images, else what is unlike them, e.g.
    'unlike the training images (border brightness 251, training 0-12): the prediction may be meaningless'."""
    if ranges is None or not usable(ranges, np.asarray(images).shape[1]):
        return [""] * len(images)
    values = statistics(images)
    low, high, width = (np.asarray(ranges[key], dtype=np.float64) for key in ("low", "high", "width"))
    threshold = float(ranges["threshold"])
    excess = np.maximum(low - values, values - high).clip(min=0) / width  # (N, F)
    names = statistic_names(values.shape[1] // 2)
    notes = []
    for row, over in zip(values, excess):
        if over.max() <= threshold:
            notes.append("")
            continue
        worst = [i for i in np.argsort(-over, kind="stable") if over[i] > threshold][:2]
        detail = "; ".join(f"{names[i]} {row[i]:.0f}, training {low[i]:.0f}-{high[i]:.0f}" for i in worst)
        notes.append(f"unlike the training images ({detail}): the prediction may be meaningless")
    return notes
