"""fit: a built run (engine/build.py) -> epochs of the loop -> checkpoints, metrics.csv -> test evaluation -> summary.

Also exact resume: everything a run's future depends on (weights, optimiser, schedule, EMA, RNG, position in
the epoch, running sums) is in its checkpoint, and data order and augmentation are functions of (seed, epoch,
step), so a resumed run replays what the uninterrupted one would have done.

    summary = train(config)                     # a new run folder under config.runs_dir
    summary = resume("runs/x", {"epochs": 20})  # continue runs/x exactly, and extend it

Callbacks (engine/callbacks.py) and the loggers (engine/loggers.py, which are callbacks too) are called at the run's
start, after each step and epoch, and at its end; a model or data passed from Python replace the ones the config
names (engine/build.py).
"""
from __future__ import annotations

import copy
import dataclasses
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from ._io import remove_stale_temp_files
from .config import Config, budget_seconds
from .data.splitfile import record_split
from .data.memory import write_sample
from .engine import budget
from .engine.build import Setup, build
from .engine.callbacks import RunInfo, Step, call, check_callbacks
from .engine.checkpoint import newest_valid_checkpoint, save_checkpoint
from .engine.distributed import (all_reduce_sum, any_rank, broadcast_buffers, broadcast_string, check_world_size,
                                 launcher, shutdown)
from .engine.loggers import Logger, check_loggers, create_loggers
from .engine.loop import NonFiniteLoss, TrainState
from .engine.overfit import verdict
from .engine.probe import FOLDS
from .engine.progress import Progress
from .errors import TrainingStopped
from .evaluation import write_evaluation
from .explain import write_misclassified_gradcam
from .inference import Predictor
from .posthoc import fit_after_training
from .metrics.classification import balanced_accuracy, classification_metrics
from .report import plot_misclassified, write_report
from .report.batch import write_training_batch
from .report.plots import plot_confusion, plot_curves
from .run import RunDir


def train(config: Config, *, start_time: float | None = None, model: Any = None, data: Any = None,
          callbacks: Sequence[Any] = ()) -> dict[str, Any]:
    """Train `config` in a new run folder; returns the summary (summary.json). start_time: when the command started
    (time.perf_counter()), so that start-up counts in the run's seconds. model, data: passed from Python instead of
    the config's (engine/build.py); callbacks: engine/callbacks.py."""
    return Fit(config, time.perf_counter() if start_time is None else start_time, model=model, data=data,
               callbacks=callbacks).run()


def resume(run_dir: str | Path, overrides: dict[str, Any] | None = None, *, start_time: float | None = None,
           model: Any = None, data: Any = None, callbacks: Sequence[Any] = ()) -> dict[str, Any]:
    """Continue the run in `run_dir` exactly, from its newest valid checkpoint; `overrides` may change what does not
    make it another experiment (more epochs, say). Returns the summary."""
    run = RunDir.open(run_dir)
    return Fit(run.resume_config(overrides or {}), time.perf_counter() if start_time is None else start_time,
               run, model=model, data=data, callbacks=callbacks).run()


class Fit:
    """One training run. `Fit(config, start_time).run()` returns the summary dict."""

    def __init__(self, config: Config, start_time: float, run: RunDir | None = None, *, model: Any = None,
                 data: Any = None, callbacks: Sequence[Any] = ()):
        self.config, self.start_time = config, start_time
        self.resuming = run is not None
        self.run_dir = run
        self.stop_signal: int | None = None
        self._clock = start_time  # data loading and set-up count in the `seconds` column
        self.own_model, self.own_data = model, data  # from Python, instead of what the config names
        self.user_callbacks = check_callbacks(list(callbacks))
        self.callbacks: list[Any] = []  # the loggers, then the user's; rank 0 only
        self.ended = False  # on_run_end was called

    # -- set-up ------------------------------------------------------------------------------------------
    def setup(self) -> Setup:
        check_loggers(self.config.logger)  # a missing optional package: one sentence, before any data loads
        own_split = self.run_dir.split_path if self.run_dir is not None and self.run_dir.split_path.is_file() else None
        built = self.built = build(self.config, split_file=own_split, notices=not self.resuming,  # resume: its split
                                   model=self.own_model, data=self.own_data)
        self.config, self.env = built.config, built.env
        self.plan = None
        if self.config.time is not None and not self.resuming:  # size the schedule to the budget (engine/budget.py)
            self.plan = budget.plan_run(built, budget_seconds(self.config.time), lambda: time.perf_counter() - self._clock)
            self.config = built.config  # config.yaml records the plan: repeating it repeats the run
        # the run folder only now: a model or weights file that cannot be built leaves no empty run behind
        if self.run_dir is None:  # rank 0 picks the folder, the others learn its name
            path = str(RunDir.create(self.config).path) if self.env.is_main else None
            self.run_dir = RunDir(broadcast_string(path, self.env))
        if self.env.is_main:
            remove_stale_temp_files(self.run_dir.checkpoints)
            record_split(self.run_dir.split_path, built.loaded)  # split.csv, once, when the run made the split
        built.trainer.after_step = self.after_step
        self.state = TrainState()
        if self.resuming:
            self._restore()
        if self.env.is_main:
            self.run_dir.write_config(self.config)
            if self.own_data is not None and not self.run_dir.samples_path.is_file():  # what export verifies on
                write_sample(self.run_dir.samples_path, built.dataset)
        self.progress = Progress(self.config.progress if self.env.is_main else "none", self.config.epochs,
                                 built.loader.steps_per_epoch)
        self.last_save = time.perf_counter()
        self.info = RunInfo(path=self.run_dir.path, config=self.config, model=built.model, classes=built.dataset.classes,
                            steps_per_epoch=built.loader.steps_per_epoch,
                            resumed_step=self.state.global_step if self.resuming else 0, epoch=self.state.epoch,
                            global_step=self.state.global_step)
        if self.env.is_main:
            self.callbacks = create_loggers(self.info) + self.user_callbacks
            call(self.callbacks, "on_run_start", self.info)
        return built

    # -- checkpoints -------------------------------------------------------------------------------------
    def checkpoint(self) -> dict[str, Any]:
        """Everything a resumed run needs. Collective under torchrun (the running sums are all-reduced)."""
        built, data = self.built, self.built.dataset
        built.trainer.flush(self.state)  # the pending steps' losses: checked for NaN before anything is written
        sums = all_reduce_sum([self.state.loss_sum, self.state.correct, self.state.seen], self.env, built.device)
        state = dataclasses.asdict(self.state) | {"elapsed": self.elapsed(), "loss_sum": sums[0],
                                                  "correct": int(sums[1]), "seen": int(sums[2])}
        return {
            "config": self.config.to_dict(), "classes": data.classes, "mean": built.mean, "std": built.std,
            "input_size": [data.in_channels, data.image_size, data.image_size], "in_channels": data.in_channels,
            "decode_policy": data.decode_policy, "dataset_fingerprint": data.fingerprint, "allow_flip": data.allow_flip,
            "model": built.model.state_dict(), "optimizer": built.optimizer.state_dict(),
            "scheduler": built.scheduler.state_dict(), "ema": built.ema.state_dict() if built.ema else None,
            "lookahead": built.lookahead.state_dict() if built.lookahead else None,
            "scaler": built.trainer.scaler.state_dict() if built.trainer.scaler else None,
            "state": state, "world_size": self.env.world_size,  # processes: a resume must use as many
            "rng": {"torch": torch.get_rng_state(),
                    "cuda": torch.cuda.get_rng_state_all() if built.device.type == "cuda" else []},
        }

    def save(self, *, best: bool = False) -> None:
        checkpoint = self.checkpoint()
        if not self.env.is_main:
            return
        for logger in self.callbacks:  # before the checkpoint: no logger holds a step the newest checkpoint lacks
            if isinstance(logger, Logger):
                logger.flush()
        save_checkpoint(self.run_dir.last, checkpoint)
        if best:
            save_checkpoint(self.run_dir.best, checkpoint)
        self.last_save = time.perf_counter()
        self.run_dir.write_json(self.run_dir.status_path, {
            "epoch": self.state.epoch, "step_in_epoch": self.state.step_in_epoch,
            "global_step": self.state.global_step, "checkpoint": str(self.run_dir.last), "complete": False})

    def _restore(self) -> None:
        built = self.built
        checkpoint, skipped = newest_valid_checkpoint(self.run_dir.last, self.run_dir.best)
        for path, reason in skipped if self.env.is_main else ():  # only rank 0 prints
            print(f"visiontrain: skipped checkpoint {path}: {reason}", file=sys.stderr)
        check_world_size(checkpoint.get("world_size"), self.env, self.config, self.run_dir)
        saved_torch = checkpoint.get("torch_version")
        if saved_torch and saved_torch != torch.__version__ and self.env.is_main:
            print(f"visiontrain: warning: {self.run_dir.path} was trained with torch {saved_torch} and resumes with "
                  f"torch {torch.__version__}; bit-exact resume holds per torch version, so the rest of the run may "
                  "differ slightly from an uninterrupted one", file=sys.stderr)
        built.model.load_state_dict(checkpoint["model"])
        built.optimizer.load_state_dict(checkpoint["optimizer"])
        built.scheduler.load_state_dict(checkpoint["scheduler"])
        for part, key in ((built.ema, "ema"), (built.lookahead, "lookahead"), (built.trainer.scaler, "scaler")):
            if part and checkpoint.get(key):
                part.load_state_dict(checkpoint[key])
        self.state = TrainState(**checkpoint["state"])
        if not self.env.is_main:  # the checkpoint holds the all-reduced sums; count them once
            self.state.loss_sum, self.state.correct, self.state.seen = 0.0, 0, 0
        torch.set_rng_state(checkpoint["rng"]["torch"])
        if built.device.type == "cuda" and checkpoint["rng"]["cuda"]:
            torch.cuda.set_rng_state_all(checkpoint["rng"]["cuda"])
        if self.env.is_main:
            print(f"visiontrain: resuming {self.run_dir.path} at epoch {self.state.epoch + 1}, "
                  f"step {self.state.step_in_epoch} (global step {self.state.global_step})", file=sys.stderr)

    def elapsed(self) -> float:
        """Wall seconds of this run: earlier processes (resume) plus this one since its command started."""
        return self.state.elapsed + time.perf_counter() - self._clock

    # -- the epoch loop ----------------------------------------------------------------------------------
    def after_step(self, state: TrainState, epoch: int, step: int) -> None:
        config, device = self.config, self.built.device
        images_per_second = state.seen / max(1e-9, time.perf_counter() - self.epoch_start) if state.seen else 0.0
        self.progress.step(epoch, step, state.loss_sum / max(1, state.seen), state.correct / max(1, state.seen),
                           images_per_second)
        if self.callbacks:
            self._step_callbacks(state, epoch, step)
        at_boundary = (step + 1) % config.accumulate == 0
        due = (config.checkpoint_every and state.global_step % config.checkpoint_every == 0) or (
            config.checkpoint_minutes and time.perf_counter() - self.last_save > 60 * config.checkpoint_minutes)
        due = any_rank(bool(due), self.env, device) if at_boundary else False
        stop = any_rank(bool(self.stop_signal), self.env, device) if at_boundary else False
        if step + 1 == self.built.epoch_steps(epoch):
            return  # the epoch's last step: run_epochs saves the epoch's end, then honours a stop
        if due or stop:
            self.save()
        if stop:
            self._stop(f"at epoch {epoch + 1}, step {step + 1}")

    def _step_callbacks(self, state: TrainState, epoch: int, step: int) -> None:
        self.info.epoch, self.info.global_step = state.epoch, state.global_step
        loss, cached = self.built.trainer.last_loss, []

        def read_loss() -> float:  # one host sync, only for a hook that reads it
            if not cached:
                cached.append(float(loss))
            return cached[0]

        call(self.callbacks, "on_step_end", self.info, Step(
            epoch + 1, step + 1, state.global_step, self.built.optimizer.param_groups[0]["lr"],
            self.config.batch_size * self.env.world_size, read_loss, loss))

    def _stop(self, where: str) -> None:
        self.stop_signal = self.stop_signal or signal.SIGTERM
        name = signal.Signals(self.stop_signal).name
        raise TrainingStopped(f"stopped by {name} {where}; checkpoint saved in {self.run_dir.last}. Continue with: "
                              f"{launcher(self.env.world_size)} train --resume {self.run_dir.path}",
                              exit_code=128 + self.stop_signal)

    def run_epochs(self) -> None:
        config, state, built = self.config, self.state, self.built
        val, selection = built.dataset.val, built.selection
        while state.epoch < config.epochs:
            epoch = state.epoch
            self.epoch_start = started = time.perf_counter()
            self.progress.epoch_begin(epoch)
            probing = built.finetune == "probe" and epoch == 0
            frozen = built.finetune == "head" or (built.finetune == "gradual" and epoch < config.head_epochs)
            built.set_backbone_frozen(frozen)
            if probing:  # the head fitted to features computed once, not trained through the network
                self.probe()
            else:
                built.trainer.train_one_epoch(state, epoch, built.epoch_steps(epoch))
                state.train_seconds += time.perf_counter() - started
            broadcast_buffers(built.model, self.env, built.ema.state_dict() if built.ema else None)  # as rank 0's
            loss_sum, correct, seen = all_reduce_sum([state.loss_sum, state.correct, state.seen], self.env, built.device)
            lrs = built.learning_rates(frozen) if not probing else {"lr": 0.0, "head_lr": 0.0, "backbone_lr": 0.0}
            row = {"epoch": epoch + 1, **lrs,  # the probe's epoch takes no gradient step: lr 0
                   "train_loss": loss_sum / max(1, seen), "train_acc": correct / max(1, seen)}
            if built.finetune != "full":  # which part learnt this epoch (report/html.py's diagnosis reads it)
                row["stage"] = "probe" if probing else "head" if frozen else "all"
            if val is not None:
                logits = built.validation_logits(val.images)
                row["val_loss"] = nn.functional.cross_entropy(logits, val.labels).item()
                row["val_acc"] = (logits.argmax(1) == val.labels).double().mean().item()
                if selection.balanced:  # imbalanced train classes: the best epoch is kept by this instead
                    row["val_balanced_acc"] = balanced_accuracy(logits.argmax(1), val.labels, len(val.classes))
            row["seconds"] = self.elapsed()
            score = row.get(selection.column or "val_acc")  # state.best_val_acc holds the best of this metric
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
            self.info.epoch, self.info.global_step = state.epoch, state.global_step
            call(self.callbacks, "on_epoch_end", self.info, dict(row))
            if state.epoch < config.epochs and any_rank(bool(self.stop_signal), self.env, built.device):
                self._stop(f"at the end of epoch {epoch + 1}")
            if state.epoch < config.epochs and any_rank(bool(self.info.stop_reason), self.env, built.device):
                self.progress.message(f"stopped after epoch {epoch + 1}: {self.info.stop_reason or 'a callback'}")
                self.info.stop_reason = self.info.stop_reason or "a callback (in another process)"
                break
            if config.early_stop and state.stale_epochs >= config.early_stop:
                self.progress.message(f"early stop: no better {selection.column} for {config.early_stop} epochs")
                break

    def probe(self) -> None:
        """--finetune probe's first epoch (engine/probe.py): the training split's features, once, then the head by
        L-BFGS; its train loss and accuracy are those of the fitted head on those (unaugmented) features."""
        state = self.state
        result = self.built.fit_probe(lambda done, total: self.progress.task("probe: backbone features of the "
                                                                             "training images", done, total))
        state.probe = result.describe()
        if self.env.is_main:  # every rank fitted the same head on the same images: rank 0 counts them
            state.loss_sum, state.seen = result.train_loss * result.images, result.images
            state.correct = round(result.train_acc * result.images)
        self.progress.message(f"probe: head fitted to {result.images:,} images' features in "
                              f"{result.extract_seconds + result.fit_seconds:.1f} s (L2 {result.l2:g} by "
                              f"{FOLDS}-fold cross-validation: {result.cv_acc:.2%})")

    # -- the whole run -----------------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        try:
            self.setup()
            handlers = {s: signal.signal(s, self._on_signal) for s in (signal.SIGTERM, signal.SIGINT)} \
                if threading.current_thread() is threading.main_thread() else {}
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
        except BaseException as error:
            self._end_callbacks({"status": "stopped", "error": str(error) or type(error).__name__,
                                 "run_dir": str(self.run_dir.path) if self.run_dir else None})
            raise
        finally:
            if hasattr(self, "env"):  # set-up got as far as the process group
                shutdown(self.env)

    def _end_callbacks(self, summary: dict[str, Any]) -> None:
        """on_run_end, once; for a run that stopped, without hiding why it stopped (a failing hook is one line)."""
        if self.ended or not self.callbacks:
            return
        self.ended = True
        if summary["status"] == "complete":
            call(self.callbacks, "on_run_end", self.info, summary)
            return
        for callback in self.callbacks:
            try:
                call([callback], "on_run_end", self.info, summary)
            except Exception as error:  # noqa: BLE001 - the run's own error is the one to raise
                print(f"visiontrain: warning: {type(callback).__name__}.on_run_end failed: {error}", file=sys.stderr)

    def _model_from_python(self) -> torch.nn.Module | None:
        """A copy of the model passed from Python, for the inference path (which cannot rebuild it by name)."""
        return copy.deepcopy(self.built.model) if self.own_model is not None and \
            self.config.model.startswith("python/") else None

    def _on_signal(self, signum: int, frame) -> None:  # noqa: ANN001
        self.stop_signal = signum

    def _nan_message(self, error: NonFiniteLoss) -> str:
        healthy = self.run_dir.last if self.run_dir.last.is_file() else None
        where = f"the last healthy checkpoint is {healthy}" if healthy else "no checkpoint had been written yet"
        return (f"{error}; training stopped and no NaN weights were written ({where}). Likely causes: the learning "
                f"rate is too high (lr={self.config.lr}; try a tenth), no gradient clipping (--clip-grad 1.0), fp16 "
                "overflow, or bad input values")

    def finish(self) -> dict[str, Any]:
        built, config, state = self.built, self.config, self.state
        data = built.dataset
        summary: dict[str, Any] = {"status": "complete", "format_version": 1, "test_acc": None, "test_loss": None}
        logits = None
        kept = fit_after_training(self.run_dir, built, self.env, model=self._model_from_python())  # posthoc.py
        summary["calibration"] = kept["calibration"]
        summary["input_check"] = {key: kept["input_stats"][key] for key in ("method", "images", "flagged_in_training")}
        if data.test is not None and not config.overfit_batch:  # a memorised batch says nothing about the test split
            # the model the run keeps (best.pt: the epoch validation picked), through the one inference path that
            # eval, predict, explain and export use, in the inference precision rather than the training one
            predictor = Predictor(kept, built.device, model=self._model_from_python())
            logits = predictor.logits(data.test.images, batch_size=config.eval_batch_size)
            metrics = write_evaluation(self.run_dir, "test", logits, data.test, verbose=False,
                                       temperature=predictor.temperature) if self.env.is_main \
                else classification_metrics(logits, data.test.labels, data.classes)
            summary |= {"test_acc": metrics["accuracy"], "test_loss": metrics["loss"]}
        last = state.rows[-1] if state.rows else {}
        best_row = next((row for row in state.rows if row["epoch"] == state.best_epoch), {})
        summary |= {
            "best_val_acc": best_row.get("val_acc") if data.val is not None else None,
            "best_epoch": state.best_epoch, "epochs_completed": state.epoch,
            "final_val_acc": last.get("val_acc"), "final_train_acc": last.get("train_acc"),
            "wall_seconds": self.elapsed(), "train_seconds": state.train_seconds,
            "time_to_first_step": self.time_to_first_step, "probe": state.probe,
            "images_per_second": state.global_step * config.batch_size * self.env.world_size
            / max(1e-9, state.train_seconds),
        } | built.describe() | {"run_dir": str(self.run_dir.path)}
        if self.plan is not None:
            summary["time_budget"] = self.plan.describe()
        if built.selection.balanced:
            summary["best_val_balanced_acc"] = best_row.get("val_balanced_acc")
        if self.info.stop_reason and state.epoch < config.epochs:
            summary["stopped_by"] = self.info.stop_reason  # a callback's run.stop(): finished early, as early_stop
        if config.overfit_batch:  # the verdict on the batch it trained on, with the final (not the best-val) weights
            summary["overfit_batch"] = verdict(built.validation_logits(data.train.images), data.train.labels, config,
                                               len(data.classes))
        if self.env.is_main:
            self.run_dir.write_json(self.run_dir.summary_path, summary)
            if config.report:
                self.write_report(logits)
            elif any(isinstance(c, Logger) and c.wants_images for c in self.callbacks):  # the plots they show
                plot_curves(self.run_dir.path)
                if logits is not None:
                    plot_confusion(self.run_dir.path)
            self.run_dir.write_json(self.run_dir.status_path, {"epoch": state.epoch, "global_step": state.global_step,
                                                               "complete": True})
            self.info.epoch, self.info.global_step = state.epoch, state.global_step
            self._end_callbacks(summary)
        return summary

    def write_report(self, test_logits: torch.Tensor | None) -> None:
        """plots/ and report.html; after summary.json, which the report reads. (matplotlib, ~1.5 s to import, loads
        here at the end, inside the drawing functions, never before the first step.)"""
        write_training_batch(self.built, self.run_dir.path / "plots" / "augmented_batch.png")  # what the model sees
        if test_logits is not None:
            test = self.built.dataset.test
            plot_misclassified(self.run_dir.path, test.images, test.labels, test_logits, test.classes)
            # and where the model looked in its worst mistakes: plots/gradcam.png (or .txt saying why there is none)
            write_misclassified_gradcam(self.run_dir.path, test.images, test.labels, test_logits, test.classes,
                                        model=self._model_from_python())
        write_report(self.run_dir.path)  # also draws the curves, confusion matrix and reliability diagram
