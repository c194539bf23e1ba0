"""Callbacks: code of yours that a run calls at fixed points, and that can stop it (an Optuna pruner, say).

    class Prune(visiontrain.Callback):
        def on_epoch_end(self, run, row):
            trial.report(row["val_acc"], row["epoch"])
            if trial.should_prune():
                run.stop("pruned by optuna")      # or: raise optuna.TrialPruned()

    visiontrain.train(dataset="mnist", model="lenet", callbacks=[Prune()])

The hooks (any object with some of these methods is a callback; subclassing Callback is optional):
    on_run_start(run)            the model is built, the run folder exists (a resumed run: after its checkpoint
                                 loaded; run.resumed_step is the global step it continues from)
    on_step_end(run, step)       after every training step (a Step: epoch, step, global_step, lr, loss...)
    on_epoch_end(run, row)       after each epoch's validation and checkpoint; row is its metrics.csv row
    on_run_end(run, summary)     the run is over: summary["status"] is "complete" (summary.json's contents) or
                                 "stopped" (a signal, a non-finite loss, an exception: the run can be resumed)

Stopping: `run.stop(reason)` in any hook ends training at the end of the current epoch (its validation row and
checkpoint are written), then the run finishes as early stopping finishes one: the test evaluation, summary.json
with status "complete" and "stopped_by": reason, the report. Raising an exception in a hook abandons the run
instead: the exception leaves visiontrain.train() as it is (optuna.TrialPruned reaches Optuna), the run folder keeps
its newest checkpoint and `visiontrain train --resume RUN` continues it.

Under torchrun the callbacks run in the first process only (rank 0); a stop reaches every process.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError

if TYPE_CHECKING:
    from torch import nn

    from ..config import Config

HOOKS = ("on_run_start", "on_step_end", "on_epoch_end", "on_run_end")


class Callback:
    """A base class with every hook doing nothing; override the ones you need."""

    def on_run_start(self, run: RunInfo) -> None:
        pass

    def on_step_end(self, run: RunInfo, step: Step) -> None:
        pass

    def on_epoch_end(self, run: RunInfo, row: dict[str, Any]) -> None:
        pass

    def on_run_end(self, run: RunInfo, summary: dict[str, Any]) -> None:
        pass


@dataclass
class RunInfo:
    """What a hook may read of the run, and `stop()`."""

    path: Path  # the run folder
    config: Config  # as it runs
    model: nn.Module  # the plain model (weights as trained so far)
    classes: list[str]
    steps_per_epoch: int
    resumed_step: int = 0  # the global step a resumed run continues from (0: a new run)
    epoch: int = 0  # epochs completed
    global_step: int = 0  # training steps done in the whole run
    stop_reason: str | None = field(default=None, repr=False)

    def stop(self, reason: str = "a callback") -> None:
        """End training at the end of the current epoch; the run then finishes normally (see the module's doc)."""
        self.stop_reason = self.stop_reason or str(reason)


@dataclass
class Step:
    """One training step, as on_step_end sees it. `loss` is read from the device only when asked for."""

    epoch: int  # 1-based, as in metrics.csv
    step: int  # 1-based, within the epoch
    global_step: int  # steps done in the whole run, this one included
    lr: float
    batch_size: int  # images per step (all processes)
    loss_tensor: Any = field(repr=False, default=None)  # the loss on the device (loggers read many at once)
    _read: list[float] = field(repr=False, default_factory=list)

    @property
    def loss(self) -> float:
        """This step's training loss (mean over its batch): one host sync, only for a hook that reads it."""
        if not self._read:
            self._read.append(float("nan") if self.loss_tensor is None else float(self.loss_tensor))
        return self._read[0]


def check_callbacks(callbacks: list[Any]) -> list[Any]:
    """Refuse, in one sentence, what is not a callback (a class instead of an instance is the usual slip)."""
    for callback in callbacks:
        if isinstance(callback, type):
            raise ConfigError(f"callbacks: {callback.__name__} is a class; pass an instance, {callback.__name__}()")
        if not any(callable(getattr(callback, hook, None)) for hook in HOOKS):
            raise ConfigError(f"callbacks: {type(callback).__name__} has none of the hooks {', '.join(HOOKS)}")
    return list(callbacks)


def call(callbacks: list[Any], hook: str, *args: Any) -> None:
    """Call `hook` on every callback that has it, in order."""
    for callback in callbacks:
        method = getattr(callback, hook, None)
        if method is not None:
            method(*args)


def call_run_end(callbacks: list[Any], run: RunInfo, summary: dict[str, Any]) -> None:
    """on_run_end. For a run that stopped, every hook is called even if one fails, and a failure is one line: the
    run's own error is the one to raise."""
    if summary["status"] == "complete":
        call(callbacks, "on_run_end", run, summary)
        return
    for callback in callbacks:
        try:
            call([callback], "on_run_end", run, summary)
        except Exception as error:  # noqa: BLE001 - see above
            print(f"visiontrain: warning: {type(callback).__name__}.on_run_end failed: {error}", file=sys.stderr)
