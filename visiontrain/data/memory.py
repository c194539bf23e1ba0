"""Data handed over from Python: a torch Dataset of (image, label) or tensors, converted once into ImageTensors.

    from_python(my_dataset, ...)                      # items (PIL image | uint8/float tensor | array, int label)
    from_python((images, labels), ...)                # uint8 (N, C, H, W), or float in [0, 1]; labels (N,)
    from_python({"train": ..., "test": ...}, ...)     # named splits (val: carved from train when absent)

What visiontrain trains on is always uint8 (N, C, H, W) in memory (the augmentation, the loader and the cache all
work on it), so the items are read once, here, and never again: a Dataset's transforms run once, not per epoch
(visiontrain augments by itself). What cannot become that (images of different sizes, labels that are not class
indices, more than MAX_BYTES of pixels) is refused in one sentence before anything trains.

Such a run's config names its data `python/<ClassName>`: a name that validates but cannot be read again, so
`eval` or `--resume` from the CLI says how to do it from Python instead, and the run folder keeps a few test
images (samples.pt) that `export` verifies the exported model on.
"""
from __future__ import annotations

import hashlib
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .._io import atomic_torch_save
from .._registry import DATASETS
from ..errors import DataError
from .dataset import Dataset, _convert_channels
from .decode import DecodePolicy
from .registry import DatasetSource, channel_stats
from .tensors import ImageTensors, stratified_split

PYTHON_PREFIX = "python/"
MAX_BYTES = 4 << 30  # uint8 pixels held in memory from Python; larger data belongs in an image folder (memmap cache)
SAMPLE_IMAGES = 64  # the test images a run keeps for export's verification (export/verify.py takes up to 64)
SPLITS = ("train", "val", "test")


def python_dataset_name(data: Any) -> str:
    """The config's `dataset` for data from Python: python/<the Dataset's class name>, or python/tensors."""
    if isinstance(data, dict):
        data = data.get("train")
    label = "tensors" if _is_tensor_pair(data) else type(data).__name__
    return PYTHON_PREFIX + ("".join(c if c.isalnum() or c in "-_." else "-" for c in label).strip("-.") or "data")


def from_python(data: Any, *, name: str, val_fraction: float = 0.1, seed: int = 0, image_size: int | None = None,
                channels: int | None = None) -> Dataset:
    """A visiontrain Dataset from a torch Dataset, an (images, labels) pair, or a dict of those per split."""
    start = time.perf_counter()
    parts = dict(data) if isinstance(data, dict) else {"train": data}
    classes = parts.pop("classes", None)
    unknown = sorted(set(parts) - set(SPLITS))
    if unknown or "train" not in parts:
        raise DataError(f"data: a dict of splits needs a 'train' entry and may have 'val', 'test' and 'classes'; "
                        f"got {', '.join(map(repr, sorted(parts)))}")
    named_by = "given" if classes is not None else "the dataset's classes attribute" \
        if _classes_attribute(parts["train"]) is not None else "the label numbers"
    classes = classes if classes is not None else _classes_attribute(parts["train"])
    converted = {split: _convert(parts[split], split) for split in SPLITS if parts.get(split) is not None}
    count = len(classes) if classes is not None else 1 + max(int(labels.max()) for _, labels, _ in converted.values()
                                                               if len(labels))
    classes = [str(c) for c in classes] if classes is not None else [str(k) for k in range(count)]
    splits = {}
    for split, (images, labels, kind) in converted.items():
        if len(labels) and int(labels.max()) >= len(classes):
            raise DataError(f"data: the {split} labels go up to {int(labels.max())}, but there are {len(classes)} "
                            f"classes ({', '.join(classes[:5])}{', ...' if len(classes) > 5 else ''}); labels must be "
                            "class indices from 0")
        splits[split] = _resized(ImageTensors(images, labels, classes), image_size, channels)
    shapes = {split: tuple(t.images.shape[1:]) for split, t in splits.items()}
    if len(set(shapes.values())) > 1:
        raise DataError(f"data: the splits' images differ in size ({', '.join(f'{s} {_shape(v)}' for s, v in shapes.items())}); "
                        "give image_size (and channels) to bring them to one")
    train, val, test = splits["train"], splits.get("val"), splits.get("test")
    val_source = "dataset" if val is not None else "none"
    if val is None and val_fraction > 0:
        kept, held = stratified_split(train.labels, val_fraction, seed)
        if len(held):
            train, val, val_source = train.subset(kept), train.subset(held), "train"
    mean, std = channel_stats(train.images)
    digests = "".join(t.fingerprint() for t in (train, val, test) if t is not None)
    origin = {"from": "python", "splits": {split: kind for split, (_, _, kind) in converted.items()},
              "class_names": named_by}
    return Dataset(name=name.removeprefix(PYTHON_PREFIX), train=train, val=val, test=test, classes=classes,
                   mean=mean, std=std, allow_flip=True, pad_mode="reflect",
                   fingerprint=hashlib.sha256(digests.encode()).hexdigest(), decode_policy=DecodePolicy().to_dict(),
                   val_source=val_source, load_seconds=time.perf_counter() - start,
                   cache_status="converted in memory from Python", origin=origin)


# -- conversion ------------------------------------------------------------------------------------------------------
def _is_tensor_pair(data: Any) -> bool:
    return isinstance(data, (tuple, list)) and len(data) == 2 and isinstance(data[0], (torch.Tensor, np.ndarray))


def _classes_attribute(data: Any) -> list | None:
    """A torchvision-style `classes` list, also through Subset's `.dataset`."""
    while data is not None:
        classes = getattr(data, "classes", None)
        if isinstance(classes, (list, tuple)) and classes:
            return list(classes)
        data = getattr(data, "dataset", None)
    return None


def _convert(data: Any, split: str) -> tuple[torch.Tensor, torch.Tensor, str]:
    """(uint8 (N, C, H, W), int64 (N,), what it was) for one split."""
    if _is_tensor_pair(data):
        return _from_tensors(*data, split)
    if not (hasattr(data, "__getitem__") and hasattr(data, "__len__")):
        raise DataError(f"data: the {split} split is a {type(data).__name__}; give a torch Dataset of (image, label) "
                        "items, an (images, labels) pair of tensors, or an image folder's path")
    return _from_dataset(data, split)


def _from_tensors(images: Any, labels: Any, split: str) -> tuple[torch.Tensor, torch.Tensor, str]:
    images = torch.as_tensor(images)
    if images.ndim == 3:  # (N, H, W): gray
        images = images.unsqueeze(1)
    if images.ndim != 4 or images.shape[1] not in (1, 3):
        raise DataError(f"data: the {split} images have shape {tuple(images.shape)}; give (N, C, H, W) with C 1 or 3 "
                        "(or (N, H, W) for gray)")
    _check_size(len(images), tuple(images.shape[1:]), split)
    kind = f"tensors {str(images.dtype).removeprefix('torch.')} {tuple(images.shape)}"
    return _to_uint8(images, f"the {split} images"), _labels(labels, len(images), split), kind


def _from_dataset(dataset: Any, split: str) -> tuple[torch.Tensor, torch.Tensor, str]:
    count = len(dataset)
    if count == 0:
        raise DataError(f"data: the {split} dataset ({type(dataset).__name__}) is empty")
    first, first_kind, first_label = _item(dataset, 0, split)
    _check_size(count, tuple(first.shape), split)
    images = torch.empty((count, *first.shape), dtype=torch.uint8)
    labels = []
    for index in range(count):  # each item read once: a Dataset's transforms run once
        pixels, _, label = (first, first_kind, first_label) if index == 0 else _item(dataset, index, split)
        if pixels.shape != first.shape:
            raise DataError(f"data: {split} item {index} is {_shape(pixels.shape)} but item 0 is {_shape(first.shape)}; "
                            "every image must have the same size (resize them in the Dataset, e.g. with "
                            "torchvision.transforms.Resize and CenterCrop)")
        images[index] = pixels
        labels.append(label)
    kind = f"{type(dataset).__module__}.{type(dataset).__qualname__} of {count} items ({first_kind})"
    return images, torch.tensor(labels, dtype=torch.int64), kind


def _item(dataset: Any, index: int, split: str) -> tuple[torch.Tensor, str, int]:
    """(uint8 (C, H, W), what the image was, the label) of one item."""
    item = dataset[index]
    if not isinstance(item, (tuple, list)) or len(item) < 2:
        raise DataError(f"data: {split} item {index} is a {type(item).__name__}; a Dataset must give (image, label) "
                        "pairs")
    pixels, kind = _pixels(item[0], f"{split} item {index}")
    return pixels, kind, _label(item[1], index, split)


def _pixels(image: Any, where: str) -> tuple[torch.Tensor, str]:
    """uint8 (C, H, W) of one image: a PIL image, a (C, H, W) / (H, W) tensor, or an (H, W, C) / (H, W) array."""
    try:
        from PIL import Image
    except ImportError:  # Pillow is a dependency; this only keeps the message honest
        Image = None  # noqa: N806
    if Image is not None and isinstance(image, Image.Image):
        mode = image.mode
        if mode in ("I", "I;16", "I;16B", "F"):
            raise DataError(f"data: {where} is a {mode} (16-bit or float) PIL image; convert it to 8-bit ('L' or "
                            "'RGB') in the Dataset")
        image = image.convert("L" if mode in ("1", "L", "LA") else "RGB")
        array = np.asarray(image)
        pixels = torch.from_numpy(array.copy()).unsqueeze(0) if array.ndim == 2 else \
            torch.from_numpy(array.copy()).permute(2, 0, 1)
        return pixels.contiguous(), f"PIL images, mode {mode}"
    if isinstance(image, np.ndarray):
        tensor = torch.from_numpy(np.ascontiguousarray(image))
        tensor = tensor.permute(2, 0, 1) if tensor.ndim == 3 else tensor  # numpy is (H, W, C), as PIL gives it
        kind = "numpy arrays (H, W, C)"
    elif isinstance(image, torch.Tensor):
        tensor, kind = image, f"{str(image.dtype).removeprefix('torch.')} tensors (C, H, W)"
    else:
        raise DataError(f"data: {where}'s image is a {type(image).__name__}; give a PIL image, a (C, H, W) tensor "
                        "(uint8, or float in [0, 1]) or an (H, W, C) numpy array")
    if tensor.ndim == 2:
        tensor = tensor.unsqueeze(0)
    if tensor.ndim != 3 or tensor.shape[0] not in (1, 3):
        raise DataError(f"data: {where}'s image has shape {tuple(image.shape)}; give 1 or 3 channels, (C, H, W) for "
                        "a tensor or (H, W, C) for a numpy array")
    return _to_uint8(tensor, where).contiguous(), kind


def _to_uint8(images: torch.Tensor, where: str) -> torch.Tensor:
    if images.dtype == torch.uint8:
        return images
    if not images.dtype.is_floating_point:
        raise DataError(f"data: {where} are {str(images.dtype).removeprefix('torch.')}; give uint8 (0..255) or "
                        "float in [0, 1]")
    if len(images) and (images.min() < 0 or images.max() > 1):
        raise DataError(f"data: {where} are floats from {float(images.min()):.3g} to {float(images.max()):.3g}; "
                        "give them in [0, 1] (before any normalisation: visiontrain normalises by itself)")
    out = torch.empty(images.shape, dtype=torch.uint8)
    step = max(1, (64 << 20) // max(1, math.prod(images.shape[1:])))  # chunks: no float copy of the whole set
    for start in range(0, len(images), step):
        out[start:start + step] = (images[start:start + step].float() * 255).round_().clamp_(0, 255).to(torch.uint8)
    return out


def _label(value: Any, index: int, split: str) -> int:
    if isinstance(value, torch.Tensor) and value.numel() == 1 and not value.dtype.is_floating_point:
        value = value.item()
    if isinstance(value, np.generic) and np.issubdtype(value.dtype, np.integer):
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise DataError(f"data: {split} item {index}'s label is {value!r} ({type(value).__name__}); labels must be "
                        "class indices, whole numbers from 0 (one-hot vectors and names: map them to indices)")
    return value


def _labels(labels: Any, count: int, split: str) -> torch.Tensor:
    labels = torch.as_tensor(labels)
    if labels.dtype.is_floating_point or labels.dtype == torch.bool or labels.is_complex():
        raise DataError(f"data: the {split} labels are {str(labels.dtype).removeprefix('torch.')}; labels must be "
                        "integer class indices from 0")
    if labels.shape != (count,):
        raise DataError(f"data: the {split} labels have shape {tuple(labels.shape)}, expected ({count},): one class "
                        "index per image")
    if count and int(labels.min()) < 0:
        raise DataError(f"data: a {split} label is {int(labels.min())}; labels must be class indices from 0")
    return labels.to(torch.int64)


def _check_size(count: int, shape: tuple[int, ...], split: str) -> None:
    size = count * math.prod(shape)
    if size > MAX_BYTES:
        raise DataError(f"data: the {split} split is {count:,} images of {_shape(shape)}, {size / 1e9:.1f} GB as uint8, "
                        f"more than the {MAX_BYTES / 1e9:.1f} GB visiontrain holds in memory from Python; write the "
                        "images to an image folder and pass its path instead (large folders are cached on disk)")


def _resized(tensors: ImageTensors, image_size: int | None, channels: int | None) -> ImageTensors:
    """As load_dataset does: the channels, then the side (bilinear, antialiased) the config asks for."""
    if channels is not None and tensors.images.shape[1] != channels:
        tensors.images = _convert_channels(tensors.images, channels)
    if image_size is not None and tuple(tensors.images.shape[-2:]) != (image_size, image_size):
        tensors.images = torch.nn.functional.interpolate(
            tensors.images.float(), size=(image_size, image_size), mode="bilinear", antialias=True
        ).round().clamp(0, 255).to(torch.uint8)
    return tensors


def _shape(shape: tuple[int, ...]) -> str:
    return "x".join(map(str, shape))


# -- what a run keeps, and the name that cannot be read again -------------------------------------------------------
def write_sample(path: Path, dataset: Dataset) -> None:
    """samples.pt: up to SAMPLE_IMAGES evenly spaced images of the test split (else val, else train), with their
    labels and the class names; tensors and lists only (plain torch.load(weights_only=True) opens it)."""
    split, tensors = next((s, t) for s, t in (("test", dataset.test), ("val", dataset.val), ("train", dataset.train))
                          if t is not None)
    indices = torch.linspace(0, len(tensors) - 1, min(SAMPLE_IMAGES, len(tensors))).round().long()
    atomic_torch_save(path, {"images": tensors.images[indices].clone(), "labels": tensors.labels[indices].clone(),
                             "classes": list(tensors.classes), "split": split})


def read_sample(path: Path) -> dict[str, Any]:
    return torch.load(path, map_location="cpu", weights_only=True)


def _unreadable(label: str) -> DatasetSource:
    def refuse(*_: Any, **__: Any) -> Any:
        raise DataError(f"dataset {PYTHON_PREFIX}{label} was passed to visiontrain.train() from Python and cannot be "
                        "read again here; do this from Python with the same data (a resume: visiontrain.train("
                        "resume=RUN, data=..., model=...)), or, for eval and export, give an image folder with the "
                        "same classes as --data")

    return DatasetSource(PYTHON_PREFIX + label, "data passed from Python", refuse, refuse)


DATASETS.register_prefix(PYTHON_PREFIX, _unreadable, "data passed to visiontrain.train(data=...) from Python")
