"""ImageTensors: a whole split decoded once into uint8 tensors, the unit every later stage works on."""
from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field

import torch

from .mapped import MappedImages


@dataclass
class ImageTensors:
    """One split of a dataset.

    Attributes:
        images: uint8 (N, C, H, W): a tensor, or MappedImages for a folder cached on disk (data/memmap.py).
        labels: int64 (N,), index into `classes`.
        classes: class names; index = label.
        sources: per image, its file path (image folders) or None (array formats, where the index names it).
    """

    images: torch.Tensor | MappedImages
    labels: torch.Tensor
    classes: list[str]
    sources: list[str] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.ndim != 4:
            raise ValueError(f"images must be uint8 (N, C, H, W), got {self.images.dtype} {tuple(self.images.shape)}")
        if self.labels.shape != (len(self.images),):
            raise ValueError(f"labels must have shape ({len(self.images)},), got {tuple(self.labels.shape)}")

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, indices: torch.Tensor) -> "ImageTensors":
        sources = [self.sources[i] for i in indices.tolist()] if self.sources is not None else None
        images = self.images.subset(indices) if isinstance(self.images, MappedImages) else self.images[indices]
        return ImageTensors(images, self.labels[indices], self.classes, sources)

    def name_of(self, index: int) -> str:
        """What a person can look up: the file path, or '#index' in an array dataset."""
        return self.sources[index] if self.sources is not None else f"#{index}"

    def fingerprint(self) -> str:
        """SHA-256 over pixels, labels and class names: equal fingerprints mean identical data."""
        digest = hashlib.sha256()
        step = max(1, (4 << 20) // max(1, math.prod(self.images.shape[1:])))  # ~4 MB blocks: MappedImages stay on disk
        for start in range(0, len(self.images), step):
            digest.update(memoryview(self.images[start:start + step].contiguous().numpy()).cast("B"))
        digest.update(memoryview(self.labels.contiguous().numpy()).cast("B"))
        digest.update("\n".join(self.classes).encode())
        return digest.hexdigest()


def imbalance_ratio(counts: list[int]) -> float | None:
    """Largest / smallest class count, over the classes that have images (None when none has)."""
    nonzero = [c for c in counts if c > 0]
    return max(nonzero) / min(nonzero) if nonzero else None


def stratified_split(labels: torch.Tensor, fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Seeded split of indices into (kept, held_out) with `fraction` of every class held out (at least one)."""
    generator = torch.Generator().manual_seed(seed)
    kept, held = [], []
    for label in labels.unique(sorted=True).tolist():
        members = (labels == label).nonzero().flatten()
        members = members[torch.randperm(len(members), generator=generator)]
        n_held = max(1, round(len(members) * fraction)) if len(members) > 1 else 0
        held.append(members[:n_held])
        kept.append(members[n_held:])
    return torch.cat(kept).sort().values, torch.cat(held).sort().values


def stratified_sample(labels: torch.Tensor, *, fraction: float = 1.0, limit: int | None = None,
                      seed: int = 0) -> torch.Tensor:
    """Sorted indices of a seeded sample that keeps every class's share: `fraction` of each class (at least one
    image of each), then at most `limit` images in all, shared among the classes in proportion to their counts
    (largest remainders; at least one image per class while `limit` allows). Each class's images are drawn in one
    seeded order, so with the same seed a smaller sample's images are among a larger one's."""
    generator = torch.Generator().manual_seed(seed)
    members = []
    for label in labels.unique(sorted=True).tolist():
        indices = (labels == label).nonzero().flatten()
        members.append(indices[torch.randperm(len(indices), generator=generator)])
    quotas = [max(1, round(len(m) * fraction)) if fraction < 1 else len(m) for m in members]
    if limit is not None and limit < sum(quotas):
        quotas = _shares(quotas, limit)
    return torch.cat([m[:q] for m, q in zip(members, quotas)]).sort().values


def _shares(counts: list[int], total: int) -> list[int]:
    """`total` split among classes in proportion to `counts` (largest remainders), each at least one if it can be."""
    exact = [total * count / sum(counts) for count in counts]
    shares = [math.floor(x) for x in exact]
    for i in sorted(range(len(counts)), key=lambda i: exact[i] - shares[i], reverse=True)[:total - sum(shares)]:
        shares[i] += 1
    for i in range(len(counts)):
        if shares[i] == 0 and total >= len(counts):  # a class with few images keeps one, taken from the largest
            shares[max(range(len(counts)), key=shares.__getitem__)] -= 1
            shares[i] = 1
    return shares
