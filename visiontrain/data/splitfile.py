"""Split files: the train/val/test assignment of an image folder, written once, reused by later runs and `eval`.

`split.csv` has one row per image: `path` (relative to the dataset root, '/'-separated), `class` (the class
folder's name), `split` (train, val or test) and `sha1` (of the file's bytes when the split was written). A run
that carves its own validation split writes it into the run folder; `--split-file FILE` makes a run use exactly
the split in FILE, whatever the folder's own layout, and `eval RUN` uses the run's copy.

Reading a split file is strict where guessing would mix experiments and loud where it would not:
- a listed file that is not on disk stops the run (one sentence naming the file);
- an image on disk that the file does not list is left out, and reported (count and the first few);
- a listed file whose bytes changed since the split was written is reported by name (it is still used);
- classes are matched by name, and a row whose class differs from its file's class folder stops the run.
"""
from __future__ import annotations

import csv
import io
import os
import posixpath
from pathlib import Path
from typing import Any

import torch

from .._csv import csv_text, unguard
from .._io import atomic_write_bytes, atomic_write_text
from ..errors import DataError, RunError

from .integrity import file_digest
from .mapped import cat_images
from .tensors import ImageTensors

SPLIT_FILE_NAME = "split.csv"
COLUMNS = ("path", "class", "split", "sha1")
SPLITS = ("train", "val", "test")
SHOWN = 5  # file names quoted in a message; the rest are counted


def relative_path(source: str | Path, root: str | Path) -> str:
    """The '/'-separated path of `source` relative to the dataset root (the form split files hold)."""
    return Path(os.path.relpath(source, root)).as_posix()


def _listing(names: list[str]) -> str:
    shown = ", ".join(names[:SHOWN])
    return shown + (f" and {len(names) - SHOWN} more" if len(names) > SHOWN else "")


def write_split_file(path: str | Path, root: str | Path, splits: dict[str, ImageTensors | None],
                     classes: list[str] | None = None) -> int:
    """Write `path` (atomically) from the splits of an image folder; rows in split order, then image order.

    `classes` are the class folder names, index = label (default: each split's classes); they differ when the
    splits carry display names (--class-names), and the file always holds folder names.

    Returns the number of rows. The order matters: reading the file back gives the same tensors in the same
    order, so a run that reads its own split (resume, eval) sees exactly the batches it saw before.
    """
    rows = []
    for split in SPLITS:
        tensors = splits.get(split)
        if tensors is None:
            continue
        if tensors.sources is None:
            raise DataError(f"cannot write the split file {path}: the {split} split has no file paths")
        for source, label in zip(tensors.sources, tensors.labels.tolist()):
            sha1 = file_digest(Path(source), "sha1")
            rows.append([relative_path(source, root), (classes or tensors.classes)[label], split, sha1])
    atomic_write_text(path, csv_text(COLUMNS, rows))  # a class named '=...' stays text in a spreadsheet (_csv.py)
    return len(rows)


def read_split_file(path: str | Path) -> list[dict[str, Any]]:
    """Rows {path, class, split, sha1, line} of a split file; DataError naming the file (and line) if malformed."""
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8-sig")  # not read_text: its newline translation would turn a carriage
        # return inside a quoted file name into a line feed
    except (OSError, UnicodeDecodeError) as error:
        raise DataError(f"the split file {path} cannot be read ({getattr(error, 'strerror', None) or error})") from None
    reader = csv.DictReader(io.StringIO(text))
    try:
        header = [name.strip() for name in reader.fieldnames or []]
    except csv.Error as error:  # an over-long field, a NUL byte
        raise DataError(f"the split file {path}, line 1: not a valid CSV row ({error})") from None
    missing = [name for name in COLUMNS[:3] if name not in header]
    if missing:
        raise DataError(f"the split file {path} has no {', '.join(repr(m) for m in missing)} column; expected the "
                        f"columns {','.join(COLUMNS)} (sha1 may be empty)")
    reader.fieldnames = header
    rows, seen = [], {}
    try:
        for line, raw in enumerate(reader, start=2):
            values = {key: unguard(value or "") for key, value in raw.items() if key is not None}
            if not any(value.strip() for value in values.values()):
                continue
            exact, klass = values["path"], values["class"]  # as write_split_file wrote them (a name may end in a space)
            name = posixpath.normpath(exact.strip().replace("\\", "/")) if exact.strip() else ""  # hand-written
            split = values["split"].strip()
            if not name or not klass.strip():
                raise DataError(f"the split file {path}, line {line}: the path and class columns must not be empty")
            if split not in SPLITS:
                raise DataError(f"the split file {path}, line {line}: split {split!r} is not one of "
                                f"{', '.join(SPLITS)}")
            if exact in seen:
                raise DataError(f"the split file {path} lists {exact} twice (lines {seen[exact]} and {line}); "
                                "each image belongs to one split")
            seen[exact] = line
            rows.append({"path": exact, "loose_path": name, "class": klass, "split": split,
                         "sha1": values.get("sha1", "").strip().lower(), "line": line})
    except csv.Error as error:  # an over-long field, a NUL byte
        raise DataError(f"the split file {path}, line {reader.line_num + 1}: not a valid CSV row ({error})") from None
    if not rows:
        raise DataError(f"the split file {path} lists no images")
    return rows


def apply_split_file(path: str | Path, root: str | Path, decoded: list[ImageTensors],
                     bad_files: list[tuple[str, str]] = ()) -> tuple[dict[str, ImageTensors | None], dict, list[str]]:
    """Re-split the decoded images of an image folder (all its on-disk splits) as the split file says.

    Returns ({train, val, test: ImageTensors or None}, info for summary.json, warnings to show).
    Raises DataError when a listed file is missing, a class does not match its folder, or train would be empty.
    """
    path = Path(path)
    rows = read_split_file(path)
    classes = decoded[0].classes
    pool = ImageTensors(cat_images([t.images for t in decoded]), torch.cat([t.labels for t in decoded]), classes,
                        [s for t in decoded for s in t.sources])
    index = {relative_path(source, root): i for i, source in enumerate(pool.sources)}
    unreadable = {relative_path(p, root) for p, _ in bad_files}
    chosen: dict[str, list[int]] = {split: [] for split in SPLITS}
    missing, skipped, changed = [], [], []
    for row in rows:
        # the exact path first (what visiontrain wrote: a backslash or a trailing space is part of a name), then
        # the path as a hand-written file means it (spaces trimmed, Windows separators)
        i = index.get(row["path"], index.get(row["loose_path"]))
        if i is None:
            (skipped if row["path"] in unreadable or row["loose_path"] in unreadable else missing).append(row["path"])
            continue
        if row["class"] not in classes:
            row["class"] = row["class"].strip()
        if row["class"] not in classes:
            raise DataError(f"the split file {path}, line {row['line']}: class {row['class']!r} of {row['path']} is "
                            f"not a class folder of {root} ({_listing(classes)}); classes are matched by name")
        folder_class = classes[int(pool.labels[i])]
        if row["class"] != folder_class:
            raise DataError(f"the split file {path}, line {row['line']}: {row['path']} is listed as class "
                            f"{row['class']!r} but lies in the class folder {folder_class!r}; classes are matched by "
                            "name, so fix the class column or move the file")
        if row["sha1"] and file_digest(Path(pool.sources[i]), "sha1") != row["sha1"]:
            changed.append(row["path"])
        chosen[row["split"]].append(i)
    if missing:
        raise DataError(f"the split file {path} lists {len(missing)} file(s) that are not in {root}: "
                        f"{_listing(missing)}; restore them, or train without --split-file to carve a new split")
    if not chosen["train"]:
        raise DataError(f"the split file {path} puts no readable image in the train split")
    listed = {row["path"] for row in rows} | {row["loose_path"] for row in rows}
    unlisted = [name for name in index if name not in listed]
    splits = {split: pool.subset(torch.tensor(indices, dtype=torch.int64)) if indices else None
              for split, indices in chosen.items()}
    absent = [c for label, c in enumerate(classes) if not (splits["train"].labels == label).any()]
    if absent:
        raise DataError(f"the split file {path} puts no training image of class(es) {_listing(absent)}; every class "
                        "needs training images (move some rows to train, or remove the class folder)")
    warnings = []
    if unlisted:
        warnings.append(f"{len(unlisted)} image file(s) in {root} are not in the split file {path} and are left "
                        f"out: {_listing(unlisted)}; train without --split-file to carve a split that includes them")
    if changed:
        warnings.append(f"{len(changed)} file(s) changed since the split file {path} was written (their SHA-1 "
                        f"differs): {_listing(changed)}; they are used in their listed split")
    info = {"path": str(path), "sha256": file_digest(path, "sha256"), "rows": len(rows),
            "images": {split: len(indices) for split, indices in chosen.items()},
            "unlisted": len(unlisted), "unlisted_files": unlisted[:20], "changed_files": changed,
            "unreadable_files": skipped}
    return splits, info, warnings


def record_split(target: Path, dataset: Any) -> bool:
    """Write the run's split.csv once: a copy of the split file it used, or the split it carved itself.

    Returns True when written; False when the run needs none (the folder's own val/test, a named dataset) or
    `target` exists already (a resumed run keeps the split it started with).
    """
    if target.exists():
        return False
    try:
        if dataset.split_info is not None:
            atomic_write_bytes(target, Path(dataset.split_info["path"]).read_bytes())
            return True
        if dataset.val_source == "train" and dataset.root is not None and dataset.train.sources is not None:
            write_split_file(target, dataset.root, {"train": dataset.train, "val": dataset.val, "test": dataset.test},
                             getattr(dataset, "class_folders", None))
            return True
    except OSError as error:
        raise RunError(f"could not write the split file {target} ({error.strerror or error})") from None
    return False
