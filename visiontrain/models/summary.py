"""The layer table a student draws by hand: each layer, its output shape, parameters and multiply-adds.

Written by hand rather than with torchinfo (unmaintained since 2023): forward hooks on the leaf modules give
the shapes, and the multiply-adds of Conv2d and Linear are counted from their definitions, so every number
can be checked with a pencil.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class LayerRow:
    name: str
    kind: str
    output_shape: tuple[int, ...]
    parameters: int
    mult_adds: int


def layer_table(model: nn.Module, input_shape: tuple[int, int, int]) -> list[LayerRow]:
    """One forward pass of a zero batch of one image (1, C, H, W) through `model`, recording each leaf layer."""
    rows: list[LayerRow] = []
    hooks = []
    for name, module in model.named_modules():
        if next(module.children(), None) is not None:
            continue

        def hook(module: nn.Module, inputs, output, name: str = name) -> None:  # noqa: ANN001
            shape = tuple(output.shape[1:]) if isinstance(output, torch.Tensor) else ()
            rows.append(LayerRow(name, type(module).__name__, shape, sum(p.numel() for p in module.parameters(recurse=False)),
                                 _mult_adds(module, output)))

        hooks.append(module.register_forward_hook(hook))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(1, *input_shape))
    finally:
        for handle in hooks:
            handle.remove()
        model.train(was_training)
    return rows


def _mult_adds(module: nn.Module, output: torch.Tensor) -> int:
    if isinstance(module, nn.Conv2d):
        return output[0].numel() * (module.in_channels // module.groups) * module.kernel_size[0] * module.kernel_size[1]
    if isinstance(module, nn.Linear):
        return module.in_features * module.out_features
    return 0


def format_table(model: nn.Module, input_shape: tuple[int, int, int], title: str = "") -> str:
    rows = layer_table(model, input_shape)
    width = max(24, *(len(r.name) for r in rows))
    lines = [title] if title else []
    lines.append(f"{'layer':<{width}} {'type':<20} {'output shape':<18} {'params':>10} {'mult-adds':>13}")
    lines.append(f"{'input':<{width}} {'':<20} {str(list(input_shape)):<18} {'':>10} {'':>13}")
    for row in rows:
        lines.append(f"{row.name:<{width}} {row.kind:<20} {str(list(row.output_shape)):<18} {row.parameters:>10,} "
                     f"{row.mult_adds:>13,}")
    total_params = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    lines.append(f"total: {total_params:,} parameters ({trainable:,} trainable), "
                 f"{sum(r.mult_adds for r in rows):,} multiply-adds per image "
                 f"({2 * sum(r.mult_adds for r in rows) / 1e6:.1f} MFLOP forward)")
    return "\n".join(lines)


def first_paragraph(docstring: str | None) -> str:
    """A docstring's first paragraph on one line: `visiontrain models` shows whole sentences, not a first line."""
    paragraph = (docstring or "").strip().split("\n\n")[0]
    return " ".join(paragraph.split())
