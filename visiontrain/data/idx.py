"""Reader for the IDX format of MNIST and Fashion-MNIST (gzip-compressed or not)."""
from __future__ import annotations

import gzip
import hashlib
import zlib
from pathlib import Path

import numpy as np
import torch

from ..errors import DataError

_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx_bytes(path: Path) -> bytes:
    """The uncompressed bytes of an IDX file (`.gz` is detected by its magic, not its name)."""
    try:
        raw = path.read_bytes()
        return gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw
    except (OSError, EOFError, zlib.error, gzip.BadGzipFile) as error:
        raise DataError(f"{path} is truncated or not a valid gzip file ({error}); delete it and obtain it again") from None


def parse_idx(data: bytes, path: Path, md5: str | None = None) -> torch.Tensor:
    """Parse IDX bytes into a tensor, checking magic, shape and size (and MD5 of the uncompressed bytes if given)."""
    if md5 is not None and (actual := hashlib.md5(data).hexdigest()) != md5:
        raise DataError(f"{path} fails its checksum (MD5 of the uncompressed data is {actual}, expected {md5}); "
                        "the file is corrupt or a different dataset: delete it and obtain it again")
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _DTYPES:
        raise DataError(f"{path} is not an IDX file (bad magic number); is it the right file?")
    ndim = data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(f"{path} is truncated (header cut short)")
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    dtype = np.dtype(_DTYPES[data[2]])
    expected = header + int(np.prod(shape)) * dtype.itemsize
    if len(data) != expected:
        raise DataError(f"{path} has {len(data)} bytes but its header {shape} needs {expected}: the file is "
                        "truncated or corrupt; delete it and obtain it again")
    array = np.frombuffer(data, dtype=dtype, offset=header).reshape(shape)
    return torch.from_numpy(array.astype(array.dtype.newbyteorder("="), copy=True))


def read_idx_pair(images_path: Path, labels_path: Path, *, md5_images: str | None = None,
                  md5_labels: str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Images uint8 (N, 1, H, W) and labels int64 (N,) from a pair of IDX files."""
    images = parse_idx(read_idx_bytes(images_path), images_path, md5_images)
    labels = parse_idx(read_idx_bytes(labels_path), labels_path, md5_labels)
    if images.ndim != 3 or images.dtype != torch.uint8:
        raise DataError(f"{images_path} should hold uint8 images (N, H, W), found {tuple(images.shape)}")
    if labels.ndim != 1 or len(labels) != len(images):
        raise DataError(f"{labels_path} holds {len(labels)} labels for the {len(images)} images of {images_path}")
    return images.unsqueeze(1), labels.long()  # (N, 1, H, W) uint8
