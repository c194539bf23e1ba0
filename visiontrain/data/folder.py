"""Image folders: `root/<class>/*` with `train/` and `val/` or `test/` sub-folders, or one folder of classes.

Classes are mapped by name from the training split (natural order: '2' before '10'), so a label means the
same class in every split. Every file is decoded up front, in worker processes; unreadable files are collected
and reported together, before any training starts.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..errors import DataError
from .decode import IMAGE_EXTENSIONS, PYDICOM_MISSING, DecodePolicy, has_dicom_magic, header_shape, to_channels
from .tensors import ImageTensors
from .walk import Walker
from .workers import POOL_MIN_FILES, WorkerPool, decode_many, decode_workers, probe_shapes

SPLIT_NAMES = {"train": ("train", "training"), "val": ("val", "valid", "validation"), "test": ("test", "testing")}
DEFAULT_MIXED_SIZE = 128  # cap on the side used when images differ in size and no image_size is given (the median short side below it)


@dataclass
class FolderScan:
    """What is on disk: per split, (path, class name) pairs; the class list comes from the training split."""

    root: Path
    splits: dict[str, list[tuple[Path, str]]]
    classes: list[str]
    ignored: list[tuple[str, str]] = field(default_factory=list)  # (path, reason): left out on purpose, reported
    warnings: list[str] = field(default_factory=list)  # link loops and folders linked twice (listed once)
    bad: list[tuple[str, str]] = field(default_factory=list)  # (path, reason): entries that cannot be read
    problems: list[str] = field(default_factory=list)  # what stops training, one sentence each (lenient scans)

    def image_files(self) -> list[Path]:
        return [path for items in self.splits.values() for path, _ in items]


def natural_key(name: str) -> list:
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


def _class_files(walker: Walker, folder: Path, ignored: list) -> list[Path]:
    files = []
    for path in walker.files_under(folder):
        if path.name.upper() == "DICOMDIR":
            ignored.append((str(path), "a DICOMDIR (the index of a DICOM folder), not an image"))
        elif path.suffix.lower() in IMAGE_EXTENSIONS or has_dicom_magic(path):  # DICOM files often lack one
            files.append(path)
        else:
            ignored.append((str(path), f"not an image file extension ({path.suffix or 'none'})"))
    return files


def scan_folder(root: Path, *, lenient: bool = False) -> FolderScan:
    """Find the splits and classes of an image folder, without decoding anything.

    Raises DataError, one sentence, for what stops training (no or one class folder, an empty class folder, a
    class folder that only val/ or test/ has, images beside the class folders of val/ or test/ with none, a
    class folder whose name is not UTF-8). With `lenient` (`visiontrain data`, which reports every problem in one
    pass) those are collected in `problems` and the rest of the folder is scanned as far as it can be; only a
    folder without any class folder is still refused.
    """
    root = root.expanduser()
    if not root.is_dir():
        raise DataError(f"{root} is not a folder; give a folder with one sub-folder per class")
    walker, ignored, problems, named = Walker(), [], [], []
    walker.enter(root)
    root_files, root_dirs = walker.listing(root)
    root_named = [p for p in walker.problems if p.folder and p.bad_name]  # class folders, when root is train/
    subdirs = {p.name.lower(): p for p in sorted(root_dirs, key=lambda p: natural_key(p.name))}
    split_dirs = {split: next((subdirs[a] for a in aliases if a in subdirs), None)
                  for split, aliases in SPLIT_NAMES.items()}
    if split_dirs["train"] is None:
        split_dirs = {"train": root, "val": None, "test": None}
    else:  # beside train/, val/ and test/ nothing has a split
        chosen = set(split_dirs.values())
        ignored.extend((str(p), "beside the split folders (train, val, test), so in no split") for p in root_dirs
                       if p not in chosen)
        ignored.extend((str(p), "beside the split folders (train, val, test), so in no split") for p in root_files)
    class_dirs: dict[str, dict[str, Path]] = {}
    for split, folder in split_dirs.items():
        if folder is None:
            continue
        before = len(walker.problems)
        files, dirs = (root_files, root_dirs) if folder == root else walker.listing(folder)
        named += root_named if folder == root else [p for p in walker.problems[before:] if p.folder and p.bad_name]
        class_dirs[split] = {p.name: p for p in sorted(dirs, key=lambda p: natural_key(p.name))}
        images = [p for p in files if p.suffix.lower() in IMAGE_EXTENSIONS]
        if images and not class_dirs[split] and folder != root:  # images directly in val/ or test/: no class
            problems.append(f"{folder} holds {len(images)} images but no class folders; sort them into "
                            f"{folder}/<class>/ (ImageNet's val: with the devkit's labels), or remove {folder.name}/ "
                            "to let visiontrain hold out part of train")
        else:
            ignored.extend((str(p), "outside any class folder (its class is unknown)") for p in files)
    problems[:0] = [f"the class folder {p.path} has a name that is not valid UTF-8 text; rename it (class names are "
                    "written into CSV, JSON and HTML files)" for p in named]
    classes = list(class_dirs["train"])
    if not classes:
        raise DataError(problems[0] if problems else f"{split_dirs['train']} has no class sub-folders; expected "
                        f"{split_dirs['train']}/<class>/image.jpg")
    splits: dict[str, list[tuple[Path, str]]] = {}
    for split, dirs in class_dirs.items():
        extra = [name for name in dirs if name not in classes]
        if extra:
            problems.append(f"{split_dirs[split]} has class folder(s) {', '.join(extra)} that the training split "
                            f"{split_dirs['train']} lacks; rename or remove them (labels are matched by name)")
        splits[split] = [(f, name) for name, d in dirs.items() if name in classes
                         for f in _class_files(walker, d, ignored)]
    empty = [c for c in classes if not any(name == c for _, name in splits["train"])]
    if empty:
        problems.append(f"class folder(s) {', '.join(empty)} in {split_dirs['train']} hold no images; "
                        "add images or remove the folder")
    if len(classes) < 2:
        problems.append(f"{split_dirs['train']} has only one class folder ({classes[0]}); a classifier needs at "
                        "least two")
    if problems and not lenient:
        raise DataError(problems[0])
    bad = [(p.path, p.reason) for p in walker.problems if not any(p is q for q in named)]
    return FolderScan(root, splits, classes, walker.ignored + ignored,
                      [f"{path}: {reason}" for path, reason in walker.repeats], bad, problems)


def missing_class_warnings(splits: dict[str, ImageTensors | None], name: str,
                           origins: dict[str, str] | None = None) -> list[str]:
    """One warning per val/test split that lacks images of some class (labels index the training split's classes).

    Checked on the final splits, so it covers a class folder missing from val/ or test/, a carved validation split
    (a class with one image has none held out) and a split file alike. `origins` says where a split came from.
    """
    warnings = []
    for split, tensors in splits.items():
        if tensors is None:
            continue
        present = set(tensors.labels.unique().tolist())
        missing = [c for label, c in enumerate(tensors.classes) if label not in present]
        if missing:
            origin = f" ({origins[split]})" if origins and split in origins else ""
            warnings.append(f"{name}: the {split} split{origin} has no images of class(es) {', '.join(missing)}; "
                            "their per-class metrics will show n=0")
    return warnings


def decode_files(paths: list[Path], policy: DecodePolicy, size: int | None, workers: int | None = None):
    """Decode in worker processes (Pillow holds the GIL for most of a decode: data/workers.py). Returns (arrays,
    errors)."""
    jobs = [(str(p), policy, size) for p in paths]
    workers = workers or decode_workers()
    if workers > 1 and len(jobs) > POOL_MIN_FILES:
        step = max(16, min(256, -(-len(jobs) // (4 * workers))))  # >= 4 chunks per worker: balance
        with WorkerPool(workers) as pool:
            results = [r for chunk in pool.map(decode_many, [jobs[i:i + step] for i in range(0, len(jobs), step)])
                       for r in chunk]
    else:
        results = decode_many(jobs)
    return [r[0] for r in results], [r[1] for r in results]


def load_folder(root: Path, *, policy: DecodePolicy, image_size: int | None, channels: int | None,
                skip_bad: bool, scan: FolderScan | None = None
                ) -> tuple[dict[str, ImageTensors], list[tuple[str, str]], list[str]]:
    """Decode every split of an image folder (as `scan` found it, else scanned here). Returns ({split:
    ImageTensors}, the files that could not be decoded, warnings).

    Raises DataError listing every unreadable file (path and reason: also the scan's dangling links, FIFOs and
    badly named entries) unless skip_bad.
    """
    scan = scan or scan_folder(root)
    # The side first, from the file headers, then every file decoded straight to it: the same decode_image(path,
    # policy, side) call that predict, explain and export make for one file, so the cached pixels are the pixels
    # those give (a resize after decoding would differ by rounding), and each decode is bounded by the side.
    files = [str(path) for items in scan.splits.values() for path, _ in items]
    _, side = folder_shape(files, policy, image_size, channels)
    decoded: dict[str, tuple[list, list[tuple[Path, str]]]] = {}
    bad: list[tuple[str, str]] = []
    for split, items in scan.splits.items():
        arrays, errors = decode_files([p for p, _ in items], policy, side)
        kept = [(a, item) for a, e, item in zip(arrays, errors, items) if e is None]
        bad += [(str(item[0]), e) for e, item in zip(errors, items) if e is not None]
        decoded[split] = ([a for a, _ in kept], [item for _, item in kept])
    check_bad_files(scan.bad + bad, root, skip_bad)
    all_arrays = [a for arrays, _ in decoded.values() for a in arrays]
    if not all_arrays:
        raise DataError(f"no readable images under {root}")
    if not decoded["train"][0]:
        raise DataError(f"no readable images in the training split of {root}")
    channels, _ = decoded_shape([a.shape for a in all_arrays], side, channels)  # gray only if every image is
    splits = {}
    for split, (arrays, items) in decoded.items():
        if not arrays:
            continue
        # numpy's stack: one copy per image; torch.stack of 3,000 small tensors took 46 s on a busy 2-core machine
        images = torch.from_numpy(np.stack([to_channels(a, channels) for a in arrays]))
        labels = torch.tensor([scan.classes.index(name) for _, name in items], dtype=torch.int64)
        splits[split] = ImageTensors(images, labels, scan.classes, [str(p) for p, _ in items])
    return splits, bad, scan.warnings


def check_bad_files(bad: list[tuple[str, str]], root: Path, skip_bad: bool) -> None:
    """Raise DataError naming every unreadable file (path: reason) unless skip_bad; shared by the in-memory and
    the memory-mapped cache (data/memmap.py), so both refuse the same folders with the same sentence."""
    needs_pydicom = [path for path, reason in bad if reason == PYDICOM_MISSING]
    if needs_pydicom:  # one sentence, not one per file; skipping would silently drop every DICOM file
        raise DataError(f"{len(needs_pydicom)} DICOM file(s) under {root} (such as {needs_pydicom[0]}) cannot be read: "
                        f"{PYDICOM_MISSING}")
    if bad and not skip_bad:
        listing = "; ".join(f"{path}: {reason}" for path, reason in bad)
        raise DataError(f"{len(bad)} unreadable image file(s) under {root}: {listing}. "
                        "Fix or delete them (visiontrain train lists and skips them unless --strict)")


def decoded_shape(shapes: list[tuple[int, ...]], image_size: int | None, channels: int | None) -> tuple[int, int]:
    """(channels, side) of the cached images, from the (C, H, W) shapes that decode_image returned for the readable
    files: all grayscale -> 1 channel; side = image_size, else the common short side, else the median one (capped)."""
    channels = channels or (1 if all(shape[0] == 1 for shape in shapes) else 3)
    short_sides = sorted(min(shape[1:]) for shape in shapes)
    uniform = short_sides[0] == short_sides[-1]
    side = image_size or (short_sides[0] if uniform else min(DEFAULT_MIXED_SIZE, short_sides[len(short_sides) // 2]))
    return channels, side


def folder_shape(files: list[str], policy: DecodePolicy, image_size: int | None, channels: int | None,
                 run: Callable = map, workers: int = 1) -> tuple[int, int]:
    """(channels, side) of a folder's cache from its file headers: image_size if given, else the common short side,
    else the median one (capped; decoded_shape). `run` maps probe_shapes over chunks (a process pool's map)."""
    if image_size is not None and channels is not None:
        return channels, image_size
    step = max(64, -(-len(files) // (8 * workers)))
    shapes = [shape for chunk in run(probe_shapes, [(files[i:i + step], policy) for i in range(0, len(files), step)])
              for shape in chunk]
    return decoded_shape(shapes, image_size, channels) if shapes else (channels or 3, image_size or policy.max_side)


def median_short_side(files: list[str], policy: DecodePolicy, sample: int = 512, seed: int = 0) -> int | None:
    """The median short side of what decode_image gives without a size (so at most policy.max_side) for a seeded
    sample of `sample` files, read from their headers alone; None when no header can be read. A pretrained run
    chooses its input size from this before anything is decoded (a 1.28 M-file folder costs 512 header reads)."""
    order = np.random.default_rng(seed).permutation(len(files))[:sample] if len(files) > sample else range(len(files))
    sides = sorted(short for index in order if (shape := header_shape(files[index], policy)) is not None
                   for _, short in [shape])
    return sides[len(sides) // 2] if sides else None
