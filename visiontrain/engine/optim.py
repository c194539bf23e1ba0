"""Optimiser with parameter groups (no weight decay on biases and norms) and the learning-rate schedule.

Every schedule is a pure function of the optimiser step (a LambdaLR), so it is saved and resumed exactly, and
raising --epochs on resume stretches it.
"""
from __future__ import annotations

import importlib
import math

import torch
from torch import nn

from ..config import Config


_NORMS = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm)


def build_optimizer(model: nn.Module, config: Config, backbone_lr: float = 1.0) -> torch.optim.Optimizer:
    """Groups: (backbone | head) x (decay | no decay on biases and norms); the backbone's lr is scaled by backbone_lr
    (discriminative learning rates for fine-tuning pretrained weights)."""
    head = set(map(id, model.fc.parameters())) if hasattr(model, "fc") else set()
    # airbench's BatchNorm-bias lr scaling: with frozen BN scales, the biases are the thresholds of the
    # activations, and 64x their lr cut airbench94's epochs to 94% from 14.2 to 9.9 (its ablation)
    norm_biases = {id(m.bias) for m in model.modules() if isinstance(m, _NORMS) and getattr(m, "bias", None) is not None}
    groups = []
    for is_head in (False, True):
        scale = 1.0 if is_head else backbone_lr
        params = [p for p in model.parameters() if p.requires_grad and (id(p) in head) == is_head]
        for decay in (True, False):
            chosen = [p for p in params if (p.ndim > 1) == decay]
            if not decay and config.bias_lr_scale != 1:
                biases = [p for p in chosen if id(p) in norm_biases]
                chosen = [p for p in chosen if id(p) not in norm_biases]
                if biases:
                    groups.append({"params": biases, "weight_decay": config.weight_decay / config.bias_lr_scale,
                                   "lr": config.lr * scale * config.bias_lr_scale})
            if chosen:
                groups.append({"params": chosen, "weight_decay": config.weight_decay if decay else 0.0,
                               "lr": config.lr * scale})
    eager = not config.compile and _without_dynamo()
    if config.optimizer == "sgd":
        return (EagerSGD if eager else torch.optim.SGD)(groups, lr=config.lr, momentum=config.momentum,
                                                        nesterov=config.nesterov and config.momentum > 0)
    if config.optimizer == "adam":
        return (EagerAdam if eager else torch.optim.Adam)(groups, lr=config.lr, betas=(config.momentum, 0.999))
    return (EagerAdamW if eager else torch.optim.AdamW)(groups, lr=config.lr, betas=(config.momentum, 0.999))


# -- torch.optim without torch._dynamo ---------------------------------------------------------------------------
# torch.optim wraps an optimiser's step, zero_grad, add_param_group, state_dict and load_state_dict (and Adam's
# update function) so that torch.compile can trace or skip them; the first call of any of them imports
# torch._dynamo, which takes 1.7-1.9 s on 2 CPU cores, in every run, before its first step (the constructor calls
# add_param_group). An eager run never needs it: the wrappers only mark functions for the compiler and insert graph
# breaks, which are no-ops outside it. So a run that does not --compile calls torch's own undecorated functions
# (their __wrapped__): the same code, the same numbers, without the import. Where a torch version lacks a
# __wrapped__, the stock optimiser is used.
_OPTIMIZER_METHODS = ("add_param_group", "zero_grad", "state_dict", "load_state_dict")


def _without_dynamo() -> bool:
    """Prime torch's lazy _disable_dynamo wrappers with the plain functions (its own cache attribute), so they call
    them without importing torch._dynamo; True when every wrapper this needs was found."""
    adam_module, adamw_module = (importlib.import_module(f"torch.optim.{name}") for name in ("adam", "adamw"))
    plain = [getattr(getattr(torch.optim.Optimizer, name), "__wrapped__", None) for name in _OPTIMIZER_METHODS]
    plain += [getattr(adam_module.adam, "__wrapped__", None)]
    plain += [getattr(cls.step, "__wrapped__", None) for cls in (torch.optim.SGD, torch.optim.Adam, torch.optim.AdamW)]
    if any(function is None for function in plain):
        return False
    adamw = getattr(getattr(adamw_module, "adamw", None), "__wrapped__", None)  # its own update in older torch
    for function in plain[:5] + ([adamw] if adamw is not None else []):
        setattr(function, "__dynamo_disable", function)  # what torch._compile._disable_dynamo's wrapper looks up
    return True


class EagerSGD(torch.optim.SGD):
    """torch.optim.SGD whose step skips the wrapper that imports torch._dynamo (see above)."""

    def step(self, closure=None):  # noqa: ANN001, ANN201 - torch's signature
        with torch.no_grad():  # what the wrapper does, besides its graph breaks
            return torch.optim.SGD.step.__wrapped__(self, closure)


class EagerAdam(torch.optim.Adam):
    """torch.optim.Adam whose step skips the wrapper that imports torch._dynamo (see above)."""

    def step(self, closure=None):  # noqa: ANN001, ANN201
        with torch.no_grad():
            return torch.optim.Adam.step.__wrapped__(self, closure)


class EagerAdamW(torch.optim.AdamW):
    """torch.optim.AdamW whose step skips the wrapper that imports torch._dynamo (see above)."""

    def step(self, closure=None):  # noqa: ANN001, ANN201
        with torch.no_grad():
            return torch.optim.AdamW.step.__wrapped__(self, closure)


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


def build_scheduler(optimizer: torch.optim.Optimizer, config: Config, steps_per_epoch: int,
                    total_steps: int | None = None):
    """The schedule over `total_steps` optimiser steps (default: steps_per_epoch x epochs), stepped every one."""
    total = total_steps or steps_per_epoch * config.epochs
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(step, total_steps=total, steps_per_epoch=steps_per_epoch, config=config))
