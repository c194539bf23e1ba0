"""The Python API: the same verbs as the CLI, which is a thin layer over these. A facade: the work is in the
workflows (fit.py, evaluation.py, predict.py, export/, report/...), each of which can be used directly too."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from torch import nn

from . import fit
from .config import Config, build_config, load_yaml
from .data.memory import python_dataset_name
from .engine.callbacks import Callback, RunInfo, Step, check_callbacks  # noqa: F401  (visiontrain.Callback...)
from .errors import ConfigError
from .models.own import PYTHON_PREFIX, python_name
from .evaluation import evaluate_run
from .inference import Predictor, load  # noqa: F401  (visiontrain.load and visiontrain.api.Predictor)
from .run import RunDir


@dataclass
class Run:
    """A finished run: its folder, summary.json and metrics.csv rows."""

    path: Path
    summary: dict[str, Any]
    metrics: list[dict[str, str]] = field(default_factory=list)

    @property
    def test_acc(self) -> float | None:
        return self.summary.get("test_acc")


def train(config: Config | dict | str | Path | None = None, /, *, resume: str | Path | None = None,
          start_time: float | None = None, model: Any = None, data: Any = None, callbacks: Sequence[Any] = (),
          **fields: Any) -> Run:
    """Train a model and evaluate it on the test split. Returns the Run.

    config: a Config, a dict of fields, or a YAML file; keyword arguments override single fields
        (e.g. `train(dataset="mnist", model="simple-cnn", epochs=1)`).
    resume: a run folder to continue (exactly, from its newest valid checkpoint); fields may raise `epochs`.
    start_time: when the command started (time.perf_counter()), so start-up counts in the run's seconds.
    model: a registered name (the `model` field); or your own nn.Module, or a builder (a function or class called
        with those of num_classes, in_channels, image_size, width it takes). A builder registered under the
        `visiontrain.models` entry points trains under its name, so the CLI can rebuild it; anything else is
        recorded as `python/<ClassName>` and is rebuilt only by visiontrain.load(run, model=...).
    data: an image folder's path (the `dataset` field); or a torch Dataset of (image, label), an (images, labels)
        pair of tensors, or a dict of those per split ("train", "val", "test", and "classes": names), converted once
        into memory (data/memory.py). A resume from Python passes the same model and data again.
    callbacks: objects with on_run_start / on_step_end / on_epoch_end / on_run_end hooks (engine/callbacks.py);
        `run.stop(reason)` in a hook ends the run early, normally; an exception raised in one abandons it.
    (docs/ecosystem.md shows all of them.)
    """
    fields = dict(fields)
    if model is not None:
        model = _model_field(model, fields)
    if data is not None:
        if isinstance(data, (str, os.PathLike)):
            fields["dataset"], data = str(data), None
        else:
            fields["dataset"] = python_dataset_name(data)
    callbacks = check_callbacks(list(callbacks or ()))
    if resume is not None:
        summary = fit.resume(resume, _as_dict(config) | fields, start_time=start_time, model=model, data=data,
                             callbacks=callbacks)
    else:
        resolved = config if isinstance(config, Config) and not fields else build_config(_as_dict(config) | fields)
        summary = fit.train(resolved, start_time=start_time, model=model, data=data, callbacks=callbacks)
    run = RunDir(summary["run_dir"])
    return Run(run.path, summary, run.read_metrics())


def _model_field(model: Any, fields: dict[str, Any]) -> Any:
    """Set fields["model"] for a model given to train(); returns what build() must use instead of the registry's
    model (None: the registry builds it by name)."""
    if isinstance(model, str):
        fields["model"] = model
        return None
    if not (isinstance(model, nn.Module) or callable(model)):
        raise ConfigError(f"model: a {type(model).__name__} is neither a model name, an nn.Module nor a builder")
    fields["model"] = python_name(model)
    return model if fields["model"].startswith(PYTHON_PREFIX) else None  # a registered builder: built by name


def _as_dict(config: Config | dict | str | Path | None) -> dict[str, Any]:
    if config is None:
        return {}
    if isinstance(config, Config):
        return config.to_dict()
    if isinstance(config, (str, Path)):
        return load_yaml(config)
    return dict(config)


def evaluate(run_dir: str | Path, *, split: str = "test", data: str | None = None, verbose: bool = False) -> dict:
    """Metrics of a run's model on a split (also written to run_dir/eval/<split>/)."""
    return evaluate_run(run_dir, split=split, data=data, verbose=verbose)
