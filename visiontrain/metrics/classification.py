"""Classification metrics, computed once from predictions and targets (no per-batch metric objects)."""
from __future__ import annotations

import torch


def confusion_matrix(predictions: torch.Tensor, targets: torch.Tensor, num_classes: int) -> torch.Tensor:
    """int64 (K, K): rows are true classes, columns predicted."""
    flat = targets.long() * num_classes + predictions.long()
    return torch.bincount(flat, minlength=num_classes**2).reshape(num_classes, num_classes)


def balanced_accuracy(predictions: torch.Tensor, targets: torch.Tensor, num_classes: int) -> float:
    """The mean of the per-class recalls over the classes present in `targets` (sklearn's balanced_accuracy_score)."""
    matrix = confusion_matrix(predictions, targets, num_classes)
    support = matrix.sum(1)
    present = support > 0
    return (matrix.diag()[present].double() / support[present]).mean().item()


def classification_metrics(logits: torch.Tensor, targets: torch.Tensor, classes: list[str]) -> dict:
    """From logits float (N, K) and targets int64 (N,): accuracy, top-5, loss, per-class P/R/F1, confusion, ECE."""
    num_classes = len(classes)
    logits = logits.float()
    probs = logits.softmax(1)
    predictions = probs.argmax(1)
    matrix = confusion_matrix(predictions, targets, num_classes)
    true_positive = matrix.diag().double()
    support, predicted = matrix.sum(1).double(), matrix.sum(0).double()
    precision = torch.where(predicted > 0, true_positive / predicted.clamp_min(1), torch.zeros_like(predicted))
    recall = torch.where(support > 0, true_positive / support.clamp_min(1), torch.zeros_like(support))
    f1 = torch.where(precision + recall > 0, 2 * precision * recall / (precision + recall).clamp_min(1e-12),
                     torch.zeros_like(recall))
    present = support > 0
    confidence = probs.max(1).values
    result = {
        "n": len(targets),
        "accuracy": (predictions == targets).double().mean().item(),
        "loss": torch.nn.functional.cross_entropy(logits, targets).item(),
        "balanced_accuracy": recall[present].mean().item(),
        "macro_f1": f1[present].mean().item(),
        "weighted_f1": (f1 * support).sum().item() / max(1.0, support.sum().item()),
        "ece": expected_calibration_error(confidence, predictions == targets),
        "per_class": [{"class": c, "precision": p, "recall": r, "f1": f, "support": int(s)}
                      for c, p, r, f, s in zip(classes, precision.tolist(), recall.tolist(), f1.tolist(), support.tolist())],
        "confusion_matrix": matrix.tolist(),
    }
    if num_classes > 5:
        top5 = logits.topk(5, 1).indices
        result["top5_accuracy"] = (top5 == targets[:, None]).any(1).double().mean().item()
    off_diagonal = matrix.clone().fill_diagonal_(0)
    order = off_diagonal.flatten().argsort(descending=True)[:5]
    result["most_confused"] = [{"true": classes[i // num_classes], "predicted": classes[i % num_classes],
                                "count": int(off_diagonal.flatten()[i])} for i in order.tolist()
                               if off_diagonal.flatten()[i] > 0]
    return result


def expected_calibration_error(confidence: torch.Tensor, correct: torch.Tensor, bins: int = 15) -> float:
    edges = torch.linspace(0, 1, bins + 1)
    ece = 0.0
    for low, high in zip(edges[:-1], edges[1:]):
        inside = (confidence > low) & (confidence <= high)
        if inside.any():
            ece += inside.double().mean().item() * abs(confidence[inside].double().mean().item()
                                                       - correct[inside].double().mean().item())
    return ece
