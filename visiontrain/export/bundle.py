"""The bundle folder: the model file plus model.json, which describes everything needed to use it.

    <bundle>/model.onnx | model.ts | model.pt2 | model.safetensors
    <bundle>/README.md    the model card: what the model does, its data, metrics, limits, and how to load it
    <bundle>/model.json   format, classes, input_size [C, H, W], mean/std, the input convention, decode policy,
                          training config, metrics, versions, sha256 of the model file, verification numbers

`load_bundle` checks model.json against the model file (checksum, input shape, number of outputs) and
returns a BundlePredictor. For an ONNX bundle this module needs only numpy, Pillow and onnxruntime: torch is
imported only for TorchScript, pt2 and safetensors bundles.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import math
import sys
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np

from .._io import atomic_write_bytes, atomic_write_text
from .._version import __version__
from ..errors import VisiontrainError
from ..metrics.input_check import unfamiliar_notes, usable
from .formats import EXPORTERS

if TYPE_CHECKING:
    from ..inference import Predictor
    from .formats import ExportFormat

CARD = "README.md"  # the model card (card.py), made from model.json
BUNDLE_VERSION = 1  # of model.json; bumped on an incompatible change
MAX_SIDE = 4096  # of input_size: as config's image_size (a larger one in an edited model.json would be a memory bomb)
DATASET_KEYS = ("name", "fingerprint", "train", "val", "val_source", "test")  # of summary.json's dataset
EVALUATION_KEYS = ("n", "accuracy", "balanced_accuracy", "macro_f1", "top5_accuracy", "ece", "per_class")
METRIC_KEYS = ("test_acc", "test_loss", "best_val_acc", "best_epoch", "epochs_completed", "final_train_acc")
# model.json field -> (type, what it must be); checked on load so an edited file fails with its field's name
REQUIRED_FIELDS: dict[str, tuple[type, str]] = {
    "format": (str, "an export format name"),
    "model_file": (str, "the model file's name in the bundle"),
    "model_sha256": (str, "the SHA-256 of the model file"),
    "classes": (list, "the class names, index = logit"),
    "input_size": (list, "[channels, height, width]"),
    "mean": (list, "one mean per channel, in 0..1 units"),
    "std": (list, "one std per channel, in 0..1 units"),
}


class BundleError(VisiontrainError):
    """An export bundle is missing, incomplete, or inconsistent with its model file."""


# -- writing ---------------------------------------------------------------------------------------------
def describe(predictor: Predictor, format: str, exporter: ExportFormat, *, run_dir: str | Path | None = None,
             source: str | Path | None = None) -> dict[str, Any]:
    """model.json's content (without the checksum and the verification numbers, which come later)."""
    import platform

    import torch

    channels, height, width = predictor.input_size
    summary = _read_summary(run_dir)
    return {
        "bundle_version": BUNDLE_VERSION, "format": format, "model_file": exporter.filename,
        "model": predictor.config["model"], "width": predictor.config.get("width", 1.0),
        "classes": predictor.classes, "num_classes": len(predictor.classes),
        "input_size": [channels, height, width], "channels": channels, "mean": predictor.mean, "std": predictor.std,
        "input": input_convention(exporter, channels, height, width),
        "output": {"name": "logits", "dtype": "float32", "shape": ["N", len(predictor.classes)],
                   "meaning": "unnormalised class scores; softmax gives probabilities; logit i is classes[i]"
                              + _calibration_meaning(exporter, predictor.temperature)},
        "temperature": predictor.temperature,
        "calibration": predictor.calibration or {"temperature": predictor.temperature},
        "input_stats": predictor.input_stats,
        "decode_policy": predictor.decode_policy,
        "preprocessing": {"resize": f"shorter side to {height} px (bilinear), then the centre {height}x{width} crop",
                          "channels": "a grayscale image is repeated to 3 channels for an RGB model; an RGB image "
                                      "becomes gray for a 1-channel model by ITU-R 601 luma (299 R + 587 G + 114 B) "
                                      "// 1000"},
        "allow_flip": predictor.allow_flip,
        "config": predictor.config,
        "metrics": {key: summary[key] for key in METRIC_KEYS if key in summary},
        "dataset": {key: summary.get("dataset", {}).get(key) for key in DATASET_KEYS},
        "evaluation": _read_evaluation(run_dir),
        "source": str(source) if source is not None else None,
        "versions": {"visiontrain": __version__, "torch": torch.__version__, "python": platform.python_version()},
    }


def _calibration_meaning(exporter: ExportFormat, temperature: float) -> str:
    if temperature == 1.0:
        return " (not calibrated: temperature 1)"
    if exporter.normalizes_inside:
        return f"; calibrated: the model's logits divided by the temperature {temperature:.6g} inside the graph"
    return (f"; the file's model gives uncalibrated logits: divide them by the temperature {temperature:.6g} before "
            "the softmax (BundlePredictor does)")


def input_convention(exporter: ExportFormat, channels: int, height: int, width: int) -> dict[str, Any]:
    """What the model file takes, written out so that nobody has to guess the normalisation."""
    convention = {"name": "images", "dtype": "float32", "shape": ["N", channels, height, width], "layout": "NCHW",
                  "channel_order": "gray" if channels == 1 else "RGB"}
    if exporter.normalizes_inside:
        return convention | {"value_range": "0..255: the uint8 pixel values as float32 (do not divide by 255 or "
                                            "subtract the mean)",
                             "normalization": "inside the model: (pixels / 255 - mean) / std"}
    return convention | {"value_range": "normalised: (pixels / 255 - mean) / std, computed by the caller",
                         "normalization": "not in the file (weights only); rebuild the model with "
                                          "visiontrain.models.create_model(model, num_classes, in_channels, "
                                          "image_size, width) and load_state_dict(safetensors.torch.load_file(...))"}


def _read_summary(run_dir: str | Path | None) -> dict[str, Any]:
    path = Path(run_dir) / "summary.json" if run_dir is not None else None
    if path is None or not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}  # metrics are informative only; a damaged summary must not block an export


def _read_evaluation(run_dir: str | Path | None) -> dict[str, Any] | None:
    """The test evaluation (eval/test/metrics.json) for the model card: accuracy, per-class, calibration (ECE)."""
    path = Path(run_dir) / "eval" / "test" / "metrics.json" if run_dir is not None else None
    if path is None or not path.is_file():
        return None
    try:
        metrics = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None  # informative only, as the summary
    return {"split": "test"} | {key: metrics[key] for key in EVALUATION_KEYS if key in metrics}


def write_bundle(out_dir: Path, filename: str, file_bytes: bytes, meta: dict[str, Any]) -> Path:
    """Write the model file, the README.md model card, then model.json (each atomically; model.json last, as the
    mark of a complete bundle); return the bundle folder."""
    from .card import model_card  # the card escapes with report's Markdown helper (torch): writing, not predicting

    meta = meta | {"model_sha256": hashlib.sha256(file_bytes).hexdigest(),
                   "created": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    atomic_write_bytes(out_dir / filename, file_bytes)
    atomic_write_text(out_dir / CARD, model_card(meta))
    atomic_write_text(out_dir / "model.json", json.dumps(meta, indent=2, default=str) + "\n")
    return out_dir


# -- reading ---------------------------------------------------------------------------------------------
def read_model_json(folder: Path) -> dict[str, Any]:
    """model.json of a bundle folder, with every field load_bundle relies on checked."""
    path = folder / "model.json"
    if not folder.is_dir():
        raise BundleError(f"{folder} is not a folder; give an export bundle folder (visiontrain export RUN)")
    if not path.is_file():
        raise BundleError(f"{folder} is not an export bundle: it has no model.json; export the run again with "
                          "`visiontrain export RUN --format onnx`")
    try:
        meta = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise BundleError(f"{path} is not valid JSON ({error}); export the run again") from None
    if not isinstance(meta, dict):
        raise BundleError(f"{path} does not hold a JSON object; export the run again")
    for name, (kind, what) in REQUIRED_FIELDS.items():
        if not isinstance(meta.get(name), kind):
            raise BundleError(f"{path}: field {name!r} is missing or not a {kind.__name__} ({what}); the file was "
                              "edited or is from another tool: export the run again")
    _check_shapes(path, meta)
    return meta


def _check_shapes(path: Path, meta: dict[str, Any]) -> None:
    classes, input_size = meta["classes"], meta["input_size"]
    if not classes or not all(isinstance(c, str) and _is_text(c) for c in classes) or len(set(classes)) != len(classes):
        raise BundleError(f"{path}: 'classes' must be a non-empty list of distinct names; export the run again")
    if (len(input_size) != 3 or not all(type(d) is int and 8 <= d <= MAX_SIDE for d in input_size[1:])
            or input_size[0] not in (1, 3) or type(input_size[0]) is not int or input_size[1] != input_size[2]):
        raise BundleError(f"{path}: 'input_size' must be [channels (1 or 3), side, side] with a side from 8 to "
                          f"{MAX_SIDE}, got {input_size}")
    for name in ("mean", "std"):
        values = meta[name]
        if len(values) != input_size[0] or not all(type(v) in (int, float) and math.isfinite(v) for v in values):
            raise BundleError(f"{path}: {name!r} must hold {input_size[0]} finite number(s), one per channel, got "
                              f"{values}")
    if not all(v > 0 for v in meta["std"]):
        raise BundleError(f"{path}: every 'std' value must be positive, got {meta['std']}")
    for name, kind, what in (("decode_policy", dict, "an object (the decode policy)"), ("config", dict, "an object"),
                             ("allow_flip", bool, "true or false"), ("num_classes", int, "a whole number")):
        if name in meta and meta[name] is not None and type(meta[name]) is not kind:
            raise BundleError(f"{path}: field {name!r} must be {what}, got {meta[name]!r}; export the run again")
    temperature = meta.get("temperature", 1.0)
    if type(temperature) not in (int, float) or not 0 < temperature < math.inf:
        raise BundleError(f"{path}: 'temperature' must be a positive number, got {temperature!r}; export the run again")
    if meta.get("input_stats") is not None and not usable(meta["input_stats"], input_size[0]):
        raise BundleError(f"{path}: 'input_stats' is not a valid record of the training images' ranges; export the "
                          "run again")
    if not isinstance((meta.get("config") or {}).get("tta", False), bool):
        raise BundleError(f"{path}: config.tta must be true or false; export the run again")
    try:  # types and bounds (the decompression-bomb limit is bounded whatever the file says)
        decode_policy(meta.get("decode_policy") or {})
    except (TypeError, ValueError) as error:
        raise BundleError(f"{path}: 'decode_policy' is not a valid decode policy ({error}); export the run again") from None
    if meta.get("num_classes", len(classes)) != len(classes):
        raise BundleError(f"{path}: 'num_classes' is {meta['num_classes']} but 'classes' lists {len(classes)} names")
    if Path(meta["model_file"]).name != meta["model_file"]:
        raise BundleError(f"{path}: 'model_file' must be a file name inside the bundle, got {meta['model_file']!r}")


def _is_text(name: str) -> bool:
    """False for a str holding lone surrogates (JSON's \\ud800): it cannot be printed or written as UTF-8."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def load_bundle(path: str | Path) -> BundlePredictor:
    """Load an export bundle (its folder, model.json or model file) for inference, after checking it.

    Raises BundleError, one sentence, if model.json is missing, edited so that it no longer matches the model
    file (class count, input size, checksum), or names an unknown format.
    """
    folder = Path(path)
    folder = folder.parent if folder.is_file() else folder
    meta = read_model_json(folder)
    if meta["format"] not in EXPORTERS:
        raise BundleError(f"{folder / 'model.json'}: {EXPORTERS.unknown_message(meta['format'])}")
    exporter = EXPORTERS.get(meta["format"])
    model_file = folder / meta["model_file"]
    if meta["model_file"] != exporter.filename or not model_file.is_file():
        raise BundleError(f"{folder} lacks {exporter.filename}, the {meta['format']} model that model.json describes; "
                          "export the run again")
    if hashlib.sha256(model_file.read_bytes()).hexdigest() != meta["model_sha256"]:
        raise BundleError(f"{model_file} does not match the SHA-256 in model.json (one of them was replaced or "
                          "edited); export the run again")
    predictor = BundlePredictor(folder, meta, exporter.load(model_file, meta))
    predictor.check_output_size()
    return predictor


class BundlePredictor:
    """An exported model with its class names and preprocessing; the same predict() as visiontrain.load()'s.

    Attributes: classes, input_size [C, H, W], mean, std, decode_policy, allow_flip, format, meta (model.json).
    """

    def __init__(self, folder: Path, meta: dict[str, Any], runner: Callable[[np.ndarray], np.ndarray]):
        self.path, self.meta, self.format = folder, meta, meta["format"]
        self.classes: list[str] = list(meta["classes"])
        self.input_size: list[int] = list(meta["input_size"])
        self.mean, self.std = list(meta["mean"]), list(meta["std"])
        self.decode_policy: dict = dict(meta.get("decode_policy") or {})
        self.allow_flip = bool(meta.get("allow_flip", True))
        self.tta = bool((meta.get("config") or {}).get("tta", False))  # predict uses the run's TTA by default
        self.temperature = float(meta.get("temperature", 1.0))  # already applied by the runner (model.json: output)
        self.input_stats = meta.get("input_stats")  # the training images' ranges: predict's note on unlike inputs
        self._runner = runner

    def check_output_size(self) -> None:
        """Run one blank image; refuse a model.json whose class list does not match the model's outputs."""
        logits = self._runner(np.zeros((1, *self.input_size), dtype=np.float32))
        if logits.shape != (1, len(self.classes)):
            raise BundleError(f"{self.path / 'model.json'} lists {len(self.classes)} classes but "
                              f"{self.meta['model_file']} outputs {logits.shape[-1]} logits; model.json was edited or "
                              "belongs to another model: export the run again")

    def logits(self, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
        """Logits float32 (N, K) for uint8 images (N, C, H, W) of the model's input size."""
        images = np.asarray(images)
        if images.dtype != np.uint8 or list(images.shape[1:]) != self.input_size:
            raise ValueError(f"images must be uint8 (N, {', '.join(map(str, self.input_size))}), got "
                             f"{images.dtype} {images.shape}")
        return np.concatenate([self._runner(images[start:start + batch_size].astype(np.float32))
                               for start in range(0, len(images), batch_size)])

    def predict(self, inputs: Sequence[str | Path] | np.ndarray, top_k: int = 5) -> list[dict[str, Any]]:
        """Top-k class names and probabilities for image files or a uint8 (N, C, H, W) array."""
        images = np.asarray(inputs) if hasattr(inputs, "shape") else np.stack([self._decode(p) for p in inputs])
        notes = unfamiliar_notes(images, self.input_stats)  # '' for images like the training images
        return [{"top": top_classes(row, self.classes, top_k), "note": note}
                for row, note in zip(softmax(self.logits(images)), notes)]

    def _decode(self, path: str | Path) -> np.ndarray:
        decode = decode_module()
        pixels = decode.decode_image(path, decode_policy(self.decode_policy), size=self.input_size[-1])
        return decode.to_channels(pixels, self.input_size[0])


def softmax(logits: np.ndarray) -> np.ndarray:
    """Probabilities float32 (N, K) from logits (N, K)."""
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return (shifted / shifted.sum(axis=1, keepdims=True)).astype(np.float32)


def top_classes(probs: np.ndarray, classes: list[str], top_k: int) -> list[tuple[str, float]]:
    """[(class name, probability)] of the k most probable classes, most probable first (ties: lower index)."""
    order = np.argsort(-probs, kind="stable")[:min(top_k, len(classes))]
    return [(classes[int(i)], float(probs[i])) for i in order]


def decode_policy(values: dict[str, Any]) -> Any:
    """The DecodePolicy recorded in a checkpoint or model.json (descriptive extra keys dropped)."""
    return decode_module().DecodePolicy.from_dict(values)


def decode_module() -> ModuleType:
    """visiontrain.data.decode: the one decode policy of train, eval and predict.

    Unless visiontrain.data is already imported, the same file is loaded on its own: importing it the normal
    way runs visiontrain.data's __init__, which imports torch, and decode.py itself needs only numpy and Pillow.
    So an ONNX bundle predicts without torch (and without its start-up time).
    """
    name, standalone = "visiontrain.data.decode", "visiontrain._decode_without_torch"
    if name in sys.modules:
        return sys.modules[name]
    if standalone not in sys.modules:
        spec = importlib.util.spec_from_file_location(standalone, Path(__file__).parents[1] / "data" / "decode.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[standalone] = module  # dataclasses looks its module up in sys.modules
        spec.loader.exec_module(module)
    return sys.modules[standalone]
