"""Batches straight from in-memory tensors: a seeded permutation per epoch, sliced; no per-image DataLoader.

The permutation of epoch e is a pure function of (seed, epoch), so resuming at (epoch, step) replays exactly
the batches an uninterrupted run would have seen, and DDP ranks agree on it without communication. With
per-sample weights (--sampler balanced) the epoch's order is a weighted draw with replacement instead, seeded
the same way, so the same holds.
"""
from __future__ import annotations

from typing import Iterator

import torch


def epoch_seed(seed: int, epoch: int, salt: int = 0) -> int:
    return (seed * 1_000_003 + epoch * 7919 + salt * 104_729) % (2**63 - 1)


def fit_batch_to_split(batch_size: int, accumulate: int, num_samples: int, world_size: int = 1
                       ) -> tuple[int, int, list[str]]:
    """(batch_size, accumulate, notes): a batch larger than the split (per process) shrinks to the split, and
    accumulation to the batches an epoch has, so a small folder trains with the defaults; each change gets a note.
    ValueError when there is not one image per process."""
    per_rank = num_samples // world_size
    if per_rank < 1:
        raise ValueError(f"the training split has {num_samples} image(s), fewer than one per process "
                         f"({world_size} processes); add images or run fewer processes")
    notes = []
    if batch_size > per_rank:
        where = f" per process ({world_size} processes)" if world_size > 1 else ""
        notes.append(f"batch_size {batch_size} is larger than the {per_rank} training images{where}; using {per_rank}")
        batch_size = per_rank
    steps = per_rank // batch_size
    if accumulate > steps:
        notes.append(f"accumulate {accumulate} needs {accumulate} batches per optimiser step but an epoch has {steps}; "
                     f"using {steps}")
        accumulate = steps
    return batch_size, accumulate, notes


class TensorLoader:
    """Index batches over N samples.

    Args:
        num_samples: N.
        batch_size: samples per batch (per process).
        seed: base seed; the epoch's permutation uses epoch_seed(seed, epoch).
        rank, world_size: DDP shard; each rank takes every world_size-th index of the permutation.
        drop_last: drop the short last batch (keeps BatchNorm statistics sane in training).
        weights: optional float (N,) per-sample weights (balanced sampling: 1 / the size of the sample's class).
            Each epoch then draws N indices with replacement, index i with probability weights[i] / sum(weights),
            instead of a permutation; the epoch keeps its length and its steps.
    """

    def __init__(self, num_samples: int, batch_size: int, *, seed: int = 0, rank: int = 0, world_size: int = 1,
                 drop_last: bool = True, weights: torch.Tensor | None = None):
        if weights is not None:
            weights = torch.as_tensor(weights, dtype=torch.float64).flatten()
            if len(weights) != num_samples or not torch.isfinite(weights).all() or (weights < 0).any() \
                    or weights.sum() <= 0:
                raise ValueError(f"sampling weights must be {num_samples} finite numbers >= 0, not all 0")
        self.weights = weights
        self.num_samples, self.batch_size, self.seed = num_samples, batch_size, seed
        self.rank, self.world_size, self.drop_last = rank, world_size, drop_last
        per_rank = num_samples // world_size
        self.steps_per_epoch = per_rank // batch_size if drop_last else -(-per_rank // batch_size)
        if self.steps_per_epoch == 0:
            raise ValueError(f"batch_size {batch_size} is larger than the {per_rank} training images per process; "
                             "lower --batch-size")

    def permutation(self, epoch: int) -> torch.Tensor:
        """The epoch's order of sample indices: a permutation, or a weighted draw with replacement (weights)."""
        generator = torch.Generator().manual_seed(epoch_seed(self.seed, epoch))
        if self.weights is not None:
            return torch.multinomial(self.weights, self.num_samples, replacement=True, generator=generator)
        return torch.randperm(self.num_samples, generator=generator)

    def shard(self, epoch: int) -> torch.Tensor:
        per_rank = self.num_samples // self.world_size
        return self.permutation(epoch)[self.rank::self.world_size][:per_rank]

    def batches(self, epoch: int, start_step: int = 0, stop_step: int | None = None
                ) -> Iterator[tuple[int, torch.Tensor]]:
        """Yield (step, int64 indices) for the epoch, from `start_step` (resume) to `stop_step` (exclusive; a run's
        partial last epoch, --max-steps) or the epoch's end."""
        indices = self.shard(epoch)
        stop = self.steps_per_epoch if stop_step is None else min(self.steps_per_epoch, stop_step)
        for step in range(start_step, stop):
            yield step, indices[step * self.batch_size:(step + 1) * self.batch_size]


class FixedBatchLoader(TensorLoader):
    """The same batch, all N samples, at every one of `steps_per_epoch` steps: the --overfit-batch sanity check.

    A model that cannot drive the loss on one fixed batch to ~0 has a bug (labels, lr, architecture); no shuffling
    and no augmentation here, so nothing but the model and the optimiser can be blamed.
    """

    def __init__(self, num_samples: int, steps_per_epoch: int):
        super().__init__(num_samples, num_samples)
        self.steps_per_epoch = steps_per_epoch

    def shard(self, epoch: int) -> torch.Tensor:
        return torch.arange(self.num_samples)

    def batches(self, epoch: int, start_step: int = 0, stop_step: int | None = None
                ) -> Iterator[tuple[int, torch.Tensor]]:
        indices = torch.arange(self.num_samples)
        stop = self.steps_per_epoch if stop_step is None else min(self.steps_per_epoch, stop_step)
        for step in range(start_step, stop):
            yield step, indices
