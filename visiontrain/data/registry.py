"""Named datasets. Each entry says where its files may be and how to read them: find -> check -> read.

Files are looked for in this order: an explicit data_dir; visiontrain's home (~/.cache/visiontrain/<name>,
or $VISIONTRAIN_HOME/<name>); system copies (Debian's dataset-fashion-mnist package); then a download from the
official source, verified against its checksum ($VISIONTRAIN_DATASET_MIRROR replaces the base URL).
"""
from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from .. import _registry as _registries
from ..errors import DataError
from . import cache
from .cifar import read_cifar
from .decode import DecodePolicy
from .folder import load_folder
from .idx import read_idx_pair
from .integrity import download, file_digest, safe_extract_tar
from .tensors import ImageTensors


@dataclass(frozen=True)
class DatasetSource:
    name: str
    description: str
    read: Callable[[Path | None, DecodePolicy], tuple[dict[str, ImageTensors], list[tuple[str, str]]]]
    find: Callable[..., list[Path]]  # find(data_dir, may_download=True): the source files (the cache key)
    allow_flip: bool = True  # digits must not be mirrored
    pad_mode: str = "reflect"  # how translate augmentation fills the border: 'constant' (black) or 'reflect'
    image_size: int | None = None  # the images' side, known before reading them (a pretrained run's size choice)


DATASETS = _registries.DATASETS  # name -> DatasetSource (the registry lives in _registry.py, which config reads)


def _candidate_dirs(name: str, data_dir: Path | None, system: tuple[str, ...] = ()) -> list[Path]:
    if data_dir is not None:
        return [data_dir, data_dir / name]  # explicit: never fall back to another copy silently
    return [cache.home() / name, *map(Path, system)]


def _mirror(base: str) -> str:
    return os.environ.get("VISIONTRAIN_DATASET_MIRROR", base).rstrip("/") + "/"


# -- the MNIST family (IDX files) ------------------------------------------------------------------------
_IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def _idx_source(name: str, description: str, classes: list[str], md5: dict[str, str], url: str,
                system: tuple[str, ...] = (), allow_flip: bool = True) -> None:
    def find(data_dir: Path | None, may_download: bool = True) -> list[Path]:
        for folder in _candidate_dirs(name, data_dir, system):
            found = [next((folder / f"{f}{ext}" for ext in (".gz", "") if (folder / f"{f}{ext}").is_file()), None)
                     for f in _IDX_FILES]
            if all(found):
                return found
        if not may_download:
            return []
        if data_dir is not None:
            raise DataError(f"data_dir {data_dir} does not hold the {name} IDX files "
                            f"({', '.join(f + '.gz' for f in _IDX_FILES)}); put them there or omit --data-dir")
        target = cache.home() / name
        return [download(_mirror(url) + f"{f}.gz", target / f"{f}.gz") for f in _IDX_FILES]

    def read(data_dir: Path | None, policy: DecodePolicy):
        train_images, train_labels, test_images, test_labels = find(data_dir)
        splits = {}
        for split, images_path, labels_path, prefix in (("train", train_images, train_labels, "train"),
                                                        ("test", test_images, test_labels, "t10k")):
            images, labels = read_idx_pair(images_path, labels_path, md5_images=md5[f"{prefix}-images"],
                                           md5_labels=md5[f"{prefix}-labels"])
            splits[split] = ImageTensors(images, labels, classes)
        return splits, []

    DATASETS.register(name)(DatasetSource(name, description, read, find, allow_flip, "constant", 28))


_idx_source(
    "mnist", "handwritten digits 0-9, 28x28 grayscale, 60,000 train + 10,000 test", [str(d) for d in range(10)],
    {"train-images": "6bbc9ace898e44ae57da46a324031adb", "train-labels": "a25bea736e30d166cdddb491f175f624",
     "t10k-images": "2646ac647ad5339dbf082846283269ea", "t10k-labels": "27ae3e4e09519cfbb04c329615203637"},
    "https://ossci-datasets.s3.amazonaws.com/mnist/", allow_flip=False)
_idx_source(
    "fashion-mnist", "Zalando clothing, 10 classes, 28x28 grayscale, 60,000 train + 10,000 test",
    ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"],
    {"train-images": "f4a8712d7a061bf5bd6d2ca38dc4d50a", "train-labels": "9018921c3c673c538a1fc5bad174d6f9",
     "t10k-images": "8181f5470baa50b63fa0f6fddb340f0a", "t10k-labels": "15d484375f8d13e6eb1aabb0c3f46965"},
    "https://github.com/zalandoresearch/fashion-mnist/raw/master/data/fashion/",
    system=("/usr/share/datasets/fashion-mnist",))


# -- CIFAR (python batches, or the JPEG image-folder copy) ------------------------------------------------
_CIFAR = {
    "cifar10": ("cifar-10-python.tar.gz", "cifar-10-batches-py", "c58f30108f718f92721af3b95e74349a",
                "cifar10-jpg", "075d700ab8e106bb94f0f1a54a7019bcd14947df90f91a0134a4ef325c97ffe5"),
    "cifar100": ("cifar-100-python.tar.gz", "cifar-100-python", "eb9058c3a382ffc7106e4002c42a8d85", None, None),
}


def _cifar_source(name: str, description: str) -> None:
    archive, folder, md5, jpg_folder, jpg_sha256 = _CIFAR[name]

    def find(data_dir: Path | None, may_download: bool = True) -> list[Path]:
        for base in _candidate_dirs(name, data_dir):
            for candidate in (base / folder, base / archive):
                if candidate.exists():
                    return [candidate]
            if jpg_folder and (base / jpg_folder / "train").is_dir():
                return [base / jpg_folder]
            if jpg_folder and (base / f"{jpg_folder}.tar.gz").is_file():  # the cache is keyed by the archive itself
                return [base / f"{jpg_folder}.tar.gz"]
        if not may_download:
            return []
        if data_dir is not None:
            raise DataError(f"data_dir {data_dir} holds neither {archive} nor {folder}/"
                            + (f" nor {jpg_folder}[.tar.gz]" if jpg_folder else "") + "; put the files there")
        target = cache.home() / name / archive
        return [download(_mirror("https://www.cs.toronto.edu/~kriz/") + archive, target, md5=md5)]

    def read(data_dir: Path | None, policy: DecodePolicy):
        (source,) = find(data_dir)
        if jpg_folder and source.name == f"{jpg_folder}.tar.gz":
            source = _extract_jpg_copy(source, jpg_sha256)
        if source.name == jpg_folder:
            splits, bad, _ = load_folder(source, policy=policy, image_size=None, channels=3, skip_bad=False)
            return splits, bad
        if source.is_file() and (actual := file_digest(source, "md5")) != md5:
            raise DataError(f"{source} fails its checksum (MD5 {actual}, expected {md5}); delete it and download again")
        return {split: ImageTensors(images, labels, classes)
                for split, (images, labels, classes) in read_cifar(source, variant=name).items()}, []

    DATASETS.register(name)(DatasetSource(name, description, read, find, True, "reflect", 32))


def _extract_jpg_copy(archive: Path, sha256: str) -> Path:
    """The JPEG-folder copy of CIFAR-10 ships as a tarball: verify it, extract it once into the cache (again when
    the extracted copy came from other bytes: `.complete` holds the archive's SHA-256). Only on a cache miss."""
    target = cache.home() / "cifar10-jpg-extracted"
    if (actual := file_digest(archive, "sha256")) != sha256:
        raise DataError(f"{archive} fails its checksum (SHA-256 {actual}, expected {sha256}); obtain it again")
    complete = target / ".complete"
    if (target / "cifar10-jpg" / "train").is_dir() and complete.is_file() and complete.read_text().strip() == sha256:
        return target / "cifar10-jpg"
    if target.exists():
        shutil.rmtree(target)
    safe_extract_tar(archive, target)
    complete.write_text(sha256 + "\n")
    return target / "cifar10-jpg"


_cifar_source("cifar10", "CIFAR-10: 10 classes of 32x32 colour photos, 50,000 train + 10,000 test")
_cifar_source("cifar100", "CIFAR-100: 100 classes of 32x32 colour photos, 50,000 train + 10,000 test")


def source_files(found: list[Path]) -> list[Path]:
    """Every file under what a source's find() returned (the cache key)."""
    files: list[Path] = []
    for path in found:
        files += cache.list_files(path) if path.is_dir() else [path]
    return files


def channel_stats(images: torch.Tensor) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of uint8 (N, C, H, W) images, in 0..1 units."""
    sample = images[:: max(1, len(images) // 10000)].double() / 255.0  # 10k images pin the stats to 1e-3
    return sample.mean((0, 2, 3)).tolist(), sample.std((0, 2, 3)).clamp_min(1e-3).tolist()
