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
from typing import Any, Sequence, Union

import numpy as np
import PIL.Image
import torch

from .data.decode import DecodeError, DecodePolicy, decode_array, decode_image, decode_pil, to_channels
from .engine.checkpoint import load_checkpoint
from .engine.loop import Normalizer, predict_logits
from .engine.precision import choose_precision
from .errors import CheckpointError, DataError, RunError
from .metrics.input_check import unfamiliar_notes
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
        # channels_last on the CPU and CUDA, as training: oneDNN's NHWC convolutions ran fastnet's fp32 inference 1.5x
        # faster on 2 cores; the logits agree with the NCHW ones (and the exports') far inside the 1e-4 of the tests
        precision = choose_precision(self.precision, device, channels_last=None, training=False)
        if precision.channels_last:
            self.model.to(memory_format=torch.channels_last)
        self.normalize = Normalizer(self.mean, self.std, precision)
        self.tta = bool(config.get("tta"))
        self.allow_flip = bool(checkpoint.get("allow_flip", True))  # digits are never mirrored, also at TTA
        # temperature scaling, fitted after training (fit.py; metrics/calibration.py): logits / T; 1 for older runs
        self.fitted(checkpoint)

    def fitted(self, checkpoint: dict[str, Any]) -> None:
        """Take what is fitted after training from `checkpoint` (posthoc.py writes it into the kept checkpoint after
        this model is built, and keeps using this model rather than building it again)."""
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

    def predict(self, inputs: ImageInput | Sequence[ImageInput], top_k: int = 5) -> list[dict[str, Any]]:
        """Top-k class names and probabilities for images given as files or as Python objects, mixed in one list:
        paths (str or Path), PIL images, numpy arrays (H, W) or (H, W, C), tensors (C, H, W) or (N, C, H, W); arrays
        and tensors uint8 (0..255), 16-bit gray, or float from 0 to 1. One object may be given bare.

        Each is prepared as a file of it is (data/decode.py's policy: EXIF orientation, alpha on white, 16-bit
        scaling; the resize and centre crop; the channels), so a PIL image and its PNG file give one answer.
        Returns one {"input", "index", "top": [(class, probability), ...]} per image, in order: "input" names it
        (the path as given, "<PIL image 3>", "<array 1>", "<tensor 0>", "<tensor 2, image 5>" for the list's
        item 3, 1, 0 and the sixth image of item 2's batch; "<image 5>" for a bare batch)."""
        images, names = self.prepare(inputs)
        probs = self.logits(images).softmax(1)
        top = probs.topk(min(top_k, len(self.classes)), 1)
        notes = unfamiliar_notes(images.numpy(), self.input_stats)  # '' for images like the training images
        return [{"input": name, "index": index, "top": [(self.classes[int(c)], float(p)) for c, p in zip(ids, values)],
                 "note": note}
                for index, (name, ids, values, note) in enumerate(zip(names, top.indices, top.values, notes))]

    def prepare(self, inputs: ImageInput | Sequence[ImageInput]) -> tuple[torch.Tensor, list[str]]:
        """uint8 (N, C, H, W) of the model's input size for `inputs` (as predict takes them), and each one's name."""
        if isinstance(inputs, torch.Tensor) and inputs.ndim == 4:  # a bare batch
            return self._batch(inputs, "<image {j}>")
        single = isinstance(inputs, (str, Path, PIL.Image.Image, np.ndarray, torch.Tensor))
        images, names = [], []
        for i, item in enumerate([inputs] if single else list(inputs)):
            if isinstance(item, torch.Tensor) and item.ndim == 4:
                batch, batch_names = self._batch(item, f"<tensor {i}, image {{j}}>")
                images += list(batch)
                names += batch_names
            else:
                name = _name_of(item, i)
                images.append(self._decode(item, name))
                names.append(name)
        if not images:
            raise DataError("predict: no images were given; pass paths, PIL images, numpy arrays or tensors")
        return torch.stack(images), names

    def _batch(self, batch: torch.Tensor, name: str) -> tuple[torch.Tensor, list[str]]:
        names = [name.format(j=j) for j in range(len(batch))]
        if batch.dtype == torch.uint8 and list(batch.shape[1:]) == self.input_size:
            return batch, names  # already what the model takes (a split's tensor, say): used as it is
        return torch.stack([self._decode(image, n) for image, n in zip(batch, names)]), names

    def _decode(self, item: ImageInput, name: str | None = None) -> torch.Tensor:
        """(C, H, W) uint8 of the model's input size, decoded as a file is; DataError naming the input (`name`,
        default: as the first of a list) if it is not an image."""
        name = name if name is not None else _name_of(item, 0)
        policy, size = DecodePolicy.from_dict(self.decode_policy), self.input_size[-1]
        try:
            if isinstance(item, (str, Path)):
                pixels = decode_image(item, policy, size=size)
            elif isinstance(item, PIL.Image.Image):
                pixels = decode_pil(item, policy, size=size)
            elif isinstance(item, (np.ndarray, torch.Tensor)):
                pixels = decode_array(_channels_last(item), policy, size=size)
            else:
                raise DecodeError(f"a {type(item).__name__} is not an image; give a path, a PIL image, a numpy array "
                                  "(H, W[, C]) or a tensor (C, H, W)")
        except DecodeError as error:
            raise DataError(f"{name}: {error}") from None
        return torch.from_numpy(to_channels(pixels, self.input_size[0]))


ImageInput = Union[str, Path, PIL.Image.Image, np.ndarray, torch.Tensor]  # what predict takes for one image


def _name_of(item: Any, index: int) -> str:
    if isinstance(item, (str, Path)):
        return str(item)
    kind = {PIL.Image.Image: "PIL image", np.ndarray: "array", torch.Tensor: "tensor"}
    return f"<{next((k for t, k in kind.items() if isinstance(item, t)), type(item).__name__)} {index}>"


def _channels_last(item: np.ndarray | torch.Tensor) -> np.ndarray:
    """A tensor (C, H, W) as the (H, W, C) array decode_array takes (torchvision's layout -> Pillow's); an array as
    it is."""
    if isinstance(item, np.ndarray):
        return item
    tensor = item.detach().cpu()
    if tensor.ndim == 3 and tensor.shape[0] in (1, 3, 4):
        tensor = tensor.permute(1, 2, 0)
    elif tensor.ndim != 2:
        raise DecodeError(f"a tensor of shape {tuple(item.shape)} is not an image; give (C, H, W) with C 1, 3 or 4, "
                          "or a batch (N, C, H, W)")
    if tensor.dtype in (torch.bfloat16, torch.float16):
        tensor = tensor.float()
    return tensor.numpy()


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
