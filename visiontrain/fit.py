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

from . import posthoc
from ._io import remove_stale_temp_files
from .config import Config, budget_seconds
from .data.splitfile import record_split
from .data.memory import write_sample
from .engine import budget
from .engine.build import Setup, build
from .engine.callbacks import RunInfo, Step, call, call_run_end, check_callbacks
from .engine.checkpoint import newest_valid_checkpoint, save_checkpoint, warn_if_other_torch
from .engine.distributed import (all_reduce_sum, any_rank, broadcast_buffers, broadcast_string, check_world_size,
                                 launcher, shutdown)
from .engine.loggers import Logger, check_loggers, create_loggers
from .engine.loop import NonFiniteLoss, TrainState
from .engine.progress import Progress
from .errors import TrainingStopped
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
            built, self.plan = budget.plan_run(
                built, budget_seconds(self.config.time), lambda: time.perf_counter() - self._clock,
                rebuild=None if self.own_model is not None else  # a model passed from Python is the one to train
                lambda config: build(config, split_file=own_split, notices=False, data_of=self.built))
            self.built = built
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
        built = self.built
        built.trainer.flush(self.state)  # the pending steps' losses: checked for NaN before anything is written
        sums = all_reduce_sum([self.state.loss_sum, self.state.correct, self.state.seen], self.env, built.device)
        state = dataclasses.asdict(self.state) | {"elapsed": self.elapsed(), "loss_sum": sums[0],
                                                  "correct": int(sums[1]), "seen": int(sums[2])}
        return {"config": self.config.to_dict()} | built.parts_state() | {
            "state": state, "world_size": self.env.world_size,  # processes: a resume must use as many
            "rng": {"torch": torch.get_rng_state(),
                    "cuda": torch.cuda.get_rng_state_all() if built.device.type == "cuda" else []}}

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
        if self.env.is_main:
            warn_if_other_torch(checkpoint, self.run_dir.path)
        built.load_parts(checkpoint)
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
            self.info.epoch, self.info.global_step = state.epoch, state.global_step
            call(self.callbacks, "on_step_end", self.info, Step(
                epoch + 1, step + 1, state.global_step, self.built.optimizer.param_groups[0]["lr"],
                config.batch_size * self.env.world_size, self.built.trainer.last_loss))
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

    def _stop(self, where: str) -> None:
        self.stop_signal = self.stop_signal or signal.SIGTERM
        name = signal.Signals(self.stop_signal).name
        raise TrainingStopped(f"stopped by {name} {where}; checkpoint saved in {self.run_dir.last}. Continue with: "
                              f"{launcher(self.env.world_size)} train --resume {self.run_dir.path}",
                              exit_code=128 + self.stop_signal)

    def run_epochs(self) -> None:
        state, built = self.state, self.built
        selection = built.selection
        while state.epoch < self.config.epochs:  # a --time plan may change the epochs (resize_to_budget)
            config, epoch = self.config, state.epoch
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
            if built.dataset.val is not None:
                row |= built.validation_metrics()
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
            if self.plan is not None and state.epoch < config.epochs:  # before the checkpoint, which records it
                config = self.resize_to_budget()
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

    def resize_to_budget(self) -> Config:
        """--time: the plan revised from the steps' measured time (engine/budget.resize_plan); config.yaml and the
        checkpoints record the new steps, so a resume continues the resized schedule."""
        total = budget.resize_plan(self.built, self.plan, self.state, self.elapsed())
        if total is not None:
            self.built.resize(total)
            self.config = self.info.config = self.built.config
            if self.env.is_main:
                self.run_dir.write_config(self.config)
        return self.config

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
        self.progress.message(result.sentence())

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
                raise TrainingStopped(error.advice(self.config.lr, self.run_dir.last)) from None
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
        if not self.ended and self.callbacks:  # once: a run that stopped in finish() has called them
            self.ended = True
            call_run_end(self.callbacks, self.info, summary)

    def _model_from_python(self) -> torch.nn.Module | None:
        """A copy of the model passed from Python, for the inference path (which cannot rebuild it by name)."""
        return copy.deepcopy(self.built.model) if self.own_model is not None and \
            self.config.model.startswith("python/") else None

    def _on_signal(self, signum: int, frame) -> None:  # noqa: ANN001
        self.stop_signal = signum

    def finish(self) -> dict[str, Any]:
        state, config = self.state, self.config
        facts = {"time_to_first_step": self.time_to_first_step,
                 "time_budget": self.plan.describe() if self.plan is not None else None,
                 # a callback's run.stop(): finished early, as early_stop does
                 "stopped_by": self.info.stop_reason if state.epoch < config.epochs else None}
        summary = posthoc.finish(self.run_dir, self.built, self.env, state, self.elapsed, facts,
                                 model=self._model_from_python(),
                                 plots=any(isinstance(c, Logger) and c.wants_images for c in self.callbacks))
        if self.env.is_main:
            self.run_dir.write_json(self.run_dir.status_path, {"epoch": state.epoch, "global_step": state.global_step,
                                                               "complete": True})
            self.info.epoch, self.info.global_step = state.epoch, state.global_step
            self._end_callbacks(summary)
        return summary
