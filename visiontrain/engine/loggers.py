"""Experiment loggers: the run's scalars, hyper-parameters and final plots, written where tracking tools read them.

Each logger is an entry of the LOGGERS registry (a LoggerKind: how to create it, which package it needs), and a
Callback (engine/callbacks.py) that fit calls like any other, in the first process only. `--logger` names them,
comma-separated; csv is always on.

    csv           steps.csv in the run folder (metrics.csv, one row per epoch, is the run folder's own)
    tensorboard   RUN/tensorboard/ event files (torch.utils.tensorboard; `tensorboard --logdir runs`)
    mlflow        an MLflow run in $MLFLOW_TRACKING_URI, else in RUNS_DIR/mlflow.db (SQLite), artifacts in
                  RUNS_DIR/mlartifacts (`mlflow ui --backend-store-uri sqlite:///runs/mlflow.db`)

What each one gets, every logger alike (the x axis is the global step, the number of training steps done):
    every --log-every steps   train/loss (that step's), train/lr, train/images_per_second (since the last point)
    every epoch               epoch/<column> for each metrics.csv column (epoch/val_acc, epoch/train_loss, ...)
    at the start              the resolved config (hyper-parameters)
    at the end                test/acc, test/loss, and plots/*.png as images (confusion matrix, curves, reliability)

A resumed run appends to the same logs, and no step appears twice: the steps a killed run logged after its newest
checkpoint are replayed by the resumed one, so each logger drops them. steps.csv is cut back to the checkpoint's
step; TensorBoard's event files get a purge marker at it (its reader hides the orphaned points); MLflow, which
cannot delete a point, receives the buffered points only when a checkpoint is written (flush(), before the
checkpoint), and a resumed run skips the steps its MLflow run already holds.
"""
from __future__ import annotations

import importlib.util
import json
import logging
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from .._io import atomic_write_text
from .._registry import LOGGERS
from ..errors import ConfigError
from .callbacks import Callback, RunInfo, Step

PLOTS = ("curves", "confusion_matrix", "reliability")  # the report's figures a logger shows as images at the end


@dataclass(frozen=True)
class LoggerKind:
    """A registry entry: `create(run)` makes the logger; `requires` are the modules it imports (optional extras),
    `install` what to pip install when one is missing."""

    description: str
    create: Callable[[RunInfo], Logger]
    requires: tuple[str, ...] = ()
    install: str = ""

    def missing(self, name: str) -> str | None:
        """The sentence to show when a required package is not installed, else None."""
        absent = [module for module in self.requires if importlib.util.find_spec(module) is None]
        if not absent:
            return None
        return f"logger {name} needs the {absent[0]} package, which is not installed: {self.install}"


def logger_names(spec: str) -> list[str]:
    """'tensorboard,mlflow' -> ['csv', 'tensorboard', 'mlflow']: csv first and always, each name once."""
    names = [name.strip().lower() for name in spec.split(",") if name.strip()]
    return list(dict.fromkeys(["csv", *names]))


def check_loggers(spec: str) -> None:
    """Refuse an unknown logger name, or one whose package is missing, in one sentence (before any data loads)."""
    for name in logger_names(spec):
        if name not in LOGGERS:
            raise ConfigError(f"logger: {LOGGERS.unknown_message(name)}")
        missing = LOGGERS.get(name).missing(name)
        if missing:
            raise ConfigError(f"logger: {missing}")


def create_loggers(run: RunInfo) -> list[Logger]:
    return [LOGGERS.get(name).create(run) for name in logger_names(run.config.logger)]


class Logger(Callback):
    """The common part: when a step is logged, what is logged, and throughput. A subclass writes `scalars`,
    `hparams` and `images` somewhere, and may buffer them until `persist` (called before every checkpoint is
    written, and at the end before `finish`)."""

    wants_images = False  # the final plots: fit draws them for such a logger when the report is off
    STEPS_PER_SYNC = 32  # logged steps whose losses are read from the device at once

    def __init__(self, run: RunInfo):
        self.every = run.config.log_every
        self._mark = (time.perf_counter(), run.resumed_step)  # throughput: images since the last point
        self._steps: list[tuple[int, Any, float, float]] = []  # (global step, loss tensor or float, lr, images/s)

    # -- what a subclass implements ---------------------------------------------------------------------------------
    def scalars(self, values: dict[str, float], step: int) -> None:
        raise NotImplementedError

    def hparams(self, config: dict[str, Any]) -> None:
        pass

    def images(self, pngs: dict[str, Path], step: int) -> None:
        pass

    def persist(self) -> None:
        """Write out what is buffered."""

    def finish(self, status: str) -> None:
        """Close; status: 'complete' or 'stopped'."""

    # -- what fit calls besides the hooks -----------------------------------------------------------------------------
    def flush(self) -> None:
        """Everything logged so far, written out: before each checkpoint, so no logger holds a step it lacks."""
        self._emit_steps()
        self.persist()

    def close(self, status: str) -> None:
        self.flush()
        self.finish(status)

    def _emit_steps(self) -> None:
        """The logged steps, their losses read from the device in one go: on a GPU, reading one loss waits for every
        kernel queued before it (engine/loop.py, Trainer.flush), so every STEPS_PER_SYNC logged steps, not each."""
        if not self._steps:
            return
        import torch

        tensors = [loss for _, loss, _, _ in self._steps if isinstance(loss, torch.Tensor)]
        values = iter(torch.stack(tensors).float().tolist() if tensors else [])
        for step, loss, lr, rate in self._steps:
            value = next(values) if isinstance(loss, torch.Tensor) else loss
            self.scalars({"train/loss": value, "train/lr": lr, "train/images_per_second": rate}, step)
        self._steps.clear()

    # -- the hooks --------------------------------------------------------------------------------------------------
    def on_run_start(self, run: RunInfo) -> None:
        self._mark = (time.perf_counter(), run.resumed_step)
        if not run.resumed_step:
            self.hparams(run.config.to_dict())

    def on_step_end(self, run: RunInfo, step: Step) -> None:
        if not self.every or step.global_step % self.every:
            return
        now, (then, then_step) = time.perf_counter(), self._mark
        self._mark = (now, step.global_step)
        rate = (step.global_step - then_step) * step.batch_size / max(1e-9, now - then)
        loss = step.loss_tensor if step.loss_tensor is not None else step.loss
        self._steps.append((step.global_step, loss, step.lr, rate))
        on_host = getattr(getattr(loss, "device", None), "type", "cpu") == "cpu"  # reading it costs nothing
        if on_host or len(self._steps) >= self.STEPS_PER_SYNC:
            self._emit_steps()

    def on_epoch_end(self, run: RunInfo, row: dict[str, Any]) -> None:
        self.scalars({f"epoch/{key}": float(value) for key, value in row.items() if _number(value)}, run.global_step)

    def on_run_end(self, run: RunInfo, summary: dict[str, Any]) -> None:
        try:
            if summary.get("status") == "complete":
                final = {"test/acc": summary.get("test_acc"), "test/loss": summary.get("test_loss"),
                         "best/val_acc": summary.get("best_val_acc")}
                self.scalars({key: float(value) for key, value in final.items() if _number(value)}, run.global_step)
                pngs = {stem: run.path / "plots" / f"{stem}.png" for stem in PLOTS}
                self.images({stem: path for stem, path in pngs.items() if path.is_file()}, run.global_step)
        finally:
            self.close(summary.get("status", "stopped"))


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


# -- csv: steps.csv ---------------------------------------------------------------------------------------------------
class CsvLogger(Logger):
    """RUN/steps.csv: global_step, epoch, step, loss, lr, images_per_second; appended at each checkpoint."""

    COLUMNS = ("global_step", "epoch", "step", "loss", "lr", "images_per_second")

    def __init__(self, run: RunInfo):
        super().__init__(run)
        self.path = run.path / "steps.csv"
        self.pending: list[str] = []
        self.steps_per_epoch = run.steps_per_epoch
        if run.resumed_step and self.path.is_file():  # cut the steps a killed run logged after its checkpoint
            lines = self.path.read_text().splitlines()
            kept = [lines[0]] + [line for line in lines[1:] if int(line.split(",")[0]) <= run.resumed_step]
            atomic_write_text(self.path, "\n".join(kept) + "\n")
        else:
            atomic_write_text(self.path, ",".join(self.COLUMNS) + "\n")

    def scalars(self, values: dict[str, float], step: int) -> None:
        if "train/loss" not in values:
            return  # metrics.csv holds the epochs
        epoch, in_epoch = divmod(step - 1, self.steps_per_epoch)
        self.pending.append(f"{step},{epoch + 1},{in_epoch + 1},{values['train/loss']:.6g},{values['train/lr']:.6g},"
                            f"{values['train/images_per_second']:.1f}\n")

    def persist(self) -> None:
        if self.pending:
            with open(self.path, "a") as handle:
                handle.writelines(self.pending)
            self.pending.clear()


LOGGERS.register("csv")(LoggerKind("steps.csv in the run folder (always on; metrics.csv has the epochs)", CsvLogger))


# -- TensorBoard ------------------------------------------------------------------------------------------------------
class TensorBoardLogger(Logger):
    """RUN/tensorboard/: scalars, the config as text and as hyper-parameters, the final plots as images."""

    wants_images = True

    def __init__(self, run: RunInfo):
        super().__init__(run)
        from torch.utils.tensorboard import SummaryWriter  # an optional extra: imported only when asked for

        # purge_step: TensorBoard hides what earlier event files hold from this step on (a killed run's last steps,
        # which the resumed run logs again)
        self.writer = SummaryWriter(str(run.path / "tensorboard"), flush_secs=30,
                                    purge_step=run.resumed_step + 1 if run.resumed_step else None)

    def scalars(self, values: dict[str, float], step: int) -> None:
        for key, value in values.items():
            self.writer.add_scalar(key, value, step)

    def hparams(self, config: dict[str, Any]) -> None:
        from torch.utils.tensorboard.summary import hparams

        import yaml

        self.writer.add_text("config", "    " + yaml.safe_dump(config, sort_keys=False).replace("\n", "\n    "), 0)
        values = {key: value if isinstance(value, (int, float, str, bool)) else str(value)
                  for key, value in config.items()}
        for summary in hparams(values, {"epoch/val_acc": 0.0, "test/acc": 0.0}):  # the metrics the table shows
            self.writer.file_writer.add_summary(summary)

    def images(self, pngs: dict[str, Path], step: int) -> None:
        import numpy as np
        from PIL import Image

        for stem, path in pngs.items():
            with Image.open(path) as image:
                self.writer.add_image(f"plots/{stem}", np.asarray(image.convert("RGB")), step, dataformats="HWC")

    def persist(self) -> None:
        self.writer.flush()

    def finish(self, status: str) -> None:
        self.writer.close()


LOGGERS.register("tensorboard")(LoggerKind(
    "RUN/tensorboard/ event files: tensorboard --logdir RUNS_DIR", TensorBoardLogger, ("tensorboard",),
    "pip install tensorboard (or pip install 'visiontrain[tensorboard]')"))


# -- MLflow -----------------------------------------------------------------------------------------------------------
class MlflowLogger(Logger):
    """One MLflow run per run folder (its id in RUN/mlflow.json, so a resumed run continues it)."""

    BATCH = 1000  # metrics per log_batch call (MLflow's limit)
    wants_images = True

    def __init__(self, run: RunInfo):
        super().__init__(run)
        from mlflow.entities import Metric, Param  # an optional extra: imported only when asked for
        from mlflow.tracking import MlflowClient

        for name in ("mlflow", "alembic"):  # their INFO lines (creating tables, migrations) are not ours to print;
            logging.getLogger(name).setLevel(logging.WARNING)  # after the import, which sets mlflow's level
        self.Metric, self.Param = Metric, Param
        runs_dir = Path(run.config.runs_dir).expanduser().resolve()
        self.uri = os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{runs_dir / 'mlflow.db'}"
        self.client = MlflowClient(self.uri)
        self.record = run.path / "mlflow.json"
        self.pending: list[Any] = []
        self.logged: dict[str, int] = {}  # resumed: key -> the last step the MLflow run already holds
        self.run_id = self._continued(run) if run.resumed_step else None
        if self.run_id is None:
            self.run_id = self._new_run(run, runs_dir)
        self.resumed_step = run.resumed_step

    def _new_run(self, run: RunInfo, runs_dir: Path) -> str:
        name = os.environ.get("MLFLOW_EXPERIMENT_NAME", "visiontrain")
        experiment = self.client.get_experiment_by_name(name)
        if experiment is not None:
            experiment_id = experiment.experiment_id
        else:
            location = (runs_dir / "mlartifacts").as_uri() if not os.environ.get("MLFLOW_TRACKING_URI") else None
            try:
                experiment_id = self.client.create_experiment(name, artifact_location=location)
            except Exception:  # noqa: BLE001 - another process (a sweep's) created it first
                experiment_id = self.client.get_experiment_by_name(name).experiment_id
        created = self.client.create_run(experiment_id, run_name=run.path.name,
                                         tags={"visiontrain.run_dir": str(run.path.resolve())})
        atomic_write_text(self.record, json.dumps({"tracking_uri": self.uri, "experiment_id": experiment_id,
                                                   "run_id": created.info.run_id}, indent=2) + "\n")
        return created.info.run_id

    def _continued(self, run: RunInfo) -> str | None:
        """The MLflow run this run folder logged to, set running again; None when it is in another store or gone."""
        try:
            saved = json.loads(self.record.read_text())
            if saved.get("tracking_uri") != self.uri:
                return None
            self.client.update_run(saved["run_id"], status="RUNNING")
            return saved["run_id"]
        except Exception:  # noqa: BLE001 - no record, or the MLflow run is gone: a new MLflow run is started
            return None

    def hparams(self, config: dict[str, Any]) -> None:
        params = [self.Param(key, str(value)) for key, value in config.items()]
        for start in range(0, len(params), 100):  # MLflow takes 100 params per call
            self.client.log_batch(self.run_id, params=params[start:start + 100])

    def scalars(self, values: dict[str, float], step: int) -> None:
        stamp = int(time.time() * 1000)
        self.pending += [self.Metric(key, value, stamp, step) for key, value in values.items()]

    def _already_logged(self, key: str) -> int:
        """The last step of `key` the MLflow run holds from before the resume (-1: none)."""
        if key not in self.logged:
            history = self.client.get_metric_history(self.run_id, key) if self.resumed_step else []
            self.logged[key] = max((point.step for point in history), default=-1)
        return self.logged[key]

    def persist(self) -> None:
        points = [point for point in self.pending if point.step > self._already_logged(point.key)]
        for start in range(0, len(points), self.BATCH):
            self.client.log_batch(self.run_id, metrics=points[start:start + self.BATCH])
        self.pending.clear()

    def images(self, pngs: dict[str, Path], step: int) -> None:
        for path in pngs.values():
            self.client.log_artifact(self.run_id, str(path), "plots")

    def finish(self, status: str) -> None:
        self.client.set_terminated(self.run_id, "FINISHED" if status == "complete" else "KILLED")


LOGGERS.register("mlflow")(LoggerKind(
    "an MLflow run in $MLFLOW_TRACKING_URI, else RUNS_DIR/mlflow.db: mlflow ui --backend-store-uri "
    "sqlite:///RUNS_DIR/mlflow.db", MlflowLogger, ("mlflow",),
    "pip install mlflow (or pip install 'visiontrain[mlflow]')"))
