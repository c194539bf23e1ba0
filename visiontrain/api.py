"""The Python API: the same verbs as the CLI (which is a thin layer over these)."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config import RESUME_UNSAFE_FIELDS, Config, ConfigError, build_config, load_yaml
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
          start_time: float | None = None, **fields: Any) -> Run:
    """Train a model and evaluate it on the test split. Returns the Run.

    config: a Config, a dict of fields, or a YAML file; keyword arguments override single fields
        (e.g. `train(dataset="mnist", model="simple-cnn", epochs=1)`).
    resume: a run folder to continue (exactly, from its newest valid checkpoint); fields may raise `epochs`.
    """
    from .engine.fit import Fit

    start_time = start_time if start_time is not None else time.perf_counter()
    if resume is not None:
        run = RunDir.open(resume)
        resolved = resume_config(run, _as_dict(config) | fields)
        summary = Fit(resolved, start_time, run).run()
    else:
        resolved = config if isinstance(config, Config) and not fields else build_config(_as_dict(config) | fields)
        summary = Fit(resolved, start_time).run()
    run = RunDir(summary["run_dir"])
    return Run(run.path, summary, run.read_metrics())


def _as_dict(config: Config | dict | str | Path | None) -> dict[str, Any]:
    if config is None:
        return {}
    if isinstance(config, Config):
        return config.to_dict()
    if isinstance(config, (str, Path)):
        return load_yaml(config)
    return dict(config)


def resume_config(run: RunDir, overrides: dict[str, Any]) -> Config:
    """The run's saved config with `overrides` applied; refuses changes that would mix two experiments."""
    saved = build_config(load_yaml(run.config_path), apply_preset=False)
    changed = [name for name in RESUME_UNSAFE_FIELDS if name in overrides
               and build_config(saved.to_dict() | {name: overrides[name]}, apply_preset=False).to_dict()[name]
               != saved.to_dict()[name]]
    if changed:
        raise ConfigError(f"cannot resume {run.path} with a different {', '.join(changed)} (it would mix two "
                          "experiments); start a new run instead")
    overrides = {k: v for k, v in overrides.items() if k not in ("name", "preset")}
    return build_config(saved.to_dict() | overrides, apply_preset=False)


def evaluate(run_dir: str | Path, *, split: str = "test", data: str | None = None, verbose: bool = False) -> dict:
    """Metrics of a run's model on a split (also written to run_dir/eval/<split>/)."""
    from .evaluation import evaluate_run

    return evaluate_run(run_dir, split=split, data=data, verbose=verbose)
