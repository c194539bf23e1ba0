"""The one build step: a config becomes everything a run needs, `build(config) -> Setup`.

fit trains a Setup, lr-find sweeps its learning rate, show-batch draws its first batches (the data stage alone:
`build_data`), eject writes its model and augmentation out (`create_model`, `augment_spec`). So what each of them
does to the data, the model and the optimiser is, by construction, what training does.

The steps, in the order a run takes them (the RNG is drawn in this order, so runs and resumes are exact):
runtime (threads, determinism, device, torchrun, precision) -> data (the pretrained backbone's input size, the
dataset, the overfit batch, the batch fitted to the split) -> model (seeded initialisation or pretrained weights,
the normaliser, data-fitted layers, a --weights file) -> the selection metric, loader, optimiser, schedule, EMA,
lookahead and the Trainer.
"""
from __future__ import annotations

import os
import platform
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .._registry import PRESETS
from .._version import __version__
from ..config import Config
from ..data import Dataset, load_dataset_of
from ..data.augment import augment_spec, image_flips
from ..data.loader import FixedBatchLoader, TensorLoader, fit_batch_to_split
from ..data.mapped import place_on_device
from ..errors import CheckpointError, ConfigError, DataError, TrainingStopped
from ..models import create_model as _create_model
from ..models.pretrained import PRETRAINED, pretrained_model, pretraining_preprocessing
from ..models.weights import fitting_tensors, load_state_dict_file
from .distributed import DistEnv, init_distributed
from .ema import EMA, Lookahead
from .imbalance import Selection, choose_selection, inverse_frequency, notice, sample_weights
from .loop import Normalizer, Trainer, predict_logits
from .optim import build_optimizer, build_scheduler
from .overfit import prepare
from .precision import Precision, choose_precision, resolve_device

Pretraining = tuple[int, list[float], list[float]]  # a pretrained backbone's (input size, mean, std)


@dataclass
class Setup:
    """Everything a run trains with; fit adds the run folder, checkpoints and the epochs."""

    config: Config  # as it runs: the backbone's image size, the batch fitted to the split, the overfit check's
    device: torch.device
    env: DistEnv
    precision: Precision
    dataset: Dataset  # what trains (the overfit check: its one batch)
    loaded: Dataset  # the dataset as loaded (its split is what split.csv records)
    model: nn.Module  # the plain model: checkpoints and evaluation use it (trainer.model may be DDP or compiled)
    mean: list[float]
    std: list[float]
    normalize: Normalizer
    selection: Selection  # the metric that keeps the best epoch
    finetune: str  # full, head or gradual
    loader: TensorLoader
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    trainer: Trainer
    ema: EMA | None = None
    lookahead: Lookahead | None = None
    trainable: set[int] = field(default_factory=set)  # ids of the parameters the model itself lets train

    def set_backbone_frozen(self, frozen: bool) -> None:
        """Fine-tuning: train only the new head (backbone weights and BatchNorm statistics fixed) or everything."""
        if self.finetune == "full":
            return
        head = set(map(id, self.model.fc.parameters()))
        for parameter in self.model.parameters():
            if id(parameter) in self.trainable and id(parameter) not in head:  # never thaw what the model froze
                parameter.requires_grad_(not frozen)
        self.trainer.frozen_backbone = frozen

    def describe(self) -> dict[str, Any]:
        """What summary.json records of how the run was built (the results are fit's to add)."""
        config, env, selection = self.config, self.env, self.selection
        return {
            "distributed": {"world_size": env.world_size, "global_batch_size": config.batch_size * config.accumulate
                            * env.world_size, "sync_bn": config.sync_bn and env.enabled,
                            "lr_scaling": "none: --lr is used as given for the global batch"},
            "parameters": sum(p.numel() for p in self.model.parameters()),
            "finetune": {"mode": self.finetune, "pretrained": config.pretrained, "weights": config.weights,
                         "head_epochs": config.head_epochs if self.finetune == "gradual" else None,
                         "backbone_lr": config.backbone_lr if config.pretrained or config.weights else 1.0},
            "model_kept": f"best (by validation {selection.metric.replace('_', ' ')})" if selection.metric
            else "last epoch",
            "selection_metric": selection.metric, "selection_reason": selection.reason,
            "imbalance": {"train_ratio": selection.imbalance_ratio, "threshold": config.imbalance_threshold,
                          "class_weights": config.class_weights, "sampler": config.sampler},
            "dataset": self.dataset.describe() | {"mean": self.mean, "std": self.std},
            "augmentation": self.trainer.augment.describe(), "decode_policy": self.dataset.decode_policy,
            "hardware": self.precision.describe() | {"inference_precision": config.inference_precision,
                                                     "threads": torch.get_num_threads(),
                                                     "cpu": platform.processor() or platform.machine()},
            "versions": {"visiontrain": __version__, "torch": torch.__version__, "python": platform.python_version()},
        }

    def validation_logits(self, images: torch.Tensor) -> torch.Tensor:
        """Logits of the training model (with its EMA weights if any), in the training precision: the per-epoch
        validation and the overfit check. What a run reports on its test split goes through Predictor instead."""
        if self.ema is not None:
            backup = {k: v.clone() for k, v in self.model.state_dict().items()}
            self.model.load_state_dict(self.ema.state_dict())
        logits = predict_logits(self.model, images, self.normalize, batch_size=self.config.eval_batch_size,
                                allow_flip=self.dataset.allow_flip)
        if self.ema is not None:
            self.model.load_state_dict(backup)
        return logits


def build(config: Config, *, split_file: str | Path | None = None, notices: bool = True) -> Setup:
    """Build a run from its config. split_file: the run's own split.csv (a resumed run keeps its split).
    notices: print the imbalance notice (a resumed run said it already)."""
    device, env, precision = runtime(config)
    config, loaded, data, pretraining = build_data(config, env, split_file=split_file, verbose=env.is_main)
    model, mean, std, normalize = build_model(config, data, pretraining, precision)
    model.to(device)
    if precision.channels_last:
        model.to(memory_format=torch.channels_last)
    # the metric that keeps the best epoch, and the imbalance remedies (engine/imbalance.py)
    selection = choose_selection(data.train.labels, len(data.classes), config.imbalance_threshold, data.val is not None)
    text = notice(selection, config.class_weights, config.sampler)
    if text and notices and env.is_main and not config.overfit_batch:  # not a 32-image batch's balance
        print(f"visiontrain: {text}", file=sys.stderr)
    class_weights = inverse_frequency(data.train.labels, len(data.classes)).to(device) \
        if config.class_weights == "auto" else None
    loader = FixedBatchLoader(len(data.train), config.overfit_steps) if config.overfit_batch else TensorLoader(
        len(data.train), config.batch_size, seed=config.seed, rank=env.rank, world_size=env.world_size,
        weights=sample_weights(data.train.labels, len(data.classes)) if config.sampler == "balanced" else None)
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    from_weights = config.pretrained or config.weights is not None
    finetune = config.finetune if config.finetune != "auto" else ("gradual" if from_weights else "full")
    optimizer = build_optimizer(model, config, backbone_lr=config.backbone_lr if from_weights else 1.0)
    optimizer_steps = loader.steps_per_epoch // config.accumulate  # per epoch
    scheduler = build_scheduler(optimizer, config, optimizer_steps)
    ema = EMA(model, config.ema) if config.ema else None
    lookahead = Lookahead(model, optimizer_steps * config.epochs) if config.lookahead else None
    model, module = _wrapped(model, config, env, device, finetune)
    trainer = Trainer(
        model=module, optimizer=optimizer, scheduler=scheduler,
        criterion=nn.CrossEntropyLoss(weight=class_weights, label_smoothing=config.label_smoothing), loader=loader,
        images=place_on_device(data.train.images, device),  # whole if it fits, else per batch
        labels=data.train.labels, normalize=normalize,
        augment=augment_spec(config, data.allow_flip, data.pad_mode), seed=config.seed,
        accumulate=config.accumulate, clip_grad=config.clip_grad, ema=ema,
        scaler=torch.amp.GradScaler(device.type) if precision.grad_scaler else None,
        sync_every=32 if device.type == "cuda" else 1, lookahead=lookahead,
        flips=image_flips(config.flip_mode, len(data.train), config.seed), stage_epochs=device.type == "cuda",
        num_classes=len(data.classes))
    return Setup(config=config, device=device, env=env, precision=precision, dataset=data, loaded=loaded, model=model,
                 mean=mean, std=std, normalize=normalize, selection=selection, finetune=finetune, loader=loader,
                 optimizer=optimizer, scheduler=scheduler, trainer=trainer, ema=ema, lookahead=lookahead,
                 trainable=trainable)


# -- the steps ----------------------------------------------------------------------------------------------------
def runtime(config: Config) -> tuple[torch.device, DistEnv, Precision]:
    """Threads, determinism, the device (one sentence when a GPU preset meets a CPU), torchrun's process group and
    the precision."""
    if config.threads:
        torch.set_num_threads(config.threads)
    if config.deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # cuBLAS needs it for reproducible GEMMs
        # warn_only: an op with no deterministic CUDA kernel (e.g. AdaptiveAvgPool2d's backward in torchvision's
        # ResNets) warns, naming itself, instead of stopping the run; visiontrain's own networks avoid such ops
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
    try:
        device = resolve_device(config.device)
    except ConfigError as error:
        preset = PRESETS.get(config.preset) if config.preset in PRESETS else {}
        if preset.get("device") == config.device:  # the device came from a GPU preset, not from the user
            raise ConfigError(f"{error} (the {config.preset} preset is for a GPU: add --device cpu to run it here, "
                              "or use a CPU preset such as --preset cifar10)") from None
        raise
    env = init_distributed(device.type)
    if env.enabled and device.type == "cuda":
        device = torch.device("cuda", env.local_rank)
        torch.cuda.set_device(device)
    precision = choose_precision(config.precision, device, config.channels_last)
    if device.type == "cuda" and not config.deterministic:
        torch.backends.cudnn.benchmark = True  # fixed input shapes: let cuDNN time its algorithms once
    return device, env, precision


def build_data(config: Config, env: DistEnv | None = None, *, split_file: str | Path | None = None,
               verbose: bool = True) -> tuple[Config, Dataset, Dataset, Pretraining | None]:
    """(config, the dataset as loaded, the dataset that trains, the pretrained backbone's preprocessing or None).

    The config comes back as it runs: a pretrained backbone's input size when none was given, the overfit check's
    one batch, and a batch (and accumulation) fitted to a small split, each said in one line."""
    env = env or DistEnv()
    pretraining = None  # (size, mean, std) of --pretrained weights: an installed package's or --weights FILE's
    if config.pretrained:
        if config.model in PRETRAINED or config.weights:
            pretraining = pretraining_preprocessing(config.model)  # None for visiontrain's own networks
        if pretraining is not None and config.image_size is None:  # the backbone's size, in config.yaml
            config = config.replace(image_size=pretraining[0])
    loaded = data = load_dataset_of(config, split_file=split_file, verbose=verbose)
    if config.overfit_batch:  # the sanity check: one fixed batch is the whole training split (engine/overfit.py)
        config, data = prepare(config, data)
    else:  # a small folder trains with the defaults: the batch shrinks to the split
        try:
            batch_size, accumulate, notes = fit_batch_to_split(config.batch_size, config.accumulate, len(data.train),
                                                               env.world_size)
        except ValueError as error:
            raise DataError(f"dataset {config.dataset}: {error}") from None
        if notes:
            config = config.replace(batch_size=batch_size, accumulate=accumulate)
            for note in notes if verbose else ():
                print(f"visiontrain: {note}", file=sys.stderr)
    if data.bad_files and verbose:
        more = f"; and {len(data.bad_files) - 10} more (all in summary.json)" if len(data.bad_files) > 10 else ""
        print(f"visiontrain: skipped {len(data.bad_files)} unreadable file(s): "
              + "; ".join(f"{p}: {r}" for p, r in data.bad_files[:10]) + more, file=sys.stderr)
    return config, loaded, data, pretraining


def create_model(config: Config, num_classes: int, in_channels: int, image_size: int) -> nn.Module:
    """The config's model for this data, randomly initialised; a model that cannot take it is one sentence."""
    try:
        return _create_model(config.model, num_classes=num_classes, in_channels=in_channels, image_size=image_size,
                             width=config.width)
    except ValueError as error:
        raise TrainingStopped(f"model {config.model}: {error}", exit_code=2) from None


def build_model(config: Config, data: Dataset, pretraining: Pretraining | None, precision: Precision
                ) -> tuple[nn.Module, list[float], list[float], Normalizer]:
    """(model, mean, std, normaliser): seeded initialisation or pretrained weights (whose preprocessing every
    checkpoint then records), layers fitted to the data (fastnet's whitening), then a --weights file."""
    torch.manual_seed(config.seed)
    mean, std = data.mean, data.std
    if not config.pretrained:
        model = create_model(config, len(data.classes), data.in_channels, data.image_size)
    else:
        if pretraining is not None and config.model not in PRETRAINED:  # --pretrained --weights FILE: the file
            model = create_model(config, len(data.classes), data.in_channels, data.image_size)  # loads below
        else:  # an installed package's weights, or the error that says none are available
            model, _ = pretrained_model(config.model, num_classes=len(data.classes), in_channels=data.in_channels,
                                        image_size=data.image_size)
        _, mean, std = pretraining
        # the summed RGB filters see a gray image: normalise it with the mean statistics
        mean, std = ([sum(mean) / 3], [sum(std) / 3]) if data.in_channels == 1 else (list(mean), list(std))
    normalize = Normalizer(mean, std, precision)
    if hasattr(model, "init_from_data"):  # e.g. fastnet's whitening layer, fitted to training patches
        order = torch.randperm(len(data.train), generator=torch.Generator().manual_seed(config.seed))[:5000]
        model.init_from_data(normalize(data.train.images[order].to(precision.device)).float().contiguous().cpu())
    if config.weights:
        _load_weights(model, Path(config.weights), config.model)
    return model, mean, std, normalize


def _load_weights(model: nn.Module, path: Path, name: str) -> None:
    state = load_state_dict_file(path)
    usable = fitting_tensors(state, model.state_dict())
    if not usable:
        raise CheckpointError(f"none of the tensors in {path} fit model {name}; is it for this model?")
    model.load_state_dict(usable, strict=False)
    fitted = {key.removeprefix("features.") for key in usable}
    skipped = [key for key in state if key.removeprefix("features.") not in fitted]
    names = ", ".join(skipped[:4]) + (", ..." if len(skipped) > 4 else "")
    print(f"visiontrain: loaded {len(usable)} tensors from {path}"
          + (f" ({len(skipped)} did not fit this model: {names})" if skipped else ""), file=sys.stderr)


def _wrapped(model: nn.Module, config: Config, env: DistEnv, device: torch.device, finetune: str
             ) -> tuple[nn.Module, nn.Module]:
    """(the plain model, the module the loop calls): the model itself, or its DDP wrapper under torchrun (which
    averages gradients), compiled with --compile. Checkpoints and evaluation use the plain model (same parameters;
    with --sync-bn it is the converted one)."""
    module = model
    if env.enabled:
        if config.sync_bn:
            model = module = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        device_ids = [device.index] if device.type == "cuda" else None
        # head/gradual fine-tuning freezes the backbone (requires_grad off) after DDP built its buckets: DDP must
        # then look for the parameters without a gradient each step, or it fails at the second step
        module = nn.parallel.DistributedDataParallel(model, device_ids=device_ids,
                                                     find_unused_parameters=finetune in ("head", "gradual"))
    return model, torch.compile(module) if config.compile else module
