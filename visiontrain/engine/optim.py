"""Optimiser with parameter groups (no weight decay on biases and norms) and the learning-rate schedule.

Every schedule is a pure function of the optimiser step (a LambdaLR), so it is saved and resumed exactly, and
raising --epochs on resume stretches it.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from ..config import Config


def build_optimizer(model: nn.Module, config: Config, backbone_lr: float = 1.0) -> torch.optim.Optimizer:
    """Groups: (backbone | head) x (decay | no decay on biases and norms); the backbone's lr is scaled by backbone_lr
    (discriminative learning rates for fine-tuning pretrained weights)."""
    head = set(map(id, model.fc.parameters())) if hasattr(model, "fc") else set()
    groups = []
    for is_head in (False, True):
        scale = 1.0 if is_head else backbone_lr
        params = [p for p in model.parameters() if p.requires_grad and (id(p) in head) == is_head]
        for decay in (True, False):
            chosen = [p for p in params if (p.ndim > 1) == decay]
            if chosen:
                groups.append({"params": chosen, "weight_decay": config.weight_decay if decay else 0.0,
                               "lr": config.lr * scale})
    if config.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum, nesterov=config.nesterov and config.momentum > 0)
    optimizer_class = torch.optim.Adam if config.optimizer == "adam" else torch.optim.AdamW
    return optimizer_class(groups, lr=config.lr, betas=(config.momentum, 0.999))


def lr_factor(step: int, *, total_steps: int, steps_per_epoch: int, config: Config) -> float:
    """Multiplier of the peak lr at optimiser step `step` (0-based)."""
    if config.schedule == "onecycle":  # as torch's OneCycleLR: cosine ramp from lr/25 over 25%, cosine down to ~0
        warm = max(1, int(0.25 * total_steps))
        if step < warm:
            return 1 / 25 + (1 - 1 / 25) * (1 - math.cos(math.pi * step / warm)) / 2
        progress = min(1.0, (step - warm) / max(1, total_steps - warm))
        return 1e-4 + (1 - 1e-4) * (1 + math.cos(math.pi * progress)) / 2
    warm = int(config.warmup_epochs * steps_per_epoch)
    if step < warm:
        return (step + 1) / warm
    progress = min(1.0, (step - warm) / max(1, total_steps - warm))
    if config.schedule == "cosine":
        return (1 + math.cos(math.pi * progress)) / 2
    if config.schedule == "linear":
        return max(0.0, 1 - progress)
    if config.schedule == "step":
        return config.gamma ** ((step // steps_per_epoch) // config.step_size)
    return 1.0


def build_scheduler(optimizer: torch.optim.Optimizer, config: Config, steps_per_epoch: int):
    total = steps_per_epoch * config.epochs
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(step, total_steps=total, steps_per_epoch=steps_per_epoch, config=config))
