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
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from .._registry import PRESETS
from .._version import __version__
from ..config import Config
from ..data import Dataset, load_dataset_of, subsample, subset_note, typical_side
from ..data.augment import augment_spec, image_flips
from ..data.loader import FixedBatchLoader, TensorLoader, fit_batch_to_split
from ..data.mapped import place_on_device
from ..errors import CheckpointError, ConfigError, DataError, TrainingStopped
from ..metrics.classification import balanced_accuracy
from ..models import create_model as _create_model
from ..data.memory import from_python
from ..models.own import as_classifier, call_builder
from ..models.pretrained import fetch_pretrained, input_size_for, pretrained_model, pretraining_preprocessing
from ..models.weights import fitting_tensors, load_state_dict_file
from .distributed import DistEnv, init_distributed
from .ema import EMA, Lookahead
from .imbalance import Selection, choose_selection, inverse_frequency, notice, sample_weights
from .loop import Normalizer, Trainer, predict_logits
from .optim import build_optimizer, build_scheduler
from .overfit import prepare
from .precision import Precision, choose_precision, cpu_has_native_bf16, resolve_device
from .probe import ProbeResult, linear_probe

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
    finetune: str  # full, head, gradual or probe
    loader: TensorLoader
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    trainer: Trainer
    ema: EMA | None = None
    lookahead: Lookahead | None = None
    trainable: set[int] = field(default_factory=set)  # ids of the parameters the model itself lets train
    total_steps: int = 0  # training steps (batches per process) of the whole run

    def parts_state(self) -> dict[str, Any]:
        """What a checkpoint holds of the model, the data and the training parts (fit.py adds the run's state)."""
        data = self.dataset
        return {
            "classes": data.classes, "mean": self.mean, "std": self.std,
            "input_size": [data.in_channels, data.image_size, data.image_size], "in_channels": data.in_channels,
            "decode_policy": data.decode_policy, "dataset_fingerprint": data.fingerprint, "allow_flip": data.allow_flip,
            "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict()} | {key: part.state_dict() if part else None
                                                          for key, part in self._optional_parts().items()}

    def load_parts(self, checkpoint: dict[str, Any]) -> None:
        """The weights, optimiser, schedule, EMA, Lookahead and loss scaler from a checkpoint (parts_state's)."""
        self.model.load_state_dict(checkpoint["model"])
        self.optimizer.load_state_dict(checkpoint["optimizer"])
        self.scheduler.load_state_dict(checkpoint["scheduler"])
        for key, part in self._optional_parts().items():
            if part and checkpoint.get(key):
                part.load_state_dict(checkpoint[key])

    def _optional_parts(self) -> dict[str, Any]:
        return {"ema": self.ema, "lookahead": self.lookahead, "scaler": self.trainer.scaler}

    def epoch_steps(self, epoch: int) -> int:
        """The steps of epoch `epoch` (0-based): all of the loader's, but the last of a --max-steps run and none in
        --finetune probe's first."""
        stepped = epoch - probe_epochs(self.finetune)
        return 0 if stepped < 0 else min(self.loader.steps_per_epoch,
                                         self.total_steps - stepped * self.loader.steps_per_epoch)

    def set_backbone_frozen(self, frozen: bool) -> None:
        """Fine-tuning: train only the new head (backbone weights and BatchNorm statistics fixed) or everything.
        After a probe the backbone's weights train but its BatchNorm statistics stay the pretrained ones, those the
        probe's features were computed with: batches of 32 small-folder images replacing them at the first step
        cost the first fine-tuning epoch 20 points of train accuracy (measured: docs/transfer-learning.md)."""
        if self.finetune == "full":
            return
        head = set(map(id, self.model.fc.parameters()))
        for parameter in self.model.parameters():
            if id(parameter) in self.trainable and id(parameter) not in head:  # never thaw what the model froze
                parameter.requires_grad_(not frozen)
        self.trainer.frozen_backbone = frozen or self.finetune == "probe"

    def fit_probe(self, report: Callable[[int, int], None] | None = None) -> ProbeResult:
        """--finetune probe's first epoch: the new head fitted to the frozen backbone's features of the training
        split (engine/probe.py), in place; the EMA and lookahead restart from the probed weights, and under torchrun
        every rank takes rank 0's head (each computed the same probe; a GPU's reductions may differ in the last bit)."""
        result = linear_probe(self.model, self.dataset.train.images, self.dataset.train.labels, self.normalize,
                              num_classes=len(self.dataset.classes), seed=self.config.seed,
                              criterion=self.trainer.criterion, report=report)
        if self.env.enabled:
            for parameter in self.model.fc.parameters():
                torch.distributed.broadcast(parameter.data, src=0)
        for average in (self.ema, self.lookahead):
            if average is not None:
                average.load_state_dict({k: v for k, v in self.model.state_dict().items() if k in average.state})
        return result

    def learning_rates(self, frozen: bool) -> dict[str, float]:
        """The lrs a metrics.csv row records: `lr`, the head's (the schedule of --lr), and, when the run starts from
        weights, head_lr and backbone_lr (0 while the backbone is frozen: --backbone-lr scales it otherwise)."""
        head = set(map(id, self.model.fc.parameters()))
        lrs = {"head": None, "backbone": None}
        for group in self.optimizer.param_groups:  # the first group of each: its weights (decayed, not scaled)
            part = "head" if any(id(p) in head for p in group["params"]) else "backbone"
            lrs[part] = group["lr"] if lrs[part] is None else lrs[part]
        head_lr = lrs["head"] if lrs["head"] is not None else lrs["backbone"]
        if self.finetune == "full":
            return {"lr": head_lr}
        return {"lr": head_lr, "head_lr": head_lr, "backbone_lr": 0.0 if frozen else lrs["backbone"]}

    def replan(self, config: Config) -> None:
        """Take `config`'s epochs and max_steps (a --time plan): the schedule and lookahead are built again for the
        new number of steps, as build() would have built them from the start (the optimiser has not stepped)."""
        self._schedule_for(config)
        if self.lookahead is not None:
            self.lookahead = self.trainer.lookahead = Lookahead(self.model, self.total_steps // self.config.accumulate)

    def resize(self, total: int) -> None:
        """A --time plan revised mid-run (engine/budget.resize_plan): `total` training steps in all, the epochs that
        reach them, and the schedule built again for them and placed at the step the run has reached, so the learning
        rate from there on follows the new schedule to its end. (Lookahead keeps its count: it syncs every k steps.)"""
        done, spe = self.scheduler.last_epoch, self.loader.steps_per_epoch
        self._schedule_for(self.config.replace(epochs=probe_epochs(self.finetune) + -(-total // spe), max_steps=total))
        self.scheduler.last_epoch = done - 1
        with warnings.catch_warnings():  # "scheduler.step() before optimizer.step()": none is skipped here
            warnings.simplefilter("ignore", UserWarning)
            self.scheduler.step()

    def _schedule_for(self, config: Config) -> None:
        """config's epochs and steps (planned_steps), and a schedule built for them from its start."""
        self.config, self.total_steps = planned_steps(config, self.loader.steps_per_epoch, probe_epochs(self.finetune))
        accumulate = self.config.accumulate
        self.scheduler = self.trainer.scheduler = build_scheduler(
            self.optimizer, self.config, self.loader.steps_per_epoch // accumulate, self.total_steps // accumulate)

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
                         "probe_epochs": 1 if self.finetune == "probe" else None,
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

    def validation_metrics(self) -> dict[str, float]:
        """The epoch's row of metrics.csv for the validation split: loss, accuracy, and the balanced accuracy when
        imbalanced training classes keep the best epoch by it."""
        val = self.dataset.val
        logits = self.validation_logits(val.images)
        row = {"val_loss": nn.functional.cross_entropy(logits, val.labels).item(),
               "val_acc": (logits.argmax(1) == val.labels).double().mean().item()}
        if self.selection.balanced:
            row["val_balanced_acc"] = balanced_accuracy(logits.argmax(1), val.labels, len(val.classes))
        return row


def build(config: Config, *, split_file: str | Path | None = None, notices: bool = True, model: Any = None,
          data: Any = None, data_of: Setup | None = None) -> Setup:
    """Build a run from its config. split_file: the run's own split.csv (a resumed run keeps its split).
    notices: print the imbalance notice (a resumed run said it already). model, data: a model and data passed from
    Python (visiontrain.train(model=..., data=...)) instead of the ones the config names. data_of: a Setup whose
    runtime and data (already loaded, split and said) this one trains on, with another of visiontrain's own networks
    (a --time plan's network for long budgets: engine/budget.py)."""
    if data_of is not None:
        device, env, precision = data_of.device, data_of.env, data_of.precision
        loaded, data, pretraining = data_of.loaded, data_of.dataset, None
    else:
        device, env, precision = runtime(config)
        if env.is_main:
            config, size = input_size(config, data)  # said on the first line: it sets the cost of every step
            print(f"visiontrain: {start_line(config, device, precision, env, size)}", file=sys.stderr, flush=True)
        config, loaded, data, pretraining = build_data(config, env, split_file=split_file, verbose=env.is_main,
                                                       data=data)
    model, mean, std, normalize = build_model(config, data, pretraining, precision, model=model)
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
    finetune = finetune_mode(config)
    optimizer = build_optimizer(model, config, backbone_lr=config.backbone_lr if from_weights else 1.0)
    config, total_steps = planned_steps(config, loader.steps_per_epoch, probe_epochs(finetune))
    optimizer_steps = loader.steps_per_epoch // config.accumulate  # per epoch
    scheduler = build_scheduler(optimizer, config, optimizer_steps, total_steps // config.accumulate)
    ema = EMA(model, config.ema) if config.ema else None
    lookahead = Lookahead(model, total_steps // config.accumulate) if config.lookahead else None
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
                 trainable=trainable, total_steps=total_steps)


def planned_steps(config: Config, steps_per_epoch: int, probe: int = 0) -> tuple[Config, int]:
    """(config, the run's training steps): steps per epoch x the epochs that take steps (all but the `probe` first
    ones: --finetune probe's first epoch fits the head without a step), or --max-steps when that is fewer (the epochs
    then cut to those the steps reach, the last one partial)."""
    total = steps_per_epoch * max(0, config.epochs - probe)
    if config.max_steps is not None and config.max_steps < total:
        total = config.max_steps
        config = config.replace(epochs=probe + -(-total // steps_per_epoch))
    return config, total


def probe_epochs(finetune: str) -> int:
    """Epochs at the start of the run that take no optimiser step: 1 for --finetune probe (the linear probe)."""
    return 1 if finetune == "probe" else 0


# -- the steps ----------------------------------------------------------------------------------------------------
def finetune_mode(config: Config) -> str:
    """full, head, gradual or probe: --finetune, with auto resolved (probe from pretrained or --weights, else full)."""
    if config.finetune != "auto":
        return config.finetune
    return "probe" if config.pretrained or config.weights is not None else "full"


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


def start_line(config: Config, device: torch.device, precision: Precision, env: DistEnv, size: str | None = None
               ) -> str:
    """The line every run starts with: the recipe, the device, the precision and the threads, e.g.
    'preset fashion-mnist · cpu · bf16 (native) · 2 threads'. A model named without --preset trains with plain
    defaults rather than the dataset's tuned recipe; the line says so, and how to have both. `size`: a pretrained
    backbone's input size chosen from the data (size_notice)."""
    if config.preset:
        recipe = f"preset {config.preset}"
    elif config.dataset in PRESETS:  # build_config applies the dataset's own preset unless a model is named
        recipe = (f"no preset: --model given, so plain defaults; add --preset {config.dataset} for the tuned recipe "
                  "(flags still override it)")
    else:
        recipe = "no preset"
    dtype = precision.describe()["precision"]
    if device.type == "cpu" and dtype == "bf16":
        dtype += " (native)" if cpu_has_native_bf16() else " (emulated: slower than fp32 on this CPU)"
    where = f"cuda ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else str(device)
    threads = torch.get_num_threads()
    parts = [recipe, where, dtype, f"{threads} thread{'s' * (threads != 1)}"]
    if env.world_size > 1:
        parts.append(f"{env.world_size} processes")
    if size:
        parts.append(size)
    dot = " \u00b7 " if _encodable("\u00b7", sys.stderr) else " - "
    return dot.join(parts)


def _encodable(text: str, stream: Any) -> bool:
    try:
        text.encode(getattr(stream, "encoding", None) or "ascii")
    except (UnicodeEncodeError, LookupError):
        return False
    return True


def build_data(config: Config, env: DistEnv | None = None, *, split_file: str | Path | None = None,
               verbose: bool = True, data: Any = None) -> tuple[Config, Dataset, Dataset, Pretraining | None]:
    """(config, the dataset as loaded, the dataset that trains, the pretrained backbone's preprocessing or None).

    The config comes back as it runs: a pretrained backbone's input size when none was given, the overfit check's
    one batch, and a batch (and accumulation) fitted to a small split, each said in one line. `data`: a torch
    Dataset, tensors or a dict of splits from Python (data/memory.py), converted instead of loading config.dataset."""
    env = env or DistEnv()
    pretraining = None  # (size, mean, std) of --pretrained weights: a package's, torchvision's, timm's, --weights'
    if config.pretrained:
        pretraining = pretraining_preprocessing(config.model)  # None for visiontrain's own networks
        if pretraining is not None and not config.weights:
            fetch_pretrained(config.model)  # downloaded (once) or refused before the data is read
        config, size = input_size(config, data)  # build() chose it already, for its first line
        if size and verbose:
            print(f"visiontrain: {size}", file=sys.stderr)
    if data is not None:
        loaded = data = from_python(data, name=config.dataset, val_fraction=config.val_fraction, seed=config.seed,
                                    image_size=config.image_size, channels=config.channels)
    else:
        loaded = data = load_dataset_of(config, split_file=split_file, verbose=verbose)
    data = subsample(loaded, fraction=config.fraction, limit=config.limit, seed=config.seed)  # split.csv: all
    if data.subset and verbose:
        print(f"visiontrain: {subset_note(data.subset)}", file=sys.stderr)
    if config.overfit_batch:  # the sanity check: one fixed batch is the whole training split (engine/overfit.py)
        config, data = prepare(config, data)
    else:  # a small folder trains with the defaults: the batch shrinks to the split
        try:
            batch_size, notes = config.batch_size, []
            if finetune_mode(config) == "probe":  # enough fine-tuning steps on a few hundred images
                batch_size, notes = probe_batch(config.batch_size, len(data.train) // env.world_size)
            batch_size, accumulate, more = fit_batch_to_split(batch_size, config.accumulate, len(data.train),
                                                              env.world_size)
            notes += more
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


def input_size(config: Config, data: Any = None) -> tuple[Config, str | None]:
    """(config, what was chosen): a pretrained backbone's input size when none is given, chosen from the images'
    side before anything is decoded (models/pretrained.py input_size_for) and kept in config.yaml; for `data` from
    Python, the backbone's own size."""
    pretraining = pretraining_preprocessing(config.model) if config.pretrained and config.image_size is None else None
    if pretraining is None:
        return config, None
    side = typical_side(config) if data is None else None
    config = config.replace(image_size=input_size_for(pretraining[0], side))
    return config, size_notice(config.model, pretraining[0], side, config.image_size)


def size_notice(model: str, native: int, side: int | None, size: int) -> str:
    """The first line of a pretrained run: the backbone's size, the images', and the one it trains at."""
    if side is not None and side < native:
        return (f"{model} is pretrained at {native} px; your images are {side} px: training at {size} px "
                "(--image-size to choose)")
    return f"{model} is pretrained at {native} px: training at {size} px (--image-size to choose)"


MIN_STEPS_PER_EPOCH = 8  # --finetune probe on a small split: the batch shrinks until an epoch has this many steps
MIN_PROBE_BATCH = 16  # ... but no further (BatchNorm statistics of smaller batches are noisy)


def probe_batch(batch_size: int, per_rank: int) -> tuple[int, list[str]]:
    """(batch size, notes): the batch of a fine-tune after the probe, whose length is counted in optimiser steps. A
    few hundred images at --batch-size 128 make 2 steps an epoch, 18 in the 9 epochs after the probe: too few to
    fine-tune. The batch halves (to at least MIN_PROBE_BATCH) until an epoch has MIN_STEPS_PER_EPOCH steps."""
    chosen = batch_size
    while per_rank // chosen < MIN_STEPS_PER_EPOCH and chosen // 2 >= MIN_PROBE_BATCH:
        chosen //= 2
    if chosen == batch_size:
        return batch_size, []
    return chosen, [f"fine-tuning {per_rank} training images: batch_size {chosen} ({per_rank // chosen} steps per "
                    f"epoch; {batch_size} would make {max(1, per_rank // batch_size)}), --batch-size to choose"]


def create_model(config: Config, num_classes: int, in_channels: int, image_size: int) -> nn.Module:
    """The config's model for this data, randomly initialised; a model that cannot take it is one sentence."""
    try:
        return _create_model(config.model, num_classes=num_classes, in_channels=in_channels, image_size=image_size,
                             width=config.width)
    except ValueError as error:
        raise TrainingStopped(f"model {config.model}: {error}", exit_code=2) from None


def build_model(config: Config, data: Dataset, pretraining: Pretraining | None, precision: Precision,
                model: Any = None) -> tuple[nn.Module, list[float], list[float], Normalizer]:
    """(model, mean, std, normaliser): seeded initialisation or pretrained weights (whose preprocessing every
    checkpoint then records), layers fitted to the data (fastnet's whitening), then a --weights file. `model`: an
    nn.Module or a builder passed from Python, used instead of the registry's (models/own.py)."""
    torch.manual_seed(config.seed)
    mean, std = data.mean, data.std
    if model is not None:
        model = own_model(model, config, data)
    elif not config.pretrained:
        model = create_model(config, len(data.classes), data.in_channels, data.image_size)
    else:
        if pretraining is not None and config.weights:  # --pretrained --weights FILE: the file loads below, with
            model = create_model(config, len(data.classes), data.in_channels, data.image_size)  # its preprocessing
        else:  # a package's weights, torchvision's or timm's (downloaded once), or the sentence that says why not
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


def own_model(model: Any, config: Config, data: Dataset) -> nn.Module:
    """A model passed from Python, built if it is a builder, behind the Classifier interface, and checked on one
    batch of zeros: it must take the data's images and return one logit per class (said in one sentence if not)."""
    if config.pretrained:
        raise ConfigError(f"pretrained: {config.model} is a model passed from Python, which brings its own weights; "
                          "leave pretrained off (weights=FILE loads a state dict into it)")
    shape = (data.in_channels, data.image_size, data.image_size)
    try:
        built = model if isinstance(model, nn.Module) else call_builder(
            model, config.model, num_classes=len(data.classes), in_channels=shape[0], image_size=shape[1],
            width=config.width)
        classifier = as_classifier(built, f"model {config.model}")
    except ValueError as error:
        raise TrainingStopped(f"model {config.model}: {error}", exit_code=2) from None
    parameter = next(classifier.parameters(), None)
    was_training = classifier.training
    try:
        with torch.no_grad():  # also materialises lazy layers (nn.LazyLinear) before the optimiser sees them
            logits = classifier.eval()(torch.zeros(2, *shape, device=parameter.device if parameter is not None
                                                   else "cpu"))
    except Exception as error:  # noqa: BLE001 - the user's forward: whatever it raises, said in one sentence
        raise ConfigError(f"model: {config.model} fails on a batch of {'x'.join(map(str, shape))} images "
                          f"({type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}); it must take "
                          f"float (N, {', '.join(map(str, shape))}) images") from None
    finally:
        classifier.train(was_training)
    if not isinstance(logits, torch.Tensor) or tuple(logits.shape) != (2, len(data.classes)):
        got = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise ConfigError(f"model: {config.model} returns {got} for 2 images, but the data has {len(data.classes)} "
                          f"classes; it must return logits of shape (N, {len(data.classes)})")
    return classifier


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
