"""The run folder: runs/<name>/ with config.yaml, metrics.csv, summary.json, status.json and checkpoints/.

Readable without visiontrain (YAML, CSV, JSON, and checkpoints that plain torch.load(weights_only=True) opens).
"""
from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path
from typing import Any

from ._io import atomic_write_text
from .config import RESUME_UNSAFE_FIELDS, Config, build_config, load_yaml, to_yaml
from .errors import ConfigError, RunError

METRICS_COLUMNS = ["epoch", "seconds", "lr", "train_loss", "train_acc", "val_loss", "val_acc"]
OPTIONAL_COLUMNS = ["val_balanced_acc",  # written only when the rows hold it (the best epoch is chosen by it)
                    "head_lr", "backbone_lr", "stage"]  # from pretrained weights: the two lrs, and what learnt


class RunDir:
    def __init__(self, path: str | Path):
        self.path = Path(path)

    config_path = property(lambda self: self.path / "config.yaml")
    metrics_path = property(lambda self: self.path / "metrics.csv")
    summary_path = property(lambda self: self.path / "summary.json")
    status_path = property(lambda self: self.path / "status.json")
    checkpoints = property(lambda self: self.path / "checkpoints")
    last = property(lambda self: self.path / "checkpoints" / "last.pt")
    best = property(lambda self: self.path / "checkpoints" / "best.pt")
    split_path = property(lambda self: self.path / "split.csv")  # the train/val/test split (data/splitfile.py)
    samples_path = property(lambda self: self.path / "samples.pt")  # data from Python: images export verifies on

    def plot_path(self, stem: str, split: str = "test") -> Path:
        """plots/<stem>.png for the test split (the common case keeps the short name), else plots/<stem>_<split>.png."""
        return self.path / "plots" / (f"{stem}.png" if split == "test" else f"{stem}_{split}.png")

    @classmethod
    def create(cls, config: Config) -> "RunDir":
        """A new folder; with an explicit name that exists, refuse rather than overwrite."""
        runs = Path(config.runs_dir).expanduser()
        if config.name is not None:
            path = runs / config.name
            if path.exists() and any(path.iterdir()):
                raise RunError(f"run folder {path} already exists; choose another --name, or continue it with "
                               f"--resume {path}")
        else:
            dataset = Path(config.dataset).name if "/" in config.dataset else config.dataset
            # timm/resnet18 -> timm-resnet18 (one folder, not two); a dataset folder named 'my photos' or worse
            # -> my-photos: the default name is as plain as an explicit --name must be (config.check_folder_name)
            stem = re.sub(r"[^\w.+]+", "-", f"{dataset}-{config.model}").strip("-.")[:100] or "run"
            stem += "-overfit-check" if config.overfit_batch else ""  # a sanity check, not a model to use
            number = 1
            while (path := runs / (stem if number == 1 else f"{stem}-{number}")).exists():
                number += 1
        try:
            (path / "checkpoints").mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise RunError(f"cannot create the run folder {path} ({error.strerror}); check --runs-dir") from None
        return cls(path)

    @classmethod
    def open(cls, path: str | Path) -> "RunDir":
        run = cls(path)
        if not run.path.is_dir():
            raise RunError(f"{run.path} does not exist; give a run folder such as runs/fashion-mnist-fastnet")
        if not run.config_path.is_file():
            raise RunError(f"{run.path} is not a visiontrain run folder (it has no config.yaml)")
        return run

    def resume_config(self, overrides: dict[str, Any]) -> Config:
        """The run's saved config with `overrides` applied; refuses changes that would mix two experiments."""
        saved = build_config(load_yaml(self.config_path), apply_preset=False)
        changed = [name for name in RESUME_UNSAFE_FIELDS if name in overrides
                   and build_config(saved.to_dict() | {name: overrides[name]}, apply_preset=False).to_dict()[name]
                   != saved.to_dict()[name]]
        if changed:
            raise ConfigError(f"cannot resume {self.path} with a different {', '.join(changed)} (it would mix two "
                              "experiments); start a new run instead")
        overrides = {k: v for k, v in overrides.items() if k not in ("name", "preset")}
        return build_config(saved.to_dict() | overrides, apply_preset=False)

    def write_config(self, config: Config) -> None:
        atomic_write_text(self.config_path, to_yaml(config))

    def write_metrics(self, rows: list[dict[str, Any]]) -> None:
        buffer = io.StringIO()
        columns = METRICS_COLUMNS + [k for k in OPTIONAL_COLUMNS if any(k in row for row in rows)]
        writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: _fmt(row.get(k)) for k in columns})
        atomic_write_text(self.metrics_path, buffer.getvalue())

    def read_metrics(self) -> list[dict[str, str]]:
        if not self.metrics_path.is_file():
            return []
        with open(self.metrics_path, newline="") as handle:
            return list(csv.DictReader(handle))

    def write_json(self, path: Path, data: dict[str, Any]) -> None:
        atomic_write_text(path, json.dumps(data, indent=2, default=str) + "\n")

    def read_summary(self) -> dict[str, Any]:
        return json.loads(self.summary_path.read_text()) if self.summary_path.is_file() else {}


def _fmt(value: Any) -> Any:
    if isinstance(value, float):
        return f"{value:.6g}"
    return "" if value is None else value
