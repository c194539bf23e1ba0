"""`visiontrain lr-find`: the learning-rate range test (Smith 2017, "Cyclical Learning Rates"; fastai's lr_find).

A fresh model trains for up to `steps` optimiser steps while the lr grows exponentially from `start_lr` to `end_lr`;
the loss is smoothed (a bias-corrected moving average, as in fastai) and the test stops once the smoothed loss exceeds
4x its best (the lr has started to blow training up). The suggestion is the lr where the smoothed loss falls
fastest per decade of lr, before its minimum ("steepest descent"); the lr at the minimum divided by 10 is reported
too, as the more conservative rule.

Everything is built by the same step as `train` (engine/build.py: data, model, normaliser, augmentation,
optimiser, precision), and nothing else: no run folder, checkpoint or weights file is written or changed; the output
folder gets only lr_find.png and lr_find.csv.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import torch

from ._io import atomic_write_bytes, atomic_write_text
from .config import Config, ConfigError
from .engine.build import Setup, build
from .engine.distributed import shutdown
from .engine.loop import autocast
from .figures import figure_png, literal, new_figure

SMOOTHING = 0.9  # weight of the past in the loss average: a ~10-step window. fastai's 0.98 averages ~50 steps,
# which at 100 steps over 7 decades drags the curve ~3 decades to the right and the suggestion with it
DIVERGE_FACTOR = 4.0  # stop once the smoothed loss is this many times its best
SKIP_START = 0.1  # share of the first steps left out of the suggestion: the average is still warming up there


@dataclass
class RangeTest:
    lrs: list[float]  # the lr of each step (the value of --lr; parameter groups keep their relative scale)
    losses: list[float]  # the raw loss of each step's batch
    smoothed: list[float]
    suggested_lr: float  # steepest descent of the smoothed loss
    min_loss_lr: float  # lr at the smallest smoothed loss
    stopped: str  # why the test ended
    plot: Path
    csv: Path


def lr_find(config: Config, *, start_lr: float = 1e-6, end_lr: float = 10.0, steps: int = 100,
            output: str | Path = "lr-find") -> RangeTest:
    """Run the range test for `config` (its lr is replaced by the rising one) and write lr_find.png/.csv to `output`."""
    if not 0 < start_lr < end_lr:
        raise ConfigError(f"start_lr: {start_lr} must be > 0 and below end_lr ({end_lr})")
    if not 5 <= steps <= 100_000:
        raise ConfigError(f"steps: {steps} is out of range; use a whole number from 5 to 100000")
    # No report, checkpoints, progress bar or EMA: only the optimiser steps matter, and nothing may be written.
    config = config.replace(report=False, checkpoint_every=0, checkpoint_minutes=0.0, progress="none", ema=None)
    lrs = [start_lr * (end_lr / start_lr) ** (i / (steps - 1)) for i in range(steps)]
    built = build(config)
    try:
        losses, stopped = _train_rising(built, lrs)
    finally:
        shutdown(built.env)
    if not losses:
        raise ConfigError(f"start_lr: the loss was not finite at the first step ({stopped}); lower --start-lr")
    smoothed = smooth(losses)
    lrs = lrs[:len(losses)]
    best = min(range(len(smoothed)), key=smoothed.__getitem__)
    result = RangeTest(lrs, losses, smoothed, suggest(lrs, smoothed), lrs[best], stopped,
                       Path(output) / "lr_find.png", Path(output) / "lr_find.csv")
    _write_csv(result)
    _plot(result, f"{Path(config.dataset).name}, {config.model}, {config.optimizer}, batch {config.batch_size}")
    return result


def _train_rising(built: Setup, lrs: list[float]) -> tuple[list[float], str]:
    """Train one step per lr (accumulating --accumulate batches each); the loss of each step's batches."""
    trainer, accumulate = built.trainer, built.config.accumulate
    base = built.config.lr  # the groups' lrs are multiples of it (no decay, backbone scale): keep their ratios
    trainer.scheduler = torch.optim.lr_scheduler.LambdaLR(
        built.optimizer, lambda i: lrs[min(i, len(lrs) - 1)] / base)  # replaces train's schedule; sets lrs[0] now
    trainer.model.train()
    batches = _endless(built)
    losses: list[float] = []
    best = math.inf
    for _ in lrs:
        loss_sum = 0.0
        for _ in range(accumulate):
            epoch, step, indices = next(batches)
            images, labels = trainer.batch(indices, epoch, step)  # augmentation + normalisation, as in training
            with autocast(built.precision):
                loss = trainer.criterion(trainer.model(images), labels)
            scaled = loss / accumulate
            (trainer.scaler.scale(scaled) if trainer.scaler else scaled).backward()
            loss_sum += loss.item() / accumulate
        if not math.isfinite(loss_sum):
            return losses, f"the loss became {loss_sum}"
        trainer.optimizer_step()  # clipping, grad scaler and the lr step, exactly as in training
        losses.append(loss_sum)
        current = smooth(losses)[-1]
        best = min(best, current)
        if current > DIVERGE_FACTOR * best:
            return losses, f"the smoothed loss rose above {DIVERGE_FACTOR:g}x its best"
    return losses, f"reached end_lr after {len(lrs)} steps"


def _endless(built: Setup) -> Iterator[tuple[int, int, torch.Tensor]]:
    """(epoch, step, indices) of the training order, epoch after epoch."""
    epoch = 0
    while True:
        for step, indices in built.loader.batches(epoch):
            yield epoch, step, indices
        epoch += 1


def smooth(losses: list[float], beta: float = SMOOTHING) -> list[float]:
    """Exponential moving average with bias correction (the first values are not pulled towards 0)."""
    average, out = 0.0, []
    for i, loss in enumerate(losses):
        average = beta * average + (1 - beta) * loss
        out.append(average / (1 - beta ** (i + 1)))
    return out


def suggest(lrs: list[float], smoothed: list[float]) -> float:
    """The lr where the smoothed loss falls fastest (per step, i.e. per equal fraction of a decade), between the
    end of the average's warm-up and the minimum; min-loss lr / 10 when that stretch is too short to tell."""
    best = min(range(len(smoothed)), key=smoothed.__getitem__)
    start = max(1, int(SKIP_START * len(lrs)))
    if best - start < 2:
        return lrs[best] / 10
    slopes = [(smoothed[i + 1] - smoothed[i - 1]) / 2 for i in range(start, best)]  # central differences
    return lrs[start + min(range(len(slopes)), key=slopes.__getitem__)]


def _write_csv(result: RangeTest) -> None:
    rows = ["step,lr,loss,smoothed_loss"] + [f"{i + 1},{lr:.6g},{loss:.6g},{average:.6g}" for i, (lr, loss, average)
                                             in enumerate(zip(result.lrs, result.losses, result.smoothed))]
    atomic_write_text(result.csv, "\n".join(rows) + "\n")


def _plot(result: RangeTest, title: str) -> None:
    figure = new_figure(7, 4.2)
    axis = figure.subplots()
    axis.plot(result.lrs, result.losses, color="0.75", linewidth=0.8, label="loss (each step)")
    axis.plot(result.lrs, result.smoothed, color="C0", label="smoothed loss")
    axis.axvline(result.suggested_lr, color="C3", linestyle="--",
                 label=f"suggested lr {result.suggested_lr:.2g} (steepest descent)")
    axis.axvline(result.min_loss_lr / 10, color="C2", linestyle=":",
                 label=f"min-loss lr / 10: {result.min_loss_lr / 10:.2g}")
    axis.set_xscale("log")
    axis.set_xlabel("learning rate (log scale)")
    axis.set_ylabel("training loss (cross-entropy)")
    low = min(result.losses + result.smoothed)
    high = max(result.smoothed[0], min(result.smoothed) * DIVERGE_FACTOR, low + 1e-3)
    axis.set_ylim(low - 0.05 * (high - low), high + 0.1 * (high - low))  # the raw loss spikes would flatten the curve
    axis.grid(alpha=0.3)
    axis.grid(alpha=0.1, which="minor")
    axis.legend(fontsize=8)
    axis.set_title(literal(f"lr range test: {title}"))
    atomic_write_bytes(result.plot, figure_png(figure))
