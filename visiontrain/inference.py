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
from .models import as_classifier, create_model
from .run import RunDir


class Predictor:
    """A trained model ready for inference, with its class names and preprocessing."""

    def __init__(self, checkpoint: dict[str, Any], device: str | torch.device = "cpu", precision: str | None = None,
                 *, model: torch.nn.Module | None = None):
        """precision: fp32, bf16 or fp16 autocast; None: the run's `inference_precision` (fp32 for older runs).
        model: the network to load the weights into (a model passed from Python, which no name rebuilds); default:
        the registry's model the checkpoint names."""
        config = checkpoint["config"]
        self.classes: list[str] = list(checkpoint["classes"])
        self.mean, self.std = list(checkpoint["mean"]), list(checkpoint["std"])
        self.input_size: list[int] = list(checkpoint["input_size"])  # [C, H, W]
        self.decode_policy = checkpoint.get("decode_policy", {})
        self.config = config
        if model is None:
            self.model = create_model(config["model"], num_classes=len(self.classes), in_channels=self.input_size[0],
                                      image_size=self.input_size[-1], width=config.get("width", 1.0))
            self.model.load_state_dict(checkpoint.get("ema") or checkpoint["model"])
        else:
            self.model = as_classifier(model, "model")
            try:
                self.model.load_state_dict(checkpoint.get("ema") or checkpoint["model"])
            except RuntimeError as error:
                detail = str(error).splitlines()[1].strip() if len(str(error).splitlines()) > 1 else str(error)
                raise CheckpointError(f"the model passed does not fit the weights of {config.get('model')} ({detail}); "
                                      "pass a module of the same class, built with the same arguments") from None
        device = torch.device(device)
        self.model.eval().to(device)
        self.precision = precision or config.get("inference_precision") or "fp32"
        self.normalize = Normalizer(self.mean, self.std, choose_precision(self.precision, device, channels_last=False,
                                                                          training=False))
        self.tta = bool(config.get("tta"))
        self.allow_flip = bool(checkpoint.get("allow_flip", True))  # digits are never mirrored, also at TTA

    def logits(self, images: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
        """Logits float (N, K) for uint8 images (N, C, H, W) of the model's input size (a tensor or a memory-mapped
        split), with the run's test-time augmentation if it trained with --tta."""
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
        pixels = decode_image(path, DecodePolicy.from_dict(self.decode_policy), size=self.input_size[-1])
        return torch.from_numpy(to_channels(pixels, self.input_size[0]))


def kept_checkpoint(run: RunDir) -> Path:
    """The checkpoint a run keeps for inference: best.pt (the epoch its selection metric picked), else last.pt."""
    candidates = [p for p in (run.best, run.last) if p.is_file()]
    if not candidates:
        raise CheckpointError(f"{run.path} has no checkpoint (checkpoints/best.pt or last.pt); the run never "
                              "finished an epoch")
    return candidates[0]


def load(path: str | Path, *, device: str | torch.device = "cpu", precision: str | None = None,
         model: torch.nn.Module | None = None) -> Predictor:
    """Load a run folder (its best checkpoint, else last) or a checkpoint file for inference (weights-only).
    model: for a run of a model passed from Python (config `model: python/...`), a module of the same class and
    arguments; the run's weights are loaded into it."""
    path = Path(path)
    if path.is_dir():
        path = kept_checkpoint(RunDir.open(path))
    elif not path.exists():
        raise RunError(f"{path} does not exist; give a run folder or a checkpoint file")
    return Predictor(load_checkpoint(path), device, precision, model=model)
