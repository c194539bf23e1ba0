"""The linear probe: a pretrained backbone's pooled features computed once, the new head fitted to them.

On a small folder the strongest first answer from a pretrained backbone is a linear classifier on its frozen
features. Training that head through the network instead (the old head epoch) runs the whole backbone forward for
every step of the head, and a few hundred images give the head a handful of steps at a warm-up's lr. Here each
training image goes through the backbone once, and the head, a logistic regression on those feature vectors, is
fitted by L-BFGS to convergence in well under a second; its L2 strength is chosen by cross-validation on the
training features (the validation split stays untouched for choosing the epoch). Fine-tuning then starts from a
head that already fits, so the backbone's first steps are not spent on a random head's gradients (linear probing
then fine-tuning, LP-FT: Kumar et al., ICLR 2022).
"""
from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from .loop import Normalizer, autocast

PROBE_MAX_IMAGES = 10_000  # a larger training split is probed on a seeded sample (D=1280 features: 51 MB)
EXTRACT_BATCH = 64  # images per forward pass: memory stays bounded at 224 px, and progress comes every batch
L2_GRID = (1e-3, 1e-2, 1e-1)  # L2 strengths (on standardised features) tried by cross-validation
FOLDS = 3
MAX_ITER = 300  # L-BFGS iterations per fit (a few hundred images converge in far fewer)


@dataclass
class ProbeResult:
    l2: float  # the L2 strength the cross-validation chose
    cv_acc: float  # its mean held-out accuracy over the folds
    images: int  # training images the head was fitted on (a sample of a large split)
    train_loss: float  # of the fitted head on those images' features (no augmentation)
    train_acc: float
    extract_seconds: float
    fit_seconds: float

    def sentence(self) -> str:
        return (f"probe: head fitted to {self.images:,} images' features in {self.extract_seconds + self.fit_seconds:.1f}"
                f" s (L2 {self.l2:g} by {FOLDS}-fold cross-validation: {self.cv_acc:.2%})")

    def describe(self) -> dict:
        return {"l2": self.l2, "cv_acc": self.cv_acc, "images": self.images, "train_loss": self.train_loss,
                "train_acc": self.train_acc, "extract_seconds": self.extract_seconds, "fit_seconds": self.fit_seconds}


@torch.inference_mode()
def extract_features(model: nn.Module, images, normalize: Normalizer, *,  # noqa: ANN001 - tensor or MappedImages
                     batch_size: int = EXTRACT_BATCH, report: Callable[[int, int], None] | None = None
                     ) -> torch.Tensor:
    """float32 (N, D) on the CPU: what model.fc receives for each of the uint8 (N, C, H, W) images (the backbone in
    eval mode: its BatchNorm statistics as pretrained). report(done, total) after each batch."""
    model.eval()
    outputs = []
    if report is not None:
        report(0, len(images))  # the clock of the progress line starts now
    for start in range(0, len(images), batch_size):
        batch = normalize(images[start:start + batch_size].to(normalize.precision.device))
        with autocast(normalize.precision):
            features = model.forward_head(model.forward_features(batch), pre_logits=True)
        outputs.append(features.float().cpu())
        if report is not None:
            report(min(start + batch_size, len(images)), len(images))
    return torch.cat(outputs)


def fit_linear(features: torch.Tensor, labels: torch.Tensor, num_classes: int, l2: float, *,
               class_weight: torch.Tensor | None = None, label_smoothing: float = 0.0
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """(weight (K, D), bias (K,)) of the multinomial logistic regression of `labels` on `features`, minimising the
    mean cross-entropy + l2/2 |W|^2 by L-BFGS over the features centred and divided by one overall scale (so that
    one L2 grid fits any backbone); that scaling is folded into the returned weights, so they apply to the raw
    features, as model.fc does. One scale, not one per feature: a feature that barely varies over the training
    images would otherwise get a weight of 1/its tiny spread, and fine-tuning, which moves it a little, would
    move the logits a lot."""
    mean = features.mean(0)
    std = (features - mean).pow(2).mean().sqrt().clamp_min(1e-6)
    x = (features - mean) / std
    weight = torch.zeros(num_classes, x.shape[1], requires_grad=True)
    bias = torch.zeros(num_classes, requires_grad=True)
    optimizer = torch.optim.LBFGS([weight, bias], lr=1, max_iter=MAX_ITER, history_size=20,
                                  line_search_fn="strong_wolfe", tolerance_grad=1e-6, tolerance_change=1e-9)

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(x @ weight.T + bias, labels, weight=class_weight, label_smoothing=label_smoothing)
        loss = loss + 0.5 * l2 * weight.pow(2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        optimizer.step(closure)
    scaled = (weight / std).detach()
    return scaled, (bias - scaled @ mean).detach()


@contextmanager
def one_thread() -> Iterator[None]:
    """torch on one CPU thread: the fits are thousands of small matrix products, each too small to share, and on a
    machine busy with other work every parallel region waits for its slowest thread (measured under load: 8 s for
    what takes 1 s on one thread)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def choose_l2(features: torch.Tensor, labels: torch.Tensor, num_classes: int, seed: int, **loss_args
              ) -> tuple[float, float]:
    """(the L2 strength of L2_GRID with the best mean held-out accuracy over FOLDS stratified folds of the training
    features, that accuracy); ties go to the stronger regularisation. A class with fewer images than folds is in
    every training part."""
    generator = torch.Generator().manual_seed(seed)
    fold = torch.full((len(labels),), -1, dtype=torch.int64)
    for label in labels.unique():
        members = (labels == label).nonzero().flatten()
        if len(members) >= FOLDS:
            fold[members[torch.randperm(len(members), generator=generator)]] = torch.arange(len(members)) % FOLDS
    best = (-1.0, 0.0)
    for l2 in sorted(L2_GRID, reverse=True):
        correct = 0
        for k in range(FOLDS):
            held, kept = fold == k, fold != k
            if not held.any():
                continue
            weight, bias = fit_linear(features[kept], labels[kept], num_classes, l2, **loss_args)
            correct += int(((features[held] @ weight.T + bias).argmax(1) == labels[held]).sum())
        accuracy = correct / max(1, int((fold >= 0).sum()))
        if accuracy > best[0]:
            best = (accuracy, l2)
    return best[1], best[0]


def probe_sample(labels: torch.Tensor, seed: int, limit: int = PROBE_MAX_IMAGES) -> torch.Tensor | None:
    """None (every image) for a split of at most `limit` images, else `limit` indices drawn without replacement,
    seeded, in increasing order (memory-mapped reads then go forward through the file)."""
    if len(labels) <= limit:
        return None
    generator = torch.Generator().manual_seed(seed)
    return torch.randperm(len(labels), generator=generator)[:limit].sort().values


def linear_probe(model: nn.Module, images, labels: torch.Tensor, normalize: Normalizer, *,  # noqa: ANN001
                 num_classes: int, seed: int, criterion: nn.CrossEntropyLoss | None = None,
                 report: Callable[[int, int], None] | None = None) -> ProbeResult:
    """Fit model.fc, in place, to the frozen backbone's features of the training images (a seeded sample of
    PROBE_MAX_IMAGES of a larger split); the rest of the model is left as it is. `criterion`: the run's loss, whose
    class weights and label smoothing the fit uses."""
    started = time.perf_counter()
    sample = probe_sample(labels, seed)
    if sample is not None:
        images, labels = images[sample], labels[sample]
    features = extract_features(model, images, normalize, report=report)
    extracted = time.perf_counter()
    loss_args = {"class_weight": criterion.weight.cpu() if criterion is not None and criterion.weight is not None
                 else None, "label_smoothing": criterion.label_smoothing if criterion is not None else 0.0}
    with one_thread():
        l2, cv_acc = choose_l2(features, labels, num_classes, seed, **loss_args)
        weight, bias = fit_linear(features, labels, num_classes, l2, **loss_args)
    with torch.no_grad():  # in place: an optimiser, DDP or EMA holding these parameters keeps holding them
        model.fc.weight.copy_(weight)
        if model.fc.bias is not None:
            model.fc.bias.copy_(bias)
        logits = features @ weight.T + (bias if model.fc.bias is not None else 0)
        loss = F.cross_entropy(logits, labels, weight=loss_args["class_weight"],
                               label_smoothing=loss_args["label_smoothing"])
    return ProbeResult(l2=l2, cv_acc=cv_acc, images=len(labels), train_loss=float(loss),
                       train_acc=float((logits.argmax(1) == labels).double().mean()),
                       extract_seconds=extracted - started, fit_seconds=time.perf_counter() - extracted)
