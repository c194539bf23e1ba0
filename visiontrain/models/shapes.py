"""How a batch flows through a network, step by step, as a course draws it on the board.

One image [C, H, W] becomes a batch [B, C, H, W]; forward hooks on the leaf modules then record what each layer
hands on: its output shape, dtype and value range. summary.py counts parameters and multiply-adds of one image;
this walks a real random batch, so the batch dimension, the dtype and the numbers themselves are visible too.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
from torch import nn

from .._registry import MODELS
from ..errors import ConfigError
from . import create_model


@dataclass
class Step:
    name: str  # the module's dotted name in the model, e.g. features.0
    kind: str  # its class, e.g. Conv2d
    shape: tuple[int, ...]  # of its output, batch dimension included
    dtype: str
    low: float | None  # min / max of the output (None: an empty tensor)
    high: float | None
    reshape: tuple[tuple[int, ...], tuple[int, ...]] | None = None  # (from, to) when forward() reshaped the
    # previous step's output before this layer, e.g. torch.flatten(x, 1) in a ResNet


def parse_input(text: str | None) -> tuple[int, int, int]:
    """'1x28x28' -> (1, 28, 28); a square image of 1 or 3 channels, as every registered model takes. No default:
    a network's shapes depend on its input, and a guessed 1x28x28 misleads about a colour network."""
    if text is None:
        raise ConfigError("--input: give one image's shape as C x H x W, e.g. --input 1x28x28 (MNIST, Fashion-MNIST) "
                          "or --input 3x32x32 (CIFAR)")
    try:
        channels, height, width = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ConfigError(f"--input: {text!r} is not C x H x W, e.g. 1x28x28 or 3x32x32") from None
    if channels not in (1, 3):
        raise ConfigError(f"--input: {text!r} has {channels} channels; use 1 (grayscale) or 3 (RGB)")
    if height != width or height < 1:
        raise ConfigError(f"--input: {text!r} must be a square image of at least 1 pixel (H = W)")
    return channels, height, width


def trace(model: nn.Module, batch: torch.Tensor) -> tuple[list[Step], torch.Tensor]:
    """Run `batch` through `model` in eval mode without gradients; (one Step per leaf-module call, the output).

    A module called twice (a shared ReLU in a ResNet block) gives two steps, in the order they ran.
    """
    steps: list[Step] = []
    previous: torch.Tensor | None = None  # the last step's output, to spot reshapes done in forward()

    def hook(module: nn.Module, inputs, output, *, name: str) -> None:  # noqa: ANN001
        nonlocal previous
        tensor = _first_tensor(output)
        if tensor is None:  # a layer that returns no tensor has no shape to show
            return
        given, reshape = _first_tensor(inputs), None
        if given is not None and previous is not None and given.shape != previous.shape \
                and given.numel() == previous.numel() \
                and given.untyped_storage().data_ptr() == previous.untyped_storage().data_ptr():
            reshape = tuple(previous.shape), tuple(given.shape)  # same memory and size, new shape: not another branch
        values = tensor.detach().float()
        low, high = (float(values.min()), float(values.max())) if values.numel() else (None, None)
        steps.append(Step(name, type(module).__name__, tuple(tensor.shape), str(tensor.dtype).removeprefix("torch."),
                          low, high, reshape))
        previous = tensor

    handles = [module.register_forward_hook(functools.partial(hook, name=name))
               for name, module in model.named_modules() if name and next(module.children(), None) is None]
    was_training = model.training
    model.eval()  # inference semantics: BatchNorm uses its running statistics, Dropout passes everything
    try:
        with torch.no_grad():
            output = model(batch)
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    return steps, output


def _first_tensor(value) -> torch.Tensor | None:  # noqa: ANN001
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, (tuple, list)):
        return next((v for v in value if isinstance(v, torch.Tensor)), None)
    return None


def _shape(shape: tuple[int, ...]) -> str:
    return "[" + ", ".join(map(str, shape)) + "]"


def _range(low: float | None, high: float | None) -> str:
    return "(empty)" if low is None else f"{low:.3g} .. {high:.3g}"


def explain(name: str, input_shape: str | tuple[int, int, int] | None, *, batch_size: int = 4,
            num_classes: int = 10, width: float = 1.0, seed: int = 0) -> str:
    """The step-by-step text of `visiontrain explain-shapes`: image -> batch -> every layer -> logits.
    input_shape: (C, H, W) or its text ('1x28x28'), checked after the model name and the numbers."""
    MODELS.get(name)  # an unknown name first: UnknownNameError suggests the closest ones
    if batch_size < 1:
        raise ConfigError(f"--batch-size: {batch_size} is out of range; use a whole number >= 1")
    if num_classes < 1:
        raise ConfigError(f"--num-classes: {num_classes} is out of range; use a whole number >= 1")
    channels, height, width_px = input_shape if isinstance(input_shape, tuple) else parse_input(input_shape)
    with torch.random.fork_rng(devices=[]):  # the same text every time, without touching the caller's RNG
        torch.manual_seed(seed)
        try:
            model = create_model(name, num_classes=num_classes, in_channels=channels, image_size=height, width=width)
        except ValueError as error:
            raise ConfigError(f"--model {name}: {error}") from None
        batch = torch.randn(batch_size, channels, height, width_px)  # like normalised pixels: mean 0, std 1
        try:
            steps, output = trace(model, batch)
        except (RuntimeError, ValueError, AssertionError) as error:  # a map that shrinks below 1 px; ViT: 224 only
            first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise ConfigError(f"--input {channels}x{height}x{width_px} is too small or the wrong shape for model "
                              f"{name} ({first}); try a larger image such as 3x224x224") from None
    image = (channels, height, width_px)
    images = f"{batch_size} image{'s' if batch_size > 1 else ''}"
    lines = [f"{name}: one random batch of {images} walked through the network, layer by layer "
             "(eval mode: BatchNorm uses its running statistics, Dropout is off)",
             f"Image {_shape(image)} -> Batch {_shape((batch_size, *image))}   (C channels, H x W pixels; "
             f"{images} stacked on a new first axis B)",
             f"  input   {_shape(tuple(batch.shape)):<20} {str(batch.dtype).removeprefix('torch.'):<9} "
             f"{_range(float(batch.min()), float(batch.max()))}   (random, like normalised pixels)"]
    label = max([24, *(len(s.name) + len(s.kind) + 3 for s in steps)])
    for index, step in enumerate(steps, 1):
        if step.reshape is not None:
            before, after = map(_shape, step.reshape)
            lines.append(f"       forward() reshapes {before} -> {after} between layers")
        lines.append(f"{index:>5}. {f'{step.name} ({step.kind})':<{label}} {_shape(step.shape):<20} {step.dtype:<9} "
                     f"{_range(step.low, step.high)}")
    logits = _first_tensor(output)
    lines.append(f"Output {_shape(tuple(logits.shape))}: one score (logit) per class for each of the {images}; "
                 f"softmax over the last axis turns each row into probabilities, argmax picks the class")
    return "\n".join(lines)
