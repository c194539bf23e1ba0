"""Reader for the CIFAR-10/100 'python version' batches, from the official .tar.gz or its extracted folder.

The batches are pickles. Unpickling can run code, so a restricted unpickler admits only what a genuine batch
contains (dicts, lists, bytes, strings, numbers and numpy arrays); anything else is refused.
"""
from __future__ import annotations

import io
import pickle
import tarfile
from pathlib import Path

import numpy as np
import torch

from ..errors import DataError

_ALLOWED = {(module, name) for module in ("numpy.core.multiarray", "numpy._core.multiarray")
            for name in ("_reconstruct", "scalar")} | {("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")}


class _SafeUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):  # noqa: ANN201 (pickle's signature)
        if (module, name) in _ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"{module}.{name} is not allowed in a CIFAR batch")


def _unpickle(data: bytes, name: str) -> dict:
    try:
        batch = _SafeUnpickler(io.BytesIO(data), encoding="latin1").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as error:
        raise DataError(f"{name} is not a valid CIFAR batch ({error}); delete it and obtain it again") from None
    if not isinstance(batch, dict):
        raise DataError(f"{name} is not a valid CIFAR batch (not a dict)")
    return batch


def _batch_tensors(batch: dict, name: str, label_key: str, num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(images uint8 (N, 3, 32, 32), labels int64 (N,)) of one batch, every value checked: a hand-made or damaged
    batch is refused naming the file, not trained on with wrapped pixels or labels that index no class."""
    data = np.asarray(batch.get("data"))
    labels = batch.get(label_key)
    if data.ndim != 2 or data.shape[1] != 3072 or not isinstance(labels, (list, np.ndarray)) or len(labels) != len(data):
        raise DataError(f"{name} has data of shape {data.shape} and {len(labels) if isinstance(labels, (list, np.ndarray)) else 0} "
                        "labels; expected (N, 3072) and N labels: the file is corrupt")
    if data.dtype != np.uint8 and not (np.issubdtype(data.dtype, np.integer) and data.size and 0 <= data.min()
                                       and data.max() <= 255):
        raise DataError(f"{name} holds pixel values that are not whole numbers from 0 to 255 ({data.dtype}); the "
                        "file is corrupt or not a CIFAR batch")
    label_array = np.asarray(labels)
    if not (np.issubdtype(label_array.dtype, np.integer) and label_array.dtype != np.bool_):
        raise DataError(f"{name} holds labels that are not whole numbers ({label_array.dtype}, e.g. "
                        f"{label_array.flat[0]!r}); the file is corrupt or not a CIFAR batch")
    if len(label_array) and not (0 <= label_array.min() and label_array.max() < num_classes):
        raise DataError(f"{name} holds labels from {label_array.min()} to {label_array.max()}, but its meta file names "
                        f"{num_classes} classes (labels 0 to {num_classes - 1}); the file is corrupt")
    images = torch.from_numpy(data.astype(np.uint8).reshape(-1, 3, 32, 32).copy())  # (N, 3, 32, 32) uint8
    return images, torch.as_tensor(label_array, dtype=torch.int64)


def read_cifar(source: Path, *, variant: str) -> dict[str, tuple[torch.Tensor, torch.Tensor, list[str]]]:
    """{'train': (images, labels, classes), 'test': ...} from `cifar-10-python.tar.gz` or `cifar-10-batches-py/`.

    variant: "cifar10" or "cifar100" (fine labels).
    """
    if variant == "cifar10":
        splits = {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}
        meta_name, names_key, label_key = "batches.meta", "label_names", "labels"
    else:
        splits = {"train": ["train"], "test": ["test"]}
        meta_name, names_key, label_key = "meta", "fine_label_names", "fine_labels"
    files = _read_members(source, [meta_name] + [m for names in splits.values() for m in names])
    classes = _unpickle(files[meta_name], meta_name).get(names_key)
    if not isinstance(classes, list) or not classes or not all(isinstance(c, str) and c.strip() for c in classes):
        raise DataError(f"{source}:{meta_name} has no list of class names under {names_key!r}; the file is corrupt or "
                        "not the CIFAR python version")
    result = {}
    for split, members in splits.items():
        parts = [_batch_tensors(_unpickle(files[m], f"{source}:{m}"), f"{source}:{m}", label_key, len(classes))
                 for m in members]
        result[split] = (torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts]), classes)
    return result


def _read_members(source: Path, names: list[str]) -> dict[str, bytes]:
    """Read the named batch files straight out of the tarball (nothing is extracted) or from the folder."""
    if source.is_dir():
        missing = [n for n in names if not (source / n).is_file()]
        if missing:
            raise DataError(f"{source} lacks {', '.join(missing)}; it should be the extracted CIFAR python folder")
        return {n: (source / n).read_bytes() for n in names}
    found: dict[str, bytes] = {}
    try:
        with tarfile.open(source) as tar:
            for member in tar:
                base = member.name.rsplit("/", 1)[-1]
                if base in names and member.isfile():
                    found[base] = tar.extractfile(member).read()
    except (tarfile.TarError, EOFError, OSError, ValueError) as error:
        raise DataError(f"{source} is truncated or not a CIFAR tar.gz ({error}); delete it and obtain it again") from None
    missing = [n for n in names if n not in found]
    if missing:
        raise DataError(f"{source} lacks {', '.join(missing)}: it is truncated or not the CIFAR python version")
    return found
