"""Batches straight from in-memory tensors: a seeded permutation per epoch, sliced; no per-image DataLoader.

The permutation of epoch e is a pure function of (seed, epoch), so resuming at (epoch, step) replays exactly
the batches an uninterrupted run would have seen, and DDP ranks agree on it without communication.
"""
from __future__ import annotations

from typing import Iterator

import torch


def epoch_seed(seed: int, epoch: int, salt: int = 0) -> int:
    return (seed * 1_000_003 + epoch * 7919 + salt * 104_729) % (2**63 - 1)


class TensorLoader:
    """Index batches over N samples.

    Args:
        num_samples: N.
        batch_size: samples per batch (per process).
        seed: base seed; the epoch's permutation uses epoch_seed(seed, epoch).
        rank, world_size: DDP shard; each rank takes every world_size-th index of the permutation.
        drop_last: drop the short last batch (keeps BatchNorm statistics sane in training).
    """

    def __init__(self, num_samples: int, batch_size: int, *, seed: int = 0, rank: int = 0, world_size: int = 1,
                 drop_last: bool = True):
        self.num_samples, self.batch_size, self.seed = num_samples, batch_size, seed
        self.rank, self.world_size, self.drop_last = rank, world_size, drop_last
        per_rank = num_samples // world_size
        self.steps_per_epoch = per_rank // batch_size if drop_last else -(-per_rank // batch_size)
        if self.steps_per_epoch == 0:
            raise ValueError(f"batch_size {batch_size} is larger than the {per_rank} training images per process; "
                             "lower --batch-size")

    def permutation(self, epoch: int) -> torch.Tensor:
        generator = torch.Generator().manual_seed(epoch_seed(self.seed, epoch))
        return torch.randperm(self.num_samples, generator=generator)

    def shard(self, epoch: int) -> torch.Tensor:
        per_rank = self.num_samples // self.world_size
        return self.permutation(epoch)[self.rank::self.world_size][:per_rank]

    def batches(self, epoch: int, start_step: int = 0) -> Iterator[tuple[int, torch.Tensor]]:
        """Yield (step, int64 indices) for the epoch, starting at `start_step` (resume)."""
        indices = self.shard(epoch)
        for step in range(start_step, self.steps_per_epoch):
            yield step, indices[step * self.batch_size:(step + 1) * self.batch_size]
