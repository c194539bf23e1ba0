"""--overfit-batch N: the "overfit one batch" sanity check (Karpathy's recipe for training neural nets).

The run trains on one fixed batch of N training images, without augmentation, for --overfit-steps steps (one
epoch), then measures the loss and accuracy on that batch. A network that cannot memorise 32 images has a bug
(labels that do not match the images, an lr far off, a broken model), and this shows it in seconds rather than
after an hour of training. The run folder is written as usual; its summary.json holds the verdict.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any

import torch
import torch.nn.functional as F

from ..config import Config
from ..data import Dataset

OK_LOSS = 0.05  # cross-entropy (above the label-smoothing floor) below which the loss "went to zero"


def prepare(config: Config, data: Dataset) -> tuple[Config, Dataset]:
    """(config, dataset) of the check: one seeded, fixed batch is the whole training split.

    The images are a seeded random choice rather than the first N, which in an image folder are all one class.
    The returned config is what actually runs (one epoch of N-image batches, no augmentation), so config.yaml
    and resume describe it exactly; picking again from the full split on resume gives the same batch.
    """
    count = min(config.overfit_batch, len(data.train))
    pick = torch.randperm(len(data.train), generator=torch.Generator().manual_seed(config.seed))[:count]
    config = config.replace(epochs=1, batch_size=count, accumulate=1, augment="none", rotation=0.0, jitter=0.0,
                            auto_augment="none", mixup=0.0, cutmix=0.0, early_stop=None)
    return config, dataclasses.replace(data, train=data.train.subset(pick.sort().values))


def verdict(logits: torch.Tensor, labels: torch.Tensor, config: Config, num_classes: int) -> dict[str, Any]:
    """Loss and accuracy on the batch after training, and whether they reached ~0 and 100%."""
    smoothing = config.label_smoothing
    loss = F.cross_entropy(logits.float(), labels, label_smoothing=smoothing).item()
    accuracy = (logits.argmax(1) == labels).double().mean().item()
    floor = _smoothing_floor(smoothing, num_classes)  # label smoothing keeps the loss above this, even when perfect
    ok = accuracy == 1.0 and loss - floor < OK_LOSS
    what = f"{len(labels)} images, {config.overfit_steps} steps: loss {loss:.4f}, accuracy {accuracy:.0%} on the batch"
    message = (f"overfit-batch check: the model can learn: OK ({what})" if ok else
               f"overfit-batch check: FAILED, the loss did not go to zero ({what}): check the lr, labels, model")
    return {"ok": ok, "images": len(labels), "steps": config.overfit_steps, "loss": loss, "accuracy": accuracy,
            "loss_floor": floor, "message": message}


def _smoothing_floor(smoothing: float, num_classes: int) -> float:
    """The smallest cross-entropy against smoothed targets: the entropy of the target distribution."""
    if smoothing <= 0:
        return 0.0
    high, low = 1 - smoothing + smoothing / num_classes, smoothing / num_classes
    return -(high * math.log(high) + (num_classes - 1) * low * math.log(low))
