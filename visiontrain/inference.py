"""Inference: a trained model with its class names and preprocessing (`Predictor`), loaded from a run (`load`).

Every verb that turns images into logits after training goes through `Predictor.logits`: the evaluation at the end
of `train`, `eval`, `predict`, `explain` and the reference that exported models are checked against. So the
numbers in `eval/test/predictions.csv`, `visiontrain predict` and an exported model come from one numeric path.

That path runs in the run's *inference* precision (`inference_precision`, fp32 unless the user asks for another),
not in the training precision: bf16 autocast, which training chooses by itself on CPUs with native bf16, moves
probabilities by up to ~1e-3, and a prediction must not depend on the CPU that made it.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import torch

from .data.decode import DecodePolicy, decode_image, to_channels
from .engine.checkpoint import load_checkpoint
from .engine.loop import Normalizer, predict_logits
from .engine.precision import choose_precision
from .errors import CheckpointError, RunError
from .metrics.input_check import unfamiliar_notes
from .models import create_model
from .run import RunDir


class Predictor:
    """A trained model ready for inference, with its class names and preprocessing."""

    def __init__(self, checkpoint: dict[str, Any], device: str | torch.device = "cpu", precision: str | None = None):
        """precision: fp32, bf16 or fp16 autocast; None: the run's `inference_precision` (fp32 for older runs)."""
        config = checkpoint["config"]
        self.classes: list[str] = list(checkpoint["classes"])
        self.mean, self.std = list(checkpoint["mean"]), list(checkpoint["std"])
        self.input_size: list[int] = list(checkpoint["input_size"])  # [C, H, W]
        self.decode_policy = checkpoint.get("decode_policy", {})
        self.config = config
        self.model = create_model(config["model"], num_classes=len(self.classes), in_channels=self.input_size[0],
                                  image_size=self.input_size[-1], width=config.get("width", 1.0))
        self.model.load_state_dict(checkpoint.get("ema") or checkpoint["model"])
        device = torch.device(device)
        self.model.eval().to(device)
        self.precision = precision or config.get("inference_precision") or "fp32"
        self.normalize = Normalizer(self.mean, self.std, choose_precision(self.precision, device, channels_last=False,
                                                                          training=False))
        self.tta = bool(config.get("tta"))
        self.allow_flip = bool(checkpoint.get("allow_flip", True))  # digits are never mirrored, also at TTA
        # temperature scaling, fitted after training (fit.py; metrics/calibration.py): logits / T; 1 for older runs
        self.temperature = checked_temperature(checkpoint.get("temperature", 1.0))
        self.calibration = checkpoint.get("calibration")  # how T was fitted, what it changed (or why T = 1)
        self.input_stats = checkpoint.get("input_stats")  # the training images' ranges (metrics/input_check.py)

    def logits(self, images: torch.Tensor, batch_size: int = 1024, *, calibrated: bool = True) -> torch.Tensor:
        """Logits float (N, K) for uint8 images (N, C, H, W) of the model's input size (a tensor or a memory-mapped
        split), with the run's test-time augmentation if it trained with --tta, divided by the run's temperature
        (calibrated=False: the model's own logits, which the temperature is fitted to)."""
        if images.dtype != torch.uint8 or list(images.shape[1:]) != self.input_size:
            raise ValueError(f"images must be uint8 (N, {', '.join(map(str, self.input_size))}), got "
                             f"{images.dtype} {tuple(images.shape)}")
        logits = predict_logits(self.model, images, self.normalize, batch_size=batch_size, tta=self.tta,
                                allow_flip=self.allow_flip)
        return self.calibrate(logits) if calibrated else logits

    def calibrate(self, logits: torch.Tensor) -> torch.Tensor:
        """Logits divided by the run's temperature (the predicted class is unchanged: T > 0 keeps their order)."""
        return logits if self.temperature == 1.0 else logits / self.temperature

    def predict(self, inputs: Sequence[str | Path] | torch.Tensor, top_k: int = 5) -> list[dict[str, Any]]:
        """Top-k class names and probabilities for image files or a uint8 (N, C, H, W) tensor."""
        if isinstance(inputs, torch.Tensor):
            images = inputs
        else:
            images = torch.stack([self._decode(path) for path in inputs])
        probs = self.logits(images).softmax(1)
        top = probs.topk(min(top_k, len(self.classes)), 1)
        notes = unfamiliar_notes(images.numpy(), self.input_stats)  # '' for images like the training images
        return [{"top": [(self.classes[int(c)], float(p)) for c, p in zip(indices, values)], "note": note}
                for indices, values, note in zip(top.indices, top.values, notes)]

    def _decode(self, path: str | Path) -> torch.Tensor:
        pixels = decode_image(path, DecodePolicy.from_dict(self.decode_policy), size=self.input_size[-1])
        return torch.from_numpy(to_channels(pixels, self.input_size[0]))


def checked_temperature(value: Any) -> float:
    """A checkpoint's temperature: a positive finite number, or a CheckpointError naming it."""
    if type(value) not in (int, float) or not 0 < value < float("inf"):
        raise CheckpointError(f"the checkpoint's temperature {value!r} is not a positive number; it is damaged: "
                              "retrain, or use another checkpoint")
    return float(value)


def kept_checkpoint(run: RunDir) -> Path:
    """The checkpoint a run keeps for inference: best.pt (the epoch its selection metric picked), else last.pt."""
    candidates = [p for p in (run.best, run.last) if p.is_file()]
    if not candidates:
        raise CheckpointError(f"{run.path} has no checkpoint (checkpoints/best.pt or last.pt); the run never "
                              "finished an epoch")
    return candidates[0]


def load(path: str | Path, *, device: str | torch.device = "cpu", precision: str | None = None) -> Predictor:
    """Load a run folder (its best checkpoint, else last) or a checkpoint file for inference (weights-only)."""
    path = Path(path)
    if path.is_dir():
        path = kept_checkpoint(RunDir.open(path))
    elif not path.exists():
        raise RunError(f"{path} does not exist; give a run folder or a checkpoint file")
    return Predictor(load_checkpoint(path), device, precision)
