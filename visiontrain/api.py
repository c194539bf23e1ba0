"""The Python API: the same verbs as the CLI (which is a thin layer over these)."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch

from .config import RESUME_UNSAFE_FIELDS, Config, ConfigError, build_config, load_yaml
from .errors import CheckpointError, RunError
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


class Predictor:
    """A trained model ready for inference, with its class names and preprocessing."""

    def __init__(self, checkpoint: dict[str, Any], device: str = "cpu"):
        from .engine.loop import Normalizer
        from .engine.precision import Precision
        from .models import create_model

        config = checkpoint["config"]
        self.classes: list[str] = list(checkpoint["classes"])
        self.mean, self.std = list(checkpoint["mean"]), list(checkpoint["std"])
        self.input_size: list[int] = list(checkpoint["input_size"])  # [C, H, W]
        self.decode_policy = checkpoint.get("decode_policy", {})
        self.config = config
        self.model = create_model(config["model"], num_classes=len(self.classes), in_channels=self.input_size[0],
                                  image_size=self.input_size[-1], width=config.get("width", 1.0))
        self.model.load_state_dict(checkpoint.get("ema") or checkpoint["model"])
        self.model.eval().to(device)
        self.normalize = Normalizer(self.mean, self.std, Precision(torch.device(device), None, False, False))
        self.tta = bool(config.get("tta"))
        self.allow_flip = bool(checkpoint.get("allow_flip", True))  # digits are never mirrored, also at TTA

    def logits(self, images: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
        """Logits float (N, K) for uint8 images (N, C, H, W) of the model's input size."""
        from .engine.loop import predict_logits

        if images.dtype != torch.uint8 or list(images.shape[1:]) != self.input_size:
            raise ValueError(f"images must be uint8 (N, {', '.join(map(str, self.input_size))}), got "
                             f"{images.dtype} {tuple(images.shape)}")
        return predict_logits(self.model, images, self.normalize, batch_size=batch_size, tta=self.tta,
                              allow_flip=self.allow_flip)

    def predict(self, inputs: Sequence[str | Path] | torch.Tensor, top_k: int = 5) -> list[dict[str, Any]]:
        """Top-k class names and probabilities for image files or a uint8 (N, C, H, W) tensor."""
        if isinstance(inputs, torch.Tensor):
            images = inputs
        else:
            images = torch.stack([self._decode(path) for path in inputs])
        probs = self.logits(images).softmax(1)
        top = probs.topk(min(top_k, len(self.classes)), 1)
        return [{"top": [(self.classes[int(c)], float(p)) for c, p in zip(indices, values)]}
                for indices, values in zip(top.indices, top.values)]

    def _decode(self, path: str | Path) -> torch.Tensor:
        from .data.decode import DecodePolicy, decode_image, to_channels

        pixels = decode_image(path, DecodePolicy.from_dict(self.decode_policy), size=self.input_size[-1])
        return torch.from_numpy(to_channels(pixels, self.input_size[0]))


def load(path: str | Path, *, device: str = "cpu") -> Predictor:
    """Load a run folder (its best checkpoint, else last) or a checkpoint file for inference (weights-only)."""
    from .engine.checkpoint import load_checkpoint

    path = Path(path)
    if path.is_dir():
        run = RunDir.open(path)
        candidates = [p for p in (run.best, run.last) if p.is_file()]
        if not candidates:
            raise CheckpointError(f"{run.path} has no checkpoint (checkpoints/best.pt or last.pt); the run never "
                                  "finished an epoch")
        path = candidates[0]
    elif not path.exists():
        raise RunError(f"{path} does not exist; give a run folder or a checkpoint file")
    return Predictor(load_checkpoint(path), device)


def evaluate(run_dir: str | Path, *, split: str = "test", data: str | None = None, verbose: bool = False) -> dict:
    """Metrics of a run's model on a split (also written to run_dir/eval/<split>/)."""
    from .evaluation import evaluate_run

    return evaluate_run(run_dir, split=split, data=data, verbose=verbose)
