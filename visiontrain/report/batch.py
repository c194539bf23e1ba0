"""What the model sees: the first training images of a dataset, raw or after the trainer's own augmentation.

Nothing is re-implemented here: the config, the dataset split, the batch order and the AugmentSpec come from the
same functions `visiontrain train` uses (engine/fit.py), and the augmentation parameters of step s are drawn for
the whole batch of that step, exactly as Trainer.batch draws them, so the pictures are the training pixels.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import torch

from ..config import Config, ConfigError, build_config
from ..data.augment import AugmentSpec


def training_batch(config: Config, count: int, augmented: bool, verbose: bool = True
                   ) -> tuple[torch.Tensor, list[str], AugmentSpec, str]:
    """The first `count` training images of epoch 0 as the trainer sees them before normalisation.

    Returns (float (N, C, H, W) 0..255, N class names, the AugmentSpec, the dataset name). Batches are taken in
    order (step 0, 1, ...) until `count` images are collected; each step's parameters are drawn for its full batch.
    """
    from ..data.augment import apply, batch_params, image_flips
    from ..data.loader import TensorLoader
    from ..engine.fit import augment_spec, load_config_dataset

    data = load_config_dataset(config, verbose=verbose)
    spec = augment_spec(config, data)
    train = data.train
    # a folder smaller than one batch cannot train, but it can still be looked at: one batch of everything
    loader = TensorLoader(len(train), min(config.batch_size, len(train)), seed=config.seed)
    flips = image_flips(config.flip_mode, len(train), config.seed)
    images, names = [], []
    for step, indices in loader.batches(0):
        batch = train.images[indices].float()  # (B, C, H, W) 0..255, as Trainer.batch takes it
        if augmented and spec.active:
            batch = apply(batch, batch_params(spec, indices, config.seed, 0, step, flips), spec)
        images.append(batch[:count - len(names)])
        names += [data.classes[int(label)] for label in train.labels[indices[:count - len(names)]]]
        if len(names) >= count:
            break
    return torch.cat(images), names, spec, data.name


def show_batch(dataset: str, *, augmented: bool = False, data_dir: str | None = None, count: int = 32,
               output: str | Path | None = None, seed: int = 0, verbose: bool = True, **fields: Any) -> Path:
    """Write a labelled grid of the first `count` training images (raw, or augmented as in training) as a PNG.

    The config is the one `visiontrain train --dataset DATASET` would resolve (the dataset's preset included);
    `fields` override single config fields, e.g. augment="crop+flip", augment="photo" or rotation=10.
    """
    from ..figures import image_grid

    if count < 1:
        raise ConfigError(f"-n: {count} is out of range; show at least 1 image")
    config = build_config({"dataset": dataset, "data_dir": data_dir, "seed": seed} | fields)
    images, names, spec, name = training_batch(config, count, augmented, verbose)
    if augmented and not spec.active and verbose:
        print(f"visiontrain: note: augment is {config.augment!r} for {name}, so the augmented images are the raw ones",
              file=sys.stderr)
    if output is None:
        safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in name)
        output = f"{safe}-batch{'-augmented' if augmented else ''}.png"
    how = f"after augmentation ({spec.describe()})" if augmented else "as stored (no augmentation)"
    title = f"{name}: the first {len(names)} training images of epoch 1, seed {config.seed}, {how}"
    # rounding is the only step the trainer does not take: it feeds the float pixels to the model
    return image_grid(images.round().clamp(0, 255).to(torch.uint8), names, output, title=title)
