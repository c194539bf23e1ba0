"""Datasets: a named dataset or an image folder loaded into splits, with what a model needs to know about them."""
from __future__ import annotations

import dataclasses
import hashlib
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..config import Config
from ..errors import DataError
from . import cache, memmap
from .classnames import display_names, read_class_names
from .decode import DecodePolicy
from .folder import check_bad_files, load_folder, median_short_side, missing_class_warnings, scan_folder
from .registry import DATASETS, channel_stats, source_files
from .splitfile import apply_split_file
from .tensors import ImageTensors, stratified_sample, stratified_split

__all__ = ["Dataset", "ImageTensors", "load_dataset", "load_dataset_of", "list_datasets", "DATASETS"]


@dataclass
class Dataset:
    """A dataset ready to train on: splits of uint8 tensors plus what the model needs to know about them."""

    name: str
    train: ImageTensors
    val: ImageTensors | None
    test: ImageTensors | None
    classes: list[str]
    mean: list[float]  # per channel, 0..1 units, from the training split
    std: list[float]
    allow_flip: bool
    pad_mode: str
    fingerprint: str  # SHA-256 of the decoded training + test pixels and labels
    decode_policy: dict
    bad_files: list[tuple[str, str]] = field(default_factory=list)
    val_source: str = "dataset"  # 'dataset' (its own val split), 'train' (carved from train), 'split_file' or 'none'
    root: str | None = None  # an image folder's root (the paths in split files are relative to it)
    split_info: dict | None = None  # the split file used, and what it left out or found changed (summary.json)
    load_seconds: float = 0.0
    cache_status: str = ""
    storage: str = "memory"  # 'memory' (tensors) or 'memmap' (MappedImages of a folder cached on disk: data/memmap.py)
    class_folders: list[str] | None = None  # the class folder names when `classes` are display names (--class-names)
    source: list[str] = field(default_factory=list)  # what was read: a named dataset's files (IDX files, a CIFAR
    # archive or folder), or an image folder's root; absolute paths (summary.json; eject reads the same files)
    ignored_files: list[tuple[str, str]] = field(default_factory=list)  # (path, reason): an image folder's entries
    # left out on purpose (hidden, __MACOSX, not an image extension, outside any class folder)
    problems: list[str] = field(default_factory=list)  # what would stop training (a lenient load: `visiontrain data`)
    warnings: list[str] = field(default_factory=list)  # printed while loading: link loops, classes a split lacks...
    subset: dict | None = None  # --fraction / --limit: what was kept of each split (subsample), in summary.json
    origin: dict | None = None  # data handed over from Python (data/memory.py): what it was, for summary.json

    @property
    def in_channels(self) -> int:
        return self.train.images.shape[1]

    def describe(self) -> dict:
        """What summary.json records of the data a run read (paths as text, counts, where it came from)."""
        return {"name": self.name, "fingerprint": self.fingerprint, "classes": self.classes,
                "train": len(self.train), "val": len(self.val) if self.val is not None else 0,
                "val_source": self.val_source, "test": len(self.test) if self.test is not None else 0,
                "image_size": self.image_size, "channels": self.in_channels, "mean": self.mean, "std": self.std,
                "bad_files": len(self.bad_files), "skipped_files": [path for path, _ in self.bad_files],
                "ignored": len(self.ignored_files),  # hidden, __MACOSX, not an image...: said, not silent
                "ignored_files": self.ignored_files[:100], "load_seconds": self.load_seconds,
                "cache": self.cache_status, "storage": self.storage, "split_file": self.split_info,
                "source": self.source, "class_folders": self.class_folders, "subset": self.subset} | (
                    {"origin": self.origin} if self.origin is not None else {})

    @property
    def image_size(self) -> int:
        return self.train.images.shape[-1]


def list_datasets() -> list[str]:
    return DATASETS.names()


def flip_and_border(dataset: str) -> tuple[bool, str]:
    """(allow_flip, pad_mode) of a dataset name or image folder: a named dataset says (digits are never mirrored,
    the MNIST family pads black); an image folder may be mirrored and pads by reflection."""
    if dataset in DATASETS:
        source = DATASETS.get(dataset)
        return source.allow_flip, source.pad_mode
    return True, "reflect"


def _entry_from_splits(splits: dict[str, ImageTensors], bad: list) -> dict:
    entry: dict = {"classes": splits["train"].classes, "bad_files": [list(b) for b in bad]}
    for split, tensors in splits.items():
        entry[f"{split}_images"] = tensors.images
        entry[f"{split}_labels"] = tensors.labels
        entry[f"{split}_sources"] = tensors.sources
    entry["mean"], entry["std"] = channel_stats(splits["train"].images)
    fingerprint = "".join(splits[s].fingerprint() for s in ("train", "val", "test") if s in splits)
    entry["fingerprint"] = fingerprint if len(splits) == 1 else hashlib.sha256(fingerprint.encode()).hexdigest()
    return entry


def load_dataset(dataset: str, *, data_dir: str | None = None, val_fraction: float = 0.1, seed: int = 0,
                 image_size: int | None = None, channels: int | None = None, skip_bad: bool = False,
                 policy: DecodePolicy | None = None, verbose: bool = True,
                 split_file: str | Path | None = None, class_names: str | Path | None = None,
                 lenient: bool = False) -> Dataset:
    """Load a named dataset or an image folder (decoded tensors come from the cache after the first time).

    When the dataset has no validation split, a seeded, stratified `val_fraction` of train is held out.
    `split_file` (image folders only) assigns every image to train/val/test as that split.csv says instead.
    `class_names` (data/classnames.py) renames the classes for display once the splits are built; folder names stay
    what splits, split files and the cache match by. `lenient` (`visiontrain data`) loads an image folder that
    training would refuse (an empty class folder, a class only val/ has...) and lists why in Dataset.problems.
    """
    start = time.perf_counter()
    scan, warned = None, []

    def warn(text: str) -> None:
        warned.append(text)
        print(f"visiontrain: warning: {text}", file=sys.stderr)

    mapping = read_class_names(class_names) if class_names is not None else None  # malformed: fails before decoding
    policy = policy or DecodePolicy()
    data_path = Path(data_dir).expanduser() if data_dir else None
    if dataset in DATASETS:
        source = DATASETS.get(dataset)
        name, (allow_flip, pad_mode) = dataset, flip_and_border(dataset)
        found = source.find(data_path)
        files, source_paths = source_files(found), [str(path.resolve()) for path in found]
        build = lambda: _entry_from_splits(*source.read(data_path, policy))  # noqa: E731
    else:
        root = Path(dataset).expanduser()
        if not root.is_dir():
            raise DataError(f"dataset {dataset!r} is neither a known name ({', '.join(DATASETS.names())}) nor a folder")
        name, (allow_flip, pad_mode) = root.resolve().name, flip_and_border(dataset)
        scan = scan_folder(root, lenient=lenient)  # refuses a folder training cannot use, before any decoding
        for warning in scan.warnings:  # on every load: a loop in the folder is news even when the cache is warm
            warn(f"{name}: {warning}")
        files, source_paths = scan.image_files(), [str(root.resolve())]

        def build() -> dict:
            splits, bad, _ = load_folder(root, policy=policy, image_size=image_size, channels=channels,
                                         skip_bad=skip_bad, scan=scan)
            return _entry_from_splits(splits, bad)
    # A named dataset's entry holds its images as stored (split() below resizes them on loading), so the size and
    # channels asked for are no part of its key: eval, a run at another --image-size, all share one entry
    key = {"dataset": str(dataset), "files": cache.files_key(files), "policy": policy.to_dict(), "skip_bad": skip_bad}
    if scan is not None:  # an image folder is decoded straight to the size and channels asked for
        key |= {"image_size": image_size, "channels": channels}
        key["classes"] = scan.classes  # an empty class folder changes the classes, not the files
        key["pixels"] = "decoded at the side"  # each file decoded straight to the side (predict's call), not resized
    storage = "memmap" if dataset not in DATASETS and memmap.wanted(files, image_size, channels, policy) else "memory"
    if storage == "memmap":  # larger than memory: decoded into a file on disk that is mapped, not loaded
        entry, status = memmap.cached(_safe_name(name), key, root=root, policy=policy, image_size=image_size,
                                      channels=channels, skip_bad=skip_bad, verbose=verbose, scan=scan)
    else:
        if verbose and not _cache_exists_hint(name):
            print(f"visiontrain: decoding {name} once (later runs load it from the cache)", file=sys.stderr)
        entry, status = cache.cached(_safe_name(name), key, build)
    classes = list(entry["classes"])
    bad_files = [tuple(b) for b in entry["bad_files"]]
    if scan is not None:  # entries the scan could not use are listed afresh on every load, with the undecodable ones
        bad_files = scan.bad + bad_files
        check_bad_files(bad_files, root, skip_bad)

    def split(prefix: str) -> ImageTensors | None:
        if f"{prefix}_images" not in entry:
            return None
        tensors = ImageTensors(entry[f"{prefix}_images"], entry[f"{prefix}_labels"], classes, entry.get(f"{prefix}_sources"))
        if channels is not None and tensors.images.shape[1] != channels:
            tensors.images = _convert_channels(tensors.images, channels)
        if image_size is not None and tensors.images.shape[-1] != image_size:
            tensors.images = torch.nn.functional.interpolate(tensors.images.float(), size=(image_size, image_size),
                                                             mode="bilinear", antialias=True).round().clamp(0, 255).to(torch.uint8)
        return tensors

    train, val, test = split("train"), split("val"), split("test")
    val_source = "dataset" if val is not None else "none"
    split_info, origins = None, {}
    if split_file is not None:
        if train.sources is None:
            raise DataError(f"split file {split_file}: the dataset {name} has no file paths; split files are for "
                            "image folders")
        decoded = [t for t in (train, val, test) if t is not None]
        splits, split_info, warnings = apply_split_file(split_file, root, decoded, entry["bad_files"])
        for warning in warnings:
            warn(warning)
        train, val, test = splits["train"], splits["val"], splits["test"]
        val_source = "split_file" if val is not None else "none"
        origins = dict.fromkeys(("val", "test"), f"as the split file {split_file} assigns it")
    elif val is None and val_fraction > 0:
        kept, held = stratified_split(train.labels, val_fraction, seed)
        if len(held):
            train, val, val_source = train.subset(kept), train.subset(held), "train"
            origins["val"] = "carved from train: a class needs 2 or more images to have one held out"
        else:
            warn(f"{name}: no class has 2 or more training images, so no validation split could be held out; the "
                 "model of the last epoch is kept")
    for warning in missing_class_warnings({"val": val, "test": test}, name, origins):
        warn(warning)
    mean, std = entry["mean"], entry["std"]
    if channels is not None and len(mean) != channels:
        mean, std = channel_stats(train.images)
    folders = None
    if mapping is not None:  # display names, after split matching (which is by folder name)
        folders, (classes, warnings) = classes, display_names(classes, mapping, class_names)
        for warning in warnings:
            warn(warning)
        for tensors in (train, val, test):
            if tensors is not None:
                tensors.classes = classes
    return Dataset(name=name, train=train, val=val, test=test, classes=classes, mean=mean, std=std,
                   allow_flip=allow_flip, pad_mode=pad_mode, fingerprint=entry["fingerprint"],
                   decode_policy=policy.to_dict(), bad_files=bad_files,
                   ignored_files=scan.ignored if scan is not None else [], problems=scan.problems if scan else [],
                   warnings=warned,
                   val_source=val_source, load_seconds=time.perf_counter() - start, cache_status=status,
                   storage=storage, class_folders=folders, source=source_paths,
                   root=None if dataset in DATASETS else str(root), split_info=split_info)


def load_dataset_of(config: Config, *, split_file: str | Path | None = None, verbose: bool = True) -> Dataset:
    """The dataset a config names, read as training reads it; `split_file` (default: config.split_file) fixes an
    image folder's train/val/test (a run's own split.csv, for resume and eval)."""
    return load_dataset(config.dataset, data_dir=config.data_dir, val_fraction=config.val_fraction, seed=config.seed,
                        image_size=config.image_size, channels=config.channels, skip_bad=not config.strict,
                        policy=DecodePolicy(window=config.window), verbose=verbose,
                        split_file=split_file or config.split_file, class_names=config.class_names)


def subsample(dataset: Dataset, *, fraction: float = 1.0, limit: int | None = None, seed: int = 0) -> Dataset:
    """The dataset with a seeded, per-class (stratified) sample of its splits: `fraction` of train (val and test
    whole), then at most `limit` images of each of train, val and test (a quick try). Dataset.subset says what was
    kept of what; the dataset itself when nothing is left out."""
    if fraction >= 1 and limit is None:
        return dataset
    splits, kept = {}, {}
    for name in ("train", "val", "test"):
        tensors = getattr(dataset, name)
        if tensors is None:
            continue
        indices = stratified_sample(tensors.labels, fraction=fraction if name == "train" else 1.0, limit=limit,
                                    seed=seed)
        if len(indices) < len(tensors):
            splits[name] = tensors.subset(indices)
        kept[name] = {"kept": len(indices), "of": len(tensors)}
    subset = {"fraction": fraction, "limit": limit, "seed": seed, "stratified": True} | kept
    return dataclasses.replace(dataset, **splits, subset=subset)


def subset_note(subset: dict) -> str:
    """One line saying what a subset kept: 'training on 5,000 of 50,000 images (--fraction 0.1, ...)'."""
    flags = " ".join(f"--{k} {subset[k]}" for k in ("fraction", "limit") if subset[k] not in (None, 1.0))
    parts = [f"{verb} {subset[name]['kept']:,} of {subset[name]['of']:,}" for name, verb in
             (("train", "training on"), ("val", "validating on"), ("test", "testing on"))
             if name in subset and subset[name]["kept"] < subset[name]["of"]]
    if not parts:
        return f"{flags}: every split is that small already; all images are used"
    return ", ".join(parts) + f" images ({flags}: drawn per class with seed {subset['seed']})"


def _convert_channels(images: torch.Tensor, channels: int) -> torch.Tensor:
    if channels == 3:
        return images.expand(-1, 3, -1, -1).contiguous()
    weights = torch.tensor([299, 587, 114], dtype=torch.int32).view(1, 3, 1, 1)
    return ((images.to(torch.int32) * weights).sum(1, keepdim=True) // 1000).to(torch.uint8)


def _safe_name(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name)[:64]


def _cache_exists_hint(name: str) -> bool:
    folder = cache.home() / "cache"
    return folder.is_dir() and any(folder.glob(f"{_safe_name(name)}-*.pt"))


def typical_side(config: Config) -> int | None:
    """The side of the config's images before any is decoded: a named dataset's own (28 for the MNIST family, 32
    for CIFAR), an image folder's median short side from a sample of file headers; None when unknown (or the folder
    is unusable: loading it then says why)."""
    if config.dataset in DATASETS:
        return DATASETS.get(config.dataset).image_size
    try:
        scan = scan_folder(Path(config.dataset).expanduser())
    except DataError:  # loading the data says what is wrong with the folder, in one sentence
        return None
    return median_short_side([str(path) for path in scan.image_files()], DecodePolicy(window=config.window),
                             seed=config.seed)
