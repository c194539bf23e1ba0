"""What the model sees: the first training images of a dataset, raw or after the trainer's own augmentation.

Nothing is re-implemented here: the config, the dataset, the batch order and the AugmentSpec come from the build
step `visiontrain train` uses (engine/build.py), and the augmentation parameters of step s are drawn for the whole
batch of that step, exactly as Trainer.batch draws them, so the pictures are the training pixels. `show-batch`
builds the data stage; a run draws plots/augmented_batch.png from its own Setup.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ..config import Config, build_config
from ..data.augment import AugmentSpec, apply, augment_spec, batch_params, image_flips
from ..data.loader import TensorLoader
from ..data.mixing import describe_targets, mix
from ..engine.build import build_data
from ..errors import ConfigError
from ..figures import image_grid

if TYPE_CHECKING:
    from ..data import Dataset
    from ..engine.build import Setup


def first_images(dataset: Dataset, spec: AugmentSpec, loader: TensorLoader, seed: int, flips: torch.Tensor | None,
                 count: int, augmented: bool) -> tuple[torch.Tensor, list[str]]:
    """The first `count` training images of epoch 0 in `loader`'s order, float (N, C, H, W) 0..255 as the trainer
    has them before normalisation, and their class names. Batches are taken in order (step 0, 1, ...) until `count`
    images are collected; each step's parameters are drawn for its full batch."""
    train, images, names = dataset.train, [], []
    for step, indices in loader.batches(0):
        batch = train.images[indices].float()  # (B, C, H, W) 0..255, as Trainer.batch takes it
        captions = [dataset.classes[int(label)] for label in train.labels[indices]]
        if augmented and spec.active:
            params = batch_params(spec, indices, seed, 0, step, flips)
            batch = apply(batch, params, spec)
            if "mix_lambda" in params:  # MixUp/CutMix: the mixed images, captioned with their mixed labels
                batch, targets = mix(batch, train.labels[indices], params, len(dataset.classes))
                captions = describe_targets(targets, dataset.classes)
        images.append(batch[:count - len(names)])
        names += captions[:count - len(names)]
        if len(names) >= count:
            break
    return torch.cat(images), names


def training_batch(config: Config, count: int, augmented: bool, verbose: bool = True
                   ) -> tuple[torch.Tensor, list[str], AugmentSpec, str]:
    """The first `count` training images of `config`'s run: (float (N, C, H, W) 0..255, N class names, the
    AugmentSpec, the dataset name)."""
    config, _, data, _ = build_data(config, verbose=verbose)  # a batch larger than a small folder fits it
    spec = augment_spec(config, data.allow_flip, data.pad_mode)
    loader = TensorLoader(len(data.train), config.batch_size, seed=config.seed)
    flips = image_flips(config.flip_mode, len(data.train), config.seed)
    images, names = first_images(data, spec, loader, config.seed, flips, count, augmented)
    return images, names, spec, data.name


def write_training_batch(built: Setup, path: Path, count: int = 32) -> Path:
    """plots/augmented_batch.png of a run: its first `count` training images after augmentation."""
    images, names = first_images(built.dataset, built.trainer.augment, built.loader, built.config.seed,
                                 built.trainer.flips, count, augmented=True)
    return image_grid(images.round().clamp(0, 255).to(torch.uint8), names, path,
                      title="a training batch after augmentation")


def show_batch(dataset: str, *, augmented: bool = False, data_dir: str | None = None, count: int = 32,
               output: str | Path | None = None, seed: int = 0, verbose: bool = True, **fields: Any) -> Path:
    """Write a labelled grid of the first `count` training images (raw, or augmented as in training) as a PNG.

    The config is the one `visiontrain train --dataset DATASET` would resolve (the dataset's preset included);
    `fields` override single config fields, e.g. augment="crop+flip", augment="photo" or rotation=10.
    """
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
    title = f"{name}: the first {len(names)} training images of epoch 1, seed {config.seed},\n{how}"
    # rounding is the only step the trainer does not take: it feeds the float pixels to the model
    return image_grid(images.round().clamp(0, 255).to(torch.uint8), names, output, title=title)
