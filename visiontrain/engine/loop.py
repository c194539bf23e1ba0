"""The training loop, readable in one sitting: batches -> augment -> normalise -> model -> loss -> step.

Plain PyTorch as a tutorial writes it; each feature (autocast, accumulation, clipping, EMA, the non-finite
guard, step checkpoints) is one line at a named place.
"""
from __future__ import annotations

import math
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from ..data.augment import AugmentSpec, apply, batch_params
from ..data.mixing import mix
from ..data.loader import TensorLoader
from ..errors import TrainingStopped
from .ema import EMA, Lookahead
from .precision import Precision


_STAGED_PARAMS = ("shift", "flip", "angle", "jitter", "jitter_order")  # per-image rows that apply() moves as they are


@dataclass
class TrainState:
    """Counters a checkpoint restores so that a resumed run continues exactly where it stopped."""

    epoch: int = 0  # epochs completed
    step_in_epoch: int = 0  # batches done in the current epoch
    global_step: int = 0  # batches done in the whole run
    best_val_acc: float = -1.0
    best_epoch: int = 0
    stale_epochs: int = 0  # epochs since the best (early stopping)
    loss_sum: float = 0.0  # running sums of the current epoch (so a resumed epoch's row is identical)
    correct: int = 0
    seen: int = 0
    train_seconds: float = 0.0  # time spent in training steps (images/s)
    elapsed: float = 0.0  # wall seconds used by earlier processes of this run
    probe: dict | None = None  # --finetune probe: what the linear probe found (engine/probe.py ProbeResult)
    rows: list = field(default_factory=list)  # metrics.csv rows so far


@dataclass
class Normalizer:
    """uint8 (B, C, H, W) -> float normalised, on the device, in the memory format the model wants."""

    mean: list[float]
    std: list[float]
    precision: Precision

    def __post_init__(self) -> None:
        std = torch.tensor(self.std).view(1, -1, 1, 1)
        self.scale = (1 / (255 * std)).to(self.precision.device)
        self.shift = (-torch.tensor(self.mean).view(1, -1, 1, 1) / std).to(self.precision.device)

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        images = images.float() * self.scale + self.shift  # (B, C, H, W) float
        return images.contiguous(memory_format=torch.channels_last) if self.precision.channels_last else images


def autocast(precision: Precision):
    if precision.autocast_dtype is None:
        return nullcontext()
    return torch.autocast(precision.device.type, dtype=precision.autocast_dtype)


@dataclass(kw_only=True)
class Trainer:
    """One epoch of the loop over a model, its optimiser and data (engine/build.py makes one from a config)."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    criterion: nn.Module
    loader: TensorLoader
    images: torch.Tensor  # uint8 (N, C, H, W), training split
    labels: torch.Tensor  # int64 (N,)
    normalize: Normalizer
    augment: AugmentSpec
    seed: int
    accumulate: int = 1
    clip_grad: float | None = None
    ema: EMA | None = None
    scaler: torch.amp.GradScaler | None = None
    after_step: Callable[[TrainState, int, int], None] = lambda state, epoch, step: None  # progress, checkpoints
    frozen_backbone: bool = False  # the backbone runs in eval mode (BatchNorm stats fixed): head stage, after a probe
    sync_every: int = 1  # steps between host syncs of the running loss (CPU: 1, free; GPU: more, see flush)
    pending: list = field(default_factory=list)  # (loss, correct, count, epoch, step) not yet added to the state
    lookahead: Lookahead | None = None
    flips: torch.Tensor | None = None  # bool (N,): --flip-mode alternate's per-image bits (data/augment.py)
    stage_epochs: bool = False  # CUDA: each epoch's indices and augmentation parameters reach the GPU in one copy
    device_labels: torch.Tensor | None = None  # the labels on the device (staged epochs), copied once
    last_loss: torch.Tensor | None = None  # the latest step's loss, on the device: loggers read it every N steps
    num_classes: int = 0  # MixUp/CutMix: the width of the targets they mix

    def batch(self, indices: torch.Tensor, epoch: int, step: int,
              staged: tuple[torch.Tensor, dict] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Augmented, normalised images and labels of one step. `staged`: (the indices on the device, the step's
        augmentation parameters) from `staged_steps`. With MixUp/CutMix the labels are class probabilities float
        (B, K) (data/mixing.py), else class indices int64 (B,)."""
        device = self.normalize.precision.device
        if staged is None:
            images = self.images[indices].to(device, non_blocking=True).float()  # (B, C, H, W) 0..255
            params = batch_params(self.augment, indices, self.seed, epoch, step, self.flips) if self.augment.active else {}
            labels = self.labels[indices].to(device, non_blocking=True)
        else:
            device_indices, params = staged
            on_device = isinstance(self.images, torch.Tensor) and self.images.device == device
            images = (self.images[device_indices] if on_device else self.images[indices].to(device, non_blocking=True)).float()
            if self.device_labels is None:
                self.device_labels = self.labels.to(device)
            labels = self.device_labels[device_indices]
        if self.augment.active:
            images = apply(images, params, self.augment)
        if "mix_lambda" in params:
            images, labels = mix(images, labels, params, self.num_classes)
        return self.normalize(images), labels

    def staged_steps(self, epoch: int, start_step: int, stop_step: int | None = None
                     ) -> Iterator[tuple[int, torch.Tensor, tuple | None]]:
        """(step, indices, staged) for the epoch's steps from `start_step` to `stop_step` (exclusive; None: the
        epoch's end); staged is None unless stage_epochs.

        Why staging: a CPU tensor used by a GPU op is copied synchronously, and that copy waits for every kernel
        already queued. Indexing with each step's CPU indices and moving its flip/shift parameters did that 3-4
        times per step, so the CPU could not queue step s+1 while the GPU ran step s. On an H200, fastnet-wide then
        took 1.3-1.7x the time per epoch of a plain loop. Here the epoch's indices and parameters are drawn on the
        CPU exactly as per step (batch_params: runs and resumes are unchanged) and copied once, pinned and
        asynchronous; each step slices them on the device. The photo mode's crop boxes stay on the CPU."""
        if not self.stage_epochs:
            yield from ((step, indices, None) for step, indices in self.loader.batches(epoch, start_step, stop_step))
            return
        batches = list(self.loader.batches(epoch, start_step, stop_step))
        if not batches:
            return
        device = self.normalize.precision.device
        params = [batch_params(self.augment, indices, self.seed, epoch, step, self.flips) if self.augment.active
                  else {} for step, indices in batches]
        host = {"indices": torch.cat([indices for _, indices in batches])}
        host |= {key: torch.cat([p[key] for p in params]) for key in params[0] if key in _STAGED_PARAMS}
        moved = {key: (value.pin_memory() if device.type == "cuda" else value).to(device, non_blocking=True)
                 for key, value in host.items()}
        offset = 0
        for (step, indices), step_params in zip(batches, params):
            rows = slice(offset, offset + len(indices))
            offset += len(indices)
            yield step, indices, (moved["indices"][rows],
                                  {key: moved[key][rows] if key in moved else value for key, value in step_params.items()})

    def train_one_epoch(self, state: TrainState, epoch: int, stop_step: int | None = None) -> None:
        """The epoch's steps from where `state` is; `stop_step`: the last epoch of a --max-steps run ends there."""
        self.model.train()
        if self.frozen_backbone:
            unwrap(self.model).features.eval()
        for step, indices, staged in self.staged_steps(epoch, state.step_in_epoch, stop_step):
            images, labels = self.batch(indices, epoch, step, staged)
            with autocast(self.normalize.precision):
                logits = self.model(images)
                loss = self.criterion(logits, labels)
            scaled = loss / self.accumulate
            (self.scaler.scale(scaled) if self.scaler else scaled).backward()
            if (step + 1) % self.accumulate == 0:
                self.optimizer_step()
            self.last_loss = loss.detach()
            self.pending.append((self.last_loss, (logits.argmax(1) == hard_labels(labels)).sum(), len(labels), epoch,
                                 step))
            state.step_in_epoch, state.global_step = step + 1, state.global_step + 1
            if len(self.pending) >= self.sync_every:
                self.flush(state)
            self.after_step(state, epoch, step)
        self.flush(state)

    def flush(self, state: TrainState) -> None:
        """Move the pending steps' loss and accuracy sums to `state`: one host sync for `sync_every` steps.

        On a GPU, reading a loss every step (`.item()`) stalls the CPU until the GPU catches up, so the next
        step's kernels cannot be queued in advance; the small networks here lose ~2x to that. The non-finite
        check runs here, before any checkpoint is written (Fit.save flushes first), and names the exact step.
        """
        if not self.pending:
            return
        losses = torch.stack([p[0] for p in self.pending]).float().tolist()
        correct = torch.stack([p[1] for p in self.pending]).tolist()
        first_step = state.global_step - len(self.pending)
        for i, ((_, _, count, epoch, step), loss, right) in enumerate(zip(self.pending, losses, correct)):
            if not math.isfinite(loss):
                self.pending.clear()
                raise NonFiniteLoss(epoch, step, first_step + i, loss)
            state.loss_sum += loss * count
            state.correct += int(right)
            state.seen += count
        self.pending.clear()

    def optimizer_step(self) -> None:
        if self.scaler:
            self.scaler.unscale_(self.optimizer)
        if self.clip_grad is not None:
            nn.utils.clip_grad_norm_(self.model.parameters(), self.clip_grad)
        if self.scaler:  # fp16: skips the step when gradients overflowed, and adapts the scale
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
        if self.ema is not None:
            self.ema.update(unwrap(self.model))  # the EMA keys are the plain model's
        if self.lookahead is not None:
            self.lookahead.step(unwrap(self.model), self.scheduler.last_epoch)  # LambdaLR counts optimiser steps


def hard_labels(labels: torch.Tensor) -> torch.Tensor:
    """Class indices (B,) of a step's labels. A MixUp/CutMix image's label is the class with the larger share of it
    (its own when lam >= 0.5), so train_acc counts agreement with that: a rough measure, lower than on clean images,
    which is why the validation and test numbers, on unmixed images, are the ones to compare runs by."""
    return labels if labels.ndim == 1 else labels.argmax(1)


def unwrap(module: nn.Module) -> nn.Module:
    """The plain model inside torch.compile's and DDP's wrappers (their state_dict keys carry prefixes)."""
    while True:
        if isinstance(getattr(module, "_orig_mod", None), nn.Module):  # torch.compile's OptimizedModule
            module = module._orig_mod
        elif isinstance(module, nn.parallel.DistributedDataParallel):
            module = module.module
        else:
            return module


class NonFiniteLoss(TrainingStopped):
    def __init__(self, epoch: int, step: int, global_step: int, value: float):
        self.epoch, self.step, self.global_step, self.value = epoch, step, global_step, value
        super().__init__(f"loss is {value} at epoch {epoch + 1}, step {step + 1} (global step {global_step + 1})")

    def advice(self, lr: float, last_checkpoint: Path) -> str:
        """The message a user sees: where the healthy weights are, and what to change."""
        healthy = last_checkpoint if last_checkpoint.is_file() else None
        where = f"the last healthy checkpoint is {healthy}" if healthy else "no checkpoint had been written yet"
        return (f"{self}; training stopped and no NaN weights were written ({where}). Likely causes: the learning "
                f"rate is too high (lr={lr}; try a tenth), no gradient clipping (--clip-grad 1.0), fp16 overflow, or "
                "bad input values")


TTA_SHIFTS = (1, -1)  # the diagonal translations test-time augmentation adds, in pixels


def tta_passes(allow_flip: bool) -> int:
    """Forward passes of the model per image with test-time augmentation: the image, its flip, its translations."""
    return 1 + int(allow_flip) + len(TTA_SHIFTS)


@torch.inference_mode()
def predict_logits(model: nn.Module, images: torch.Tensor, normalize: Normalizer, *, batch_size: int = 1024,
                   tta: bool = False, allow_flip: bool = True) -> torch.Tensor:
    """Logits float (N, K) on the CPU for uint8 images (N, C, H, W); large batches, inference mode.

    tta: average the logits over a horizontal flip (where allowed) and 1-pixel translations (airbench's TTA).
    """
    model.eval()
    outputs = []
    for start in range(0, len(images), batch_size):
        batch = normalize(images[start:start + batch_size].to(normalize.precision.device))
        with autocast(normalize.precision):
            logits = model(batch).float()
            if tta:
                views = [batch.flip(3)] if allow_flip else []
                views += [_shift(batch, pixels) for pixels in TTA_SHIFTS]
                logits = (logits + sum(model(view).float() for view in views)) / (1 + len(views))
        outputs.append(logits.cpu())
    return torch.cat(outputs)


def _shift(images: torch.Tensor, pixels: int) -> torch.Tensor:
    """Translate float (B, C, H, W) diagonally by `pixels`, reflecting at the border."""
    padded = F.pad(images, (abs(pixels),) * 4, mode="reflect")
    start = abs(pixels) + pixels
    return padded[:, :, start:start + images.shape[2], start:start + images.shape[3]]
