"""The Python API: the same verbs as the CLI, which is a thin layer over these. A facade: the work is in the
workflows (fit.py, evaluation.py, predict.py, export/, report/...), each of which can be used directly too."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import fit
from .config import Config, build_config, load_yaml
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
          start_time: float | None = None, **fields: Any) -> Run:
    """Train a model and evaluate it on the test split. Returns the Run.

    config: a Config, a dict of fields, or a YAML file; keyword arguments override single fields
        (e.g. `train(dataset="mnist", model="simple-cnn", epochs=1)`).
    resume: a run folder to continue (exactly, from its newest valid checkpoint); fields may raise `epochs`.
    start_time: when the command started (time.perf_counter()), so start-up counts in the run's seconds.
    """
    if resume is not None:
        summary = fit.resume(resume, _as_dict(config) | fields, start_time=start_time)
    else:
        resolved = config if isinstance(config, Config) and not fields else build_config(_as_dict(config) | fields)
        summary = fit.train(resolved, start_time=start_time)
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


def evaluate(run_dir: str | Path, *, split: str = "test", data: str | None = None, verbose: bool = False) -> dict:
    """Metrics of a run's model on a split (also written to run_dir/eval/<split>/)."""
    return evaluate_run(run_dir, split=split, data=data, verbose=verbose)
