"""MappedImages: a split whose pixels stay in the memory-mapped cache file (data/memmap.py) until a batch is read.

It stands in for the uint8 (N, C, H, W) tensor of ImageTensors.images wherever the code indexes it: `images[indices]`
(Trainer.batch), `images[start:stop]` (predict_logits), `images[i]`, `.shape`, `len()`. Each of these copies only
the rows asked for into an ordinary tensor, so a split larger than memory is never read whole. A subset (the
carved validation split, a split file, --overfit-batch) is a new list of rows into the same file, not a copy.
Operations on the whole split (`.float()`, `.numpy()`) deliberately do not exist: they would read all of it.
"""
from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import torch

DEVICE_FRACTION = 0.5  # a training split moves to the GPU whole only if it takes at most this share of free memory


class MappedImages:
    """uint8 (N, C, H, W) images: rows `rows` of the (M, C, H, W) uint8 file at `path`, read when indexed.

    Args:
        path: the raw uint8 file (C order, no header).
        file_shape: (M, C, H, W) of the whole file.
        rows: int64 (N,) rows of the file that make this split, in order.
    """

    dtype = torch.uint8
    ndim = 4
    device = torch.device("cpu")

    def __init__(self, path: str | Path, file_shape: tuple[int, ...], rows: torch.Tensor,
                 array: np.memmap | None = None):
        self.path, self.file_shape = Path(path), tuple(int(d) for d in file_shape)
        self.rows = torch.as_tensor(rows, dtype=torch.int64)
        # read-only mapping: pages come from the page cache, shared by every process that maps the file (DDP ranks)
        self.array = array if array is not None else np.memmap(self.path, dtype=np.uint8, mode="r",
                                                               shape=self.file_shape)

    @property
    def shape(self) -> torch.Size:
        return torch.Size((len(self.rows), *self.file_shape[1:]))

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape)

    def size(self, dim: int | None = None):  # noqa: ANN201 - torch.Size or int, as Tensor.size
        return self.shape if dim is None else self.shape[dim]

    def numel(self) -> int:
        return self.nbytes

    def element_size(self) -> int:
        return 1

    def __len__(self) -> int:
        return len(self.rows)

    def __repr__(self) -> str:
        return f"MappedImages({tuple(self.shape)}, uint8, file={self.path})"

    def __reduce__(self):  # noqa: ANN204 - pickled by path, never by contents
        return MappedImages, (str(self.path), self.file_shape, self.rows)

    def __getitem__(self, key) -> torch.Tensor:  # noqa: ANN001 - int, slice, int64 or bool tensor, list, array
        """A copy of the chosen images as an ordinary uint8 tensor: (B, C, H, W), or (C, H, W) for one index."""
        if isinstance(key, tuple):
            raise TypeError("MappedImages is indexed along the first dimension only; index the returned batch further")
        picked = self.rows[torch.as_tensor(key) if isinstance(key, (list, np.ndarray)) else key]
        if picked.ndim == 0:
            return torch.from_numpy(np.array(self.array[int(picked)]))  # (C, H, W)
        return torch.from_numpy(np.asarray(self.array[picked.numpy()]))  # fancy indexing copies: (B, C, H, W)

    def subset(self, indices: torch.Tensor) -> "MappedImages":
        """The images at `indices` of this split, still in the file (no pixels are read)."""
        return MappedImages(self.path, self.file_shape, self.rows[indices], self.array)

    def cpu(self) -> "MappedImages":
        return self

    def to(self, device: str | torch.device, non_blocking: bool = False):  # noqa: ANN201
        """Itself on the CPU; on another device a whole tensor there, filled in slices of ~64 MB (host memory stays
        bounded)."""
        device = torch.device(device)
        if device.type == "cpu":
            return self
        images = torch.empty(tuple(self.shape), dtype=torch.uint8, device=device)
        step = max(1, (64 << 20) // max(1, math.prod(self.file_shape[1:])))
        for start in range(0, len(self), step):
            images[start:start + step].copy_(self[start:start + step], non_blocking=non_blocking)
        return images


def cat_images(parts: list) -> torch.Tensor | MappedImages:  # noqa: ANN001 - tensors or MappedImages
    """torch.cat along the first dimension; MappedImages of one file concatenate their rows (nothing is read)."""
    if parts and all(isinstance(p, MappedImages) for p in parts) and len({p.path for p in parts}) == 1:
        return MappedImages(parts[0].path, parts[0].file_shape, torch.cat([p.rows for p in parts]), parts[0].array)
    return torch.cat([p if isinstance(p, torch.Tensor) else p[:] for p in parts])


def place_on_device(images: torch.Tensor | MappedImages, device: torch.device):  # noqa: ANN201
    """The training split where Trainer.batch reads it: whole on the accelerator when it takes at most
    DEVICE_FRACTION of the free memory there (the old behaviour for every small dataset), otherwise left on the host,
    and each batch is copied over as it is used."""
    if device.type == "cpu":
        return images
    nbytes = math.prod(images.shape)  # uint8
    free = torch.cuda.mem_get_info(device)[0] if device.type == "cuda" else None
    if free is not None and nbytes > DEVICE_FRACTION * free:
        print(f"visiontrain: the training images ({nbytes / 2**30:.1f} GiB) exceed {DEVICE_FRACTION:.0%} of the free "
              f"memory on {device} ({free / 2**30:.1f} GiB); each batch is copied to it as it is used", file=sys.stderr)
        return images
    return images.to(device)
