"""Class imbalance: how skewed the training classes are, the remedies, and the metric that keeps the best epoch.

The imbalance ratio is the largest training class's count over the smallest's. Above --imbalance-threshold
(3 by default) plain accuracy rewards a model that ignores the small classes, so the best checkpoint is chosen by
balanced accuracy on val (the mean of the per-class recalls) instead. The remedies are opt-in:
- --class-weights auto: CrossEntropyLoss weighted by inverse class frequency, normalised to mean 1;
- --sampler balanced: each epoch draws its images with probability 1 / (size of the image's class), with
  replacement (the data order stays a pure function of (seed, epoch), so resume is exact).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..data.tensors import imbalance_ratio


def inverse_frequency(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """float32 (K,): 1 / count per class, normalised to mean 1 over the classes present (absent classes: 0)."""
    counts = torch.bincount(labels, minlength=num_classes).double()
    present = counts > 0
    weights = torch.where(present, 1.0 / counts.clamp_min(1), torch.zeros_like(counts))
    return (weights / weights[present].mean()).float()


def sample_weights(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """float64 (N,): each sample's class weight, so every class is drawn equally often in expectation."""
    return inverse_frequency(labels, num_classes).double()[labels]


@dataclass(frozen=True)
class Selection:
    """How the best checkpoint is chosen, and why (recorded in summary.json)."""

    metric: str | None  # 'accuracy', 'balanced_accuracy', or None (no val split: the last epoch is kept)
    column: str | None  # its metrics.csv column: 'val_acc' or 'val_balanced_acc'
    imbalance_ratio: float | None  # of the training split
    reason: str

    @property
    def balanced(self) -> bool:
        return self.metric == "balanced_accuracy"


def choose_selection(train_labels: torch.Tensor, num_classes: int, threshold: float, has_val: bool) -> Selection:
    ratio = imbalance_ratio(torch.bincount(train_labels, minlength=num_classes).tolist())
    if not has_val:
        return Selection(None, None, ratio, "no validation split: the last epoch is kept")
    if ratio is not None and ratio > threshold:
        return Selection("balanced_accuracy", "val_balanced_acc", ratio,
                         f"the training classes are imbalanced: largest / smallest class = {ratio:.2f}, above the "
                         f"imbalance_threshold {threshold:g}")
    return Selection("accuracy", "val_acc", ratio, f"largest / smallest training class = {ratio:.2f}, not above "
                     f"the imbalance_threshold {threshold:g}")


def notice(selection: Selection, class_weights: str, sampler: str) -> str | None:
    """What a person should know before training starts (shown on stderr), or None."""
    remedies = class_weights != "none" or sampler != "shuffle"
    lines = []
    if selection.balanced:
        lines.append(f"{selection.reason}: the best epoch is kept by val balanced accuracy"
                     + ("" if remedies else "; --class-weights auto or --sampler balanced may help the small classes"))
    if class_weights != "none" and sampler != "shuffle":
        lines.append("--class-weights auto and --sampler balanced both correct the class imbalance, so together they "
                     "over-correct it (the small classes then dominate); one of them is usually enough")
    return "\n".join(lines) or None
