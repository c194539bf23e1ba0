"""fit(config): data -> model -> epochs of the loop -> checkpoints, metrics.csv -> test evaluation -> summary.

Also exact resume: everything a run's future depends on (weights, optimiser, schedule, EMA, RNG, position in
the epoch, running sums) is in its checkpoint, and data order and augmentation are functions of (seed, epoch,
step), so a resumed run replays what the uninterrupted one would have done.
"""
from __future__ import annotations

import dataclasses
import os
import platform
import signal
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .._version import __version__
from .._io import remove_stale_temp_files
from .._registry import PRESETS
from ..config import Config, ConfigError
from ..data import Dataset, load_dataset
from ..data.augment import PHOTO_JITTER, AugmentSpec, image_flips
from ..data.decode import DecodePolicy
from ..data.loader import FixedBatchLoader, TensorLoader, fit_batch_to_split
from ..data.mapped import place_on_device
from ..data.splitfile import record_split
from ..errors import CheckpointError, DataError, TrainingStopped
from ..metrics.classification import balanced_accuracy
from ..models import create_model
from ..inference import Predictor, kept_checkpoint
from ..run import RunDir
from ..models.weights import fitting_tensors, load_state_dict_file
from .checkpoint import load_checkpoint, save_checkpoint
from .distributed import (all_reduce_sum, any_rank, broadcast_buffers, broadcast_string, init_distributed, launcher,
                          shutdown)
from .ema import EMA, Lookahead
from .imbalance import choose_selection, inverse_frequency, notice, sample_weights
from .loop import NonFiniteLoss, Normalizer, Trainer, TrainState, predict_logits
from .optim import build_optimizer, build_scheduler
from .precision import choose_precision, resolve_device
from .progress import Progress


def augment_spec(config: Config, dataset: Dataset) -> AugmentSpec:
    """The augmentation a run trains with. `dataset` needs only allow_flip and pad_mode: eject passes the ones the
    run recorded, so the ejected script resolves 'auto' and 'photo' exactly as training did."""
    mode = config.augment
    if mode == "auto":
        mode = "crop+flip" if dataset.allow_flip else "crop"
    photo = mode == "photo"  # opt-in: random resized crop + flip (unless digits) + colour jitter
    jitter = config.jitter if config.jitter is not None else (PHOTO_JITTER if photo else 0.0)
    return AugmentSpec(crop_padding=config.crop_padding if "crop" in mode else 0,
                       flip="flip" in mode or (photo and dataset.allow_flip),  # auto and photo never mirror digits
                       rotation=config.rotation, pad_mode=dataset.pad_mode,
                       crop_scale=config.crop_scale if photo else 0.0, jitter=jitter)


def load_config_dataset(config: Config, verbose: bool = True, split_file: str | Path | None = None) -> Dataset:
    """The config's dataset; `split_file` (default: config.split_file) fixes an image folder's train/val/test."""
    return load_dataset(config.dataset, data_dir=config.data_dir, val_fraction=config.val_fraction, seed=config.seed,
                        image_size=config.image_size, channels=config.channels, skip_bad=not config.strict,
                        policy=DecodePolicy(window=config.window), verbose=verbose,
                        split_file=split_file or config.split_file, class_names=config.class_names)


def build_model(config: Config, num_classes: int, in_channels: int, image_size: int) -> nn.Module:
    try:
        return create_model(config.model, num_classes=num_classes, in_channels=in_channels, image_size=image_size,
                            width=config.width)
    except ValueError as error:
        raise TrainingStopped(f"model {config.model}: {error}", exit_code=2) from None


class Fit:
    """One training run. `Fit(config, start_time).run()` returns the summary dict."""

    def __init__(self, config: Config, start_time: float, run: RunDir | None = None):
        self.config, self.start_time = config, start_time
        self.resuming = run is not None
        self.run_dir = run
        self.stop_signal: int | None = None
        self._clock = start_time  # data loading and set-up count in the `seconds` column

    # -- set-up ------------------------------------------------------------------------------------------
    def setup(self) -> None:
        config = self.config
        if config.threads:
            torch.set_num_threads(config.threads)
        if config.deterministic:
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # cuBLAS needs it for reproducible GEMMs
            # warn_only: an op with no deterministic CUDA kernel (e.g. AdaptiveAvgPool2d's backward in torchvision's
            # ResNets) warns, naming itself, instead of stopping the run; visiontrain's own networks avoid such ops
            torch.use_deterministic_algorithms(True, warn_only=True)
            torch.backends.cudnn.benchmark = False
        try:
            self.device = resolve_device(config.device)
        except ConfigError as error:
            preset = PRESETS.get(config.preset) if config.preset in PRESETS else {}
            if preset.get("device") == config.device:  # the device came from a GPU preset, not from the user
                raise ConfigError(f"{error} (the {config.preset} preset is for a GPU: add --device cpu to run it here, "
                                  "or use a CPU preset such as --preset cifar10)") from None
            raise
        self.env = init_distributed(self.device.type)
        if self.env.enabled and self.device.type == "cuda":
            self.device = torch.device("cuda", self.env.local_rank)
            torch.cuda.set_device(self.device)
        self.precision = choose_precision(config.precision, self.device, config.channels_last)
        if self.device.type == "cuda" and not config.deterministic:
            torch.backends.cudnn.benchmark = True  # fixed input shapes: let cuDNN time its algorithms once
        self.pretraining = None  # (size, mean, std) of --pretrained weights: an installed package's or --weights FILE's
        if config.pretrained:
            from ..models.pretrained import PRETRAINED, pretraining_preprocessing

            if config.model in PRETRAINED or config.weights:
                self.pretraining = pretraining_preprocessing(config.model)  # None for visiontrain's own networks
            if self.pretraining is not None and config.image_size is None:  # the backbone's size, in config.yaml
                self.config = config = config.replace(image_size=self.pretraining[0])
        own_split = self.run_dir.split_path if self.run_dir is not None and self.run_dir.split_path.is_file() else None
        self.dataset = self.loaded_dataset = load_config_dataset(config, split_file=own_split)  # resume: its own split
        if config.overfit_batch:  # the sanity check: one fixed batch is the whole training split (engine/overfit.py)
            from .overfit import prepare

            self.config, self.dataset = prepare(config, self.dataset)
            config = self.config
        data = self.dataset
        if not config.overfit_batch:  # a small folder trains with the defaults: the batch shrinks to the split
            try:
                batch_size, accumulate, notes = fit_batch_to_split(config.batch_size, config.accumulate,
                                                                   len(data.train), self.env.world_size)
            except ValueError as error:
                raise DataError(f"dataset {config.dataset}: {error}") from None
            if notes:
                self.config = config = config.replace(batch_size=batch_size, accumulate=accumulate)
                for note in notes if self.env.is_main else ():
                    print(f"visiontrain: {note}", file=sys.stderr)
        if data.bad_files:
            more = f"; and {len(data.bad_files) - 10} more (all in summary.json)" if len(data.bad_files) > 10 else ""
            print(f"visiontrain: skipped {len(data.bad_files)} unreadable file(s): "
                  + "; ".join(f"{p}: {r}" for p, r in data.bad_files[:10]) + more, file=sys.stderr)
        torch.manual_seed(config.seed)
        self.model, self.mean, self.std = self._initial_model(data)
        self.normalize = Normalizer(self.mean, self.std, self.precision)
        if hasattr(self.model, "init_from_data"):  # e.g. fastnet's whitening layer, fitted to training patches
            sample = data.train.images[torch.randperm(len(data.train), generator=torch.Generator().manual_seed(config.seed))[:5000]]
            self.model.init_from_data(self.normalize(sample.to(self.device)).float().contiguous().cpu())
        if config.weights:
            self._load_initial_weights(Path(config.weights))
        # the run folder only now: a model or weights file that cannot be built leaves no empty run behind
        if self.run_dir is None:  # rank 0 picks the folder, the others learn its name
            path = str(RunDir.create(config).path) if self.env.is_main else None
            self.run_dir = RunDir(broadcast_string(path, self.env))
        if self.env.is_main:
            remove_stale_temp_files(self.run_dir.checkpoints)
            record_split(self.run_dir.split_path, self.loaded_dataset)  # split.csv, once, when the run made the split
        self.model.to(self.device)
        if self.precision.channels_last:
            self.model.to(memory_format=torch.channels_last)
        # the metric that keeps the best epoch, and the imbalance remedies (engine/imbalance.py)
        self.selection = choose_selection(data.train.labels, len(data.classes), config.imbalance_threshold,
                                          data.val is not None)
        text = notice(self.selection, config.class_weights, config.sampler)
        if text and self.env.is_main and not self.resuming and not config.overfit_batch:  # not a 32-image batch's
            print(f"visiontrain: {text}", file=sys.stderr)
        class_weights = inverse_frequency(data.train.labels, len(data.classes)).to(self.device) \
            if config.class_weights == "auto" else None
        self.loader = FixedBatchLoader(len(data.train), config.overfit_steps) if config.overfit_batch else TensorLoader(
            len(data.train), config.batch_size, seed=config.seed, rank=self.env.rank, world_size=self.env.world_size,
            weights=sample_weights(data.train.labels, len(data.classes)) if config.sampler == "balanced" else None)
        self.trainable = {id(p) for p in self.model.parameters() if p.requires_grad}
        self.finetune = config.finetune if config.finetune != "auto" else (
            "gradual" if config.pretrained or config.weights else "full")
        self.optimizer = build_optimizer(self.model, config, backbone_lr=config.backbone_lr
                                         if config.pretrained or config.weights else 1.0)
        optimizer_steps = self.loader.steps_per_epoch // config.accumulate  # per epoch
        self.scheduler = build_scheduler(self.optimizer, config, optimizer_steps)
        self.ema = EMA(self.model, config.ema) if config.ema else None
        self.lookahead = Lookahead(self.model, optimizer_steps * config.epochs) if config.lookahead else None
        scaler = torch.amp.GradScaler(self.device.type) if self.precision.grad_scaler else None
        self.trainer = Trainer(self._ddp_wrapped(), self.optimizer, self.scheduler,
                               nn.CrossEntropyLoss(weight=class_weights, label_smoothing=config.label_smoothing),
                               self.loader,
                               place_on_device(data.train.images, self.device),  # whole if it fits, else per batch
                               data.train.labels, self.normalize, augment_spec(config, data), config.seed,
                               config.accumulate, config.clip_grad, self.ema, scaler, self.after_step,
                               sync_every=32 if self.device.type == "cuda" else 1, lookahead=self.lookahead,
                               flips=image_flips(config.flip_mode, len(data.train), config.seed),
                               stage_epochs=self.device.type == "cuda")
        self.state = TrainState()
        if self.resuming:
            self._restore()
        if self.env.is_main:
            self.run_dir.write_config(config)
        self.progress = Progress(config.progress if self.env.is_main else "none", config.epochs,
                                 self.loader.steps_per_epoch)
        self.last_save = time.perf_counter()

    def _initial_model(self, data: Dataset) -> tuple[nn.Module, list[float], list[float]]:
        """(model, mean, std): pretrained backbones bring their own preprocessing, which every checkpoint records."""
        config = self.config
        if not config.pretrained:
            return build_model(config, len(data.classes), data.in_channels, data.image_size), data.mean, data.std
        from ..models.pretrained import PRETRAINED, pretrained_model

        if self.pretraining is not None and config.model not in PRETRAINED:  # --pretrained --weights FILE: the
            model = build_model(config, len(data.classes), data.in_channels, data.image_size)  # file loads in setup
        else:  # an installed package's weights, or the error that says none are available
            model, _ = pretrained_model(config.model, num_classes=len(data.classes), in_channels=data.in_channels,
                                        image_size=data.image_size)
        _, mean, std = self.pretraining
        if data.in_channels == 1:  # the summed RGB filters see a gray image: normalise it with the mean statistics
            return model, [sum(mean) / 3], [sum(std) / 3]
        return model, list(mean), list(std)

    def set_backbone_frozen(self, frozen: bool) -> None:
        """Fine-tuning: train only the new head (backbone weights and BatchNorm statistics fixed) or everything."""
        if self.finetune == "full":
            return
        head = set(map(id, self.model.fc.parameters()))
        for parameter in self.model.parameters():
            if id(parameter) in self.trainable and id(parameter) not in head:  # never thaw what the model froze
                parameter.requires_grad_(not frozen)
        self.trainer.frozen_backbone = frozen

    def _ddp_wrapped(self) -> nn.Module:
        """The module the loop calls: the model itself, or its DDP wrapper under torchrun (which averages grads),
        compiled with --compile. Checkpoints and evaluation use the plain self.model (same parameters)."""
        module = self.model
        if self.env.enabled:
            if self.config.sync_bn:
                self.model = module = nn.SyncBatchNorm.convert_sync_batchnorm(self.model)
            device_ids = [self.device.index] if self.device.type == "cuda" else None
            # head/gradual fine-tuning freezes the backbone (requires_grad off) after DDP built its buckets: DDP must
            # then look for the parameters without a gradient each step, or it fails at the second step
            module = nn.parallel.DistributedDataParallel(self.model, device_ids=device_ids,
                                                         find_unused_parameters=self.finetune in ("head", "gradual"))
        return torch.compile(module) if self.config.compile else module

    def _load_initial_weights(self, path: Path) -> None:
        state = load_state_dict_file(path)
        usable = fitting_tensors(state, self.model.state_dict())
        if not usable:
            raise CheckpointError(f"none of the tensors in {path} fit model {self.config.model}; is it for this model?")
        self.model.load_state_dict(usable, strict=False)
        fitted = {key.removeprefix("features.") for key in usable}
        skipped = [key for key in state if key.removeprefix("features.") not in fitted]
        names = ", ".join(skipped[:4]) + (", ..." if len(skipped) > 4 else "")
        print(f"visiontrain: loaded {len(usable)} tensors from {path}"
              + (f" ({len(skipped)} did not fit this model: {names})" if skipped else ""), file=sys.stderr)

    # -- checkpoints -------------------------------------------------------------------------------------
    def checkpoint(self) -> dict[str, Any]:
        """Everything a resumed run needs. Collective under torchrun (the running sums are all-reduced)."""
        data = self.dataset
        self.trainer.flush(self.state)  # the pending steps' losses: checked for NaN before anything is written
        sums = all_reduce_sum([self.state.loss_sum, self.state.correct, self.state.seen], self.env, self.device)
        state = dataclasses.asdict(self.state) | {"elapsed": self.elapsed(), "loss_sum": sums[0],
                                                  "correct": int(sums[1]), "seen": int(sums[2])}
        return {
            "config": self.config.to_dict(), "classes": data.classes, "mean": self.mean, "std": self.std,
            "input_size": [data.in_channels, data.image_size, data.image_size], "in_channels": data.in_channels,
            "augmentation": self.trainer.augment.describe(), "decode_policy": data.decode_policy, "dataset_fingerprint": data.fingerprint, "allow_flip": data.allow_flip,
            "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(), "ema": self.ema.state_dict() if self.ema else None,
            "lookahead": self.lookahead.state_dict() if self.lookahead else None,
            "scaler": self.trainer.scaler.state_dict() if self.trainer.scaler else None,
            "state": state, "world_size": self.env.world_size,  # processes: a resume must use as many
            "rng": {"torch": torch.get_rng_state(),
                    "cuda": torch.cuda.get_rng_state_all() if self.device.type == "cuda" else []},
        }

    def save(self, *, best: bool = False) -> None:
        checkpoint = self.checkpoint()
        if not self.env.is_main:
            return
        save_checkpoint(self.run_dir.last, checkpoint)
        if best:
            save_checkpoint(self.run_dir.best, checkpoint)
        self.last_save = time.perf_counter()
        self.run_dir.write_json(self.run_dir.status_path, {
            "epoch": self.state.epoch, "step_in_epoch": self.state.step_in_epoch,
            "global_step": self.state.global_step, "checkpoint": str(self.run_dir.last), "complete": False})

    def _restore(self) -> None:
        checkpoint, skipped = newest_valid_checkpoint(self.run_dir)
        for path, reason in skipped if self.env.is_main else ():  # only rank 0 prints
            print(f"visiontrain: skipped checkpoint {path}: {reason}", file=sys.stderr)
        self._check_world_size(checkpoint.get("world_size"))
        saved_torch = checkpoint.get("torch_version")
        if saved_torch and saved_torch != torch.__version__ and self.env.is_main:
            print(f"visiontrain: warning: {self.run_dir.path} was trained with torch {saved_torch} and resumes with "
                  f"torch {torch.__version__}; bit-exact resume holds per torch version, so the rest of the run may "
                  "differ slightly from an uninterrupted one", file=sys.stderr)
        self.model.load_state_dict(checkpoint["model"])
        self.optimizer.load_state_dict(checkpoint["optimizer"])
        self.scheduler.load_state_dict(checkpoint["scheduler"])
        if self.ema and checkpoint.get("ema"):
            self.ema.load_state_dict(checkpoint["ema"])
        if self.lookahead and checkpoint.get("lookahead"):
            self.lookahead.load_state_dict(checkpoint["lookahead"])
        if self.trainer.scaler and checkpoint.get("scaler"):
            self.trainer.scaler.load_state_dict(checkpoint["scaler"])
        self.state = TrainState(**checkpoint["state"])
        if not self.env.is_main:  # the checkpoint holds the all-reduced sums; count them once
            self.state.loss_sum, self.state.correct, self.state.seen = 0.0, 0, 0
        torch.set_rng_state(checkpoint["rng"]["torch"])
        if self.device.type == "cuda" and checkpoint["rng"]["cuda"]:
            torch.cuda.set_rng_state_all(checkpoint["rng"]["cuda"])
        if self.env.is_main:
            print(f"visiontrain: resuming {self.run_dir.path} at epoch {self.state.epoch + 1}, "
                  f"step {self.state.step_in_epoch} (global step {self.state.global_step})", file=sys.stderr)

    def _check_world_size(self, saved: int | None) -> None:
        """Refuse to resume with another number of processes (older checkpoints, without the field: not checked)."""
        if saved is None or saved == self.env.world_size:
            return
        batch = self.config.batch_size * self.config.accumulate
        raise CheckpointError(
            f"cannot resume {self.run_dir.path} with world_size {self.env.world_size}: it was trained with world_size "
            f"{saved}, and the global batch (batch_size x accumulate x world_size: {batch * saved}, here "
            f"{batch * self.env.world_size}), the data shards and the schedule's steps per epoch all depend on it; "
            f"resume with {launcher(saved)} train --resume {self.run_dir.path}, or start a new run from its weights "
            f"(--weights {self.run_dir.last})")

    def elapsed(self) -> float:
        """Wall seconds of this run: earlier processes (resume) plus this one since its command started."""
        return self.state.elapsed + time.perf_counter() - self._clock

    # -- the epoch loop ----------------------------------------------------------------------------------
    def after_step(self, state: TrainState, epoch: int, step: int) -> None:
        images_per_second = state.seen / max(1e-9, time.perf_counter() - self.epoch_start) if state.seen else 0.0
        self.progress.step(epoch, step, state.loss_sum / max(1, state.seen), state.correct / max(1, state.seen),
                           images_per_second)
        at_boundary = (step + 1) % self.config.accumulate == 0
        due = (self.config.checkpoint_every and state.global_step % self.config.checkpoint_every == 0) or (
            self.config.checkpoint_minutes and time.perf_counter() - self.last_save > 60 * self.config.checkpoint_minutes)
        due = any_rank(bool(due), self.env, self.device) if at_boundary else False
        stop = any_rank(bool(self.stop_signal), self.env, self.device) if at_boundary else False
        if step + 1 == self.loader.steps_per_epoch:
            return  # the epoch's last step: run_epochs saves the epoch's end, then honours a stop
        if due or stop:
            self.save()
        if stop:
            self._stop(f"at epoch {epoch + 1}, step {step + 1}")

    def _stop(self, where: str) -> None:
        self.stop_signal = self.stop_signal or signal.SIGTERM
        name = signal.Signals(self.stop_signal).name
        raise TrainingStopped(f"stopped by {name} {where}; checkpoint saved in {self.run_dir.last}. Continue with: "
                              f"{launcher(self.env.world_size)} train --resume {self.run_dir.path}",
                              exit_code=128 + self.stop_signal)

    def run_epochs(self) -> None:
        config, state = self.config, self.state
        while state.epoch < config.epochs:
            epoch = state.epoch
            self.epoch_start = time.perf_counter()
            started = time.perf_counter()
            self.set_backbone_frozen(self.finetune == "head" or (self.finetune == "gradual"
                                                                 and epoch < config.head_epochs))
            self.trainer.train_one_epoch(state, epoch)
            state.train_seconds += time.perf_counter() - started
            broadcast_buffers(self.model, self.env, self.ema.state_dict() if self.ema else None)  # as rank 0's
            loss_sum, correct, seen = all_reduce_sum([state.loss_sum, state.correct, state.seen], self.env, self.device)
            row = {"epoch": epoch + 1, "lr": self.optimizer.param_groups[0]["lr"],
                   "train_loss": loss_sum / max(1, seen), "train_acc": correct / max(1, seen)}
            if self.dataset.val is not None:
                logits = self.evaluate_logits(self.dataset.val.images)
                row["val_loss"] = nn.functional.cross_entropy(logits, self.dataset.val.labels).item()
                row["val_acc"] = (logits.argmax(1) == self.dataset.val.labels).double().mean().item()
                if self.selection.balanced:  # imbalanced train classes: the best epoch is kept by this instead
                    row["val_balanced_acc"] = balanced_accuracy(logits.argmax(1), self.dataset.val.labels,
                                                                len(self.dataset.classes))
            row["seconds"] = self.elapsed()
            score = row.get(self.selection.column or "val_acc")  # state.best_val_acc holds the best of this metric
            improved = score > state.best_val_acc if score is not None else True
            if improved:
                state.best_val_acc = -1.0 if score is None else score
                state.best_epoch, state.stale_epochs = epoch + 1, 0
            else:
                state.stale_epochs += 1
            state.rows.append(row)
            state.epoch, state.step_in_epoch, state.loss_sum, state.correct, state.seen = epoch + 1, 0, 0.0, 0, 0
            self.save(best=improved)
            if self.env.is_main:
                self.run_dir.write_metrics(state.rows)
            self.progress.epoch_end(row)
            if state.epoch < config.epochs and any_rank(bool(self.stop_signal), self.env, self.device):
                self._stop(f"at the end of epoch {epoch + 1}")
            if config.early_stop and state.stale_epochs >= config.early_stop:
                self.progress.message(f"early stop: no better {self.selection.column} for {config.early_stop} epochs")
                break

    def evaluate_logits(self, images: torch.Tensor) -> torch.Tensor:
        """Logits of the training model (with its EMA weights if any), in the training precision: the per-epoch
        validation and the overfit check. What the run reports on its test split goes through Predictor instead."""
        if self.ema is not None:
            backup = {k: v.clone() for k, v in self.model.state_dict().items()}
            self.model.load_state_dict(self.ema.state_dict())
        logits = predict_logits(self.model, images, self.normalize, batch_size=self.config.eval_batch_size,
                                allow_flip=self.dataset.allow_flip)
        if self.ema is not None:
            self.model.load_state_dict(backup)
        return logits

    # -- the whole run -----------------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        self.setup()
        handlers = {s: signal.signal(s, self._on_signal) for s in (signal.SIGTERM, signal.SIGINT)} \
            if _main_thread() else {}
        try:
            self.time_to_first_step = self.elapsed()
            self.run_epochs()
            if self.env.enabled:
                torch.distributed.barrier()  # rank 0 has written best.pt before anyone reads it
            return self.finish()
        except NonFiniteLoss as error:
            raise TrainingStopped(self._nan_message(error)) from None
        finally:
            for sig, handler in handlers.items():
                signal.signal(sig, handler)
            shutdown(self.env)

    def _on_signal(self, signum: int, frame) -> None:  # noqa: ANN001
        self.stop_signal = signum

    def _nan_message(self, error: NonFiniteLoss) -> str:
        healthy = self.run_dir.last if self.run_dir.last.is_file() else None
        where = f"the last healthy checkpoint is {healthy}" if healthy else "no checkpoint had been written yet"
        return (f"{error}; training stopped and no NaN weights were written ({where}). Likely causes: the learning "
                f"rate is too high (lr={self.config.lr}; try a tenth), no gradient clipping (--clip-grad 1.0), fp16 "
                "overflow, or bad input values")

    def finish(self) -> dict[str, Any]:
        from ..evaluation import write_evaluation

        data, config, state = self.dataset, self.config, self.state
        summary: dict[str, Any] = {"status": "complete", "format_version": 1}
        if data.test is not None and not config.overfit_batch:  # a memorised batch says nothing about the test split
            # the model the run keeps (best.pt: the epoch validation picked), through the one inference path that
            # eval, predict, explain and export use, in the inference precision rather than the training one
            predictor = Predictor(load_checkpoint(kept_checkpoint(self.run_dir)), self.device)
            logits = predictor.logits(data.test.images, batch_size=config.eval_batch_size)
            if self.env.is_main:
                metrics = write_evaluation(self.run_dir, "test", logits, data.test, verbose=False)
            else:
                from ..metrics.classification import classification_metrics

                metrics = classification_metrics(logits, data.test.labels, data.classes)
            summary |= {"test_acc": metrics["accuracy"], "test_loss": metrics["loss"]}
        else:
            summary |= {"test_acc": None, "test_loss": None}
        last = state.rows[-1] if state.rows else {}
        best_row = next((row for row in state.rows if row["epoch"] == state.best_epoch), {})
        summary |= {
            "best_val_acc": best_row.get("val_acc") if data.val is not None else None,
            "best_epoch": state.best_epoch, "epochs_completed": state.epoch,
            "final_val_acc": last.get("val_acc"), "final_train_acc": last.get("train_acc"),
            "wall_seconds": self.elapsed(), "train_seconds": state.train_seconds,
            "time_to_first_step": self.time_to_first_step,
            "images_per_second": state.epoch * self.loader.steps_per_epoch * config.batch_size * self.env.world_size
            / max(1e-9, state.train_seconds),
            "distributed": {"world_size": self.env.world_size, "global_batch_size": config.batch_size
                            * config.accumulate * self.env.world_size, "sync_bn": config.sync_bn and self.env.enabled,
                            "lr_scaling": "none: --lr is used as given for the global batch"},
            "parameters": sum(p.numel() for p in self.model.parameters()),
            "finetune": {"mode": self.finetune, "pretrained": config.pretrained, "weights": config.weights,
                         "head_epochs": config.head_epochs if self.finetune == "gradual" else None,
                         "backbone_lr": config.backbone_lr if config.pretrained or config.weights else 1.0},
            "model_kept": f"best (by validation {self.selection.metric.replace('_', ' ')})" if data.val is not None
            else "last epoch",
            "selection_metric": self.selection.metric, "selection_reason": self.selection.reason,
            "imbalance": {"train_ratio": self.selection.imbalance_ratio, "threshold": config.imbalance_threshold,
                          "class_weights": config.class_weights, "sampler": config.sampler},
            "dataset": {"name": data.name, "fingerprint": data.fingerprint, "classes": data.classes,
                        "train": len(data.train), "val": len(data.val) if data.val is not None else 0,
                        "val_source": data.val_source, "test": len(data.test) if data.test is not None else 0,
                        "image_size": data.image_size, "channels": data.in_channels, "mean": self.mean, "std": self.std,
                        "bad_files": len(data.bad_files), "skipped_files": [p for p, _ in data.bad_files],
                        "ignored": len(data.ignored_files),  # hidden, __MACOSX, not an image...: said, not silent
                        "ignored_files": data.ignored_files[:100],
                        "load_seconds": data.load_seconds, "cache": data.cache_status, "storage": data.storage,
                        "split_file": data.split_info, "source": data.source, "class_folders": data.class_folders},
            "augmentation": self.trainer.augment.describe(), "decode_policy": data.decode_policy,
            "hardware": self.precision.describe() | {"inference_precision": config.inference_precision,
                                                     "threads": torch.get_num_threads(),
                                                     "cpu": platform.processor() or platform.machine()},
            "versions": {"visiontrain": __version__, "torch": torch.__version__, "python": platform.python_version()},
            "run_dir": str(self.run_dir.path),
        }
        if self.selection.balanced:
            summary["best_val_balanced_acc"] = best_row.get("val_balanced_acc")
        if config.overfit_batch:  # the verdict on the batch it trained on, with the final (not the best-val) weights
            from .overfit import verdict

            summary["overfit_batch"] = verdict(self.evaluate_logits(data.train.images), data.train.labels, config,
                                               len(data.classes))
        if self.env.is_main:
            self.run_dir.write_json(self.run_dir.summary_path, summary)
            if config.report:
                self.write_report(logits if summary["test_acc"] is not None else None)
            self.run_dir.write_json(self.run_dir.status_path, {"epoch": state.epoch, "global_step": state.global_step,
                                                               "complete": True})
        return summary

    def write_report(self, test_logits: torch.Tensor | None) -> None:
        """plots/ and report.html; after summary.json, which the report reads."""
        from ..explain import write_misclassified_gradcam
        from ..report import plot_misclassified, write_report

        self.plot_augmented_batch()  # here, not at start-up: matplotlib costs ~1.5 s before the first step
        if test_logits is not None:
            test = self.dataset.test
            plot_misclassified(self.run_dir.path, test.images, test.labels, test_logits, test.classes)
            # and where the model looked in its worst mistakes: plots/gradcam.png (or .txt saying why there is none)
            write_misclassified_gradcam(self.run_dir.path, test.images, test.labels, test_logits, test.classes)
        write_report(self.run_dir.path)  # also draws the curves, confusion matrix and reliability diagram

    def plot_augmented_batch(self) -> None:
        """What the model actually sees: the first training batch after augmentation (epoch 0, step 0)."""
        from ..data.augment import apply, batch_params
        from ..figures import image_grid

        spec, indices = self.trainer.augment, next(self.loader.batches(0))[1][:32]
        images = self.dataset.train.images[indices].float()  # (B, C, H, W) 0..255
        if spec.active:
            images = apply(images, batch_params(spec, indices, self.config.seed, 0, 0, self.trainer.flips), spec)
        image_grid(images.round().clamp(0, 255).to(torch.uint8),
                   [self.dataset.classes[int(label)] for label in self.dataset.train.labels[indices]],
                   self.run_dir.path / "plots" / "augmented_batch.png", title="a training batch after augmentation")


def newest_valid_checkpoint(run: RunDir) -> tuple[dict[str, Any], list[tuple[Path, str]]]:
    """The loadable checkpoint with the most steps among last.pt and best.pt, and those skipped (with why)."""
    found, skipped = [], []
    for path in (run.last, run.best):
        if not path.is_file():
            continue
        try:
            found.append(load_checkpoint(path))
        except CheckpointError as error:
            skipped.append((path, str(error)))
    if not found:
        detail = "; ".join(f"{p}: {r}" for p, r in skipped) or "none were written"
        raise CheckpointError(f"no usable checkpoint in {run.checkpoints} ({detail})")
    return max(found, key=lambda c: c["state"]["global_step"]), skipped


def _main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()
