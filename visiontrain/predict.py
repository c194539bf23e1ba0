"""Top-k predictions for image files and folders, from a run folder, a checkpoint file or an export bundle.

    rows, skipped = predict_paths("runs/mnist-fastnet", ["digit.png", "photos/"], top_k=3)
    print(format_rows(rows, "table"))

Each image is prepared exactly as evaluation prepares it: the recorded decode policy (data/decode.py), the
shorter side resized to the model's size and centre-cropped, channels adapted by `to_channels` (noted in the
row), then the model's mean/std (inside the exported graph for ONNX/TorchScript bundles). A file that cannot
be read is listed in `skipped` with the reason and never stops the others. An ONNX bundle needs neither
torch nor visiontrain's training code.
"""
from __future__ import annotations

import importlib.util
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, Callable, Literal

import numpy as np

from ._csv import csv_text
from ._io import output_file
from .errors import ConfigError, OutputError, RunError
from .figures import image_grid
from .export.bundle import BundlePredictor, decode_module, decode_policy, load_bundle, softmax, top_classes
from .metrics.input_check import unfamiliar_notes

if TYPE_CHECKING:
    from .inference import Predictor

BUNDLE_SUFFIXES = (".onnx", ".ts", ".pt2", ".safetensors")
BUNDLE_FILES = tuple(f"model{suffix}" for suffix in BUNDLE_SUFFIXES)
OUTPUT_FORMATS = ("table", "csv", "json")
GALLERY_MAX = 64  # images drawn by write_gallery (--gallery): the first ones in input order; the rows hold them all
GALLERY_CAPTION = 14  # characters of a class name in a caption (a 112 px cell); longer ones end in "..."
WRONG = "#d62728"  # caption and frame of a wrong prediction (where the folder names the true class)
Row = dict[str, Any]  # {"path": str, "top": [(class name, probability), ...], "note": str}


class EagerModel:
    """A visiontrain.load() Predictor seen through the BundlePredictor interface (numpy in, numpy out)."""

    def __init__(self, predictor: Predictor):
        self.predictor = predictor
        self.classes, self.input_size = predictor.classes, predictor.input_size
        self.decode_policy, self.allow_flip = predictor.decode_policy, predictor.allow_flip
        self.tta, self.input_stats = predictor.tta, predictor.input_stats

    def logits(self, images: np.ndarray) -> np.ndarray:
        """Logits float32 (N, K) for uint8 (N, C, H, W): the evaluation's predict_logits, divided by the run's
        temperature (TTA is added by the caller: a mean of logits, so dividing before or after is the same)."""
        import torch

        from .engine.loop import predict_logits  # torch: a run, never an ONNX bundle

        predictor = self.predictor
        logits = predict_logits(predictor.model, torch.from_numpy(images), predictor.normalize)
        return predictor.calibrate(logits).float().numpy()


def open_source(source: str | Path) -> EagerModel | BundlePredictor:
    """A run folder or checkpoint file (loaded weights-only) or an export bundle (folder, model.json, model file)."""
    path = Path(source)
    if path.is_dir() and any((path / name).is_file() for name in ("model.json", *BUNDLE_FILES)):
        return load_bundle(path)  # also without model.json, to say that it is missing
    if path.is_file() and (path.name == "model.json" or path.suffix in BUNDLE_SUFFIXES):
        return load_bundle(path.parent)
    if path.is_dir() and not (path / "config.yaml").is_file():
        raise RunError(f"{path} is neither a run folder (it has no config.yaml) nor an export bundle (no model.json); "
                       "give a run folder, a checkpoint file or a bundle folder")
    from .inference import load  # torch: a run or checkpoint, never an ONNX bundle

    return EagerModel(load(path))


def predict_paths(source: str | Path, inputs: Sequence[str | Path], *, top_k: int = 5, tta: bool | None = None,
                  batch_size: int = 64, on_progress: Callable[[int, int], None] | None = None,
                  keep_pixels: int = 0) -> tuple[list[Row], list[tuple[str, str]]]:
    """Predict the top-k classes of image files and folders (searched recursively, hidden files ignored).

    Args:
        source: a run folder, a checkpoint file, or an export bundle folder.
        inputs: image files and folders.
        top_k: how many classes per image (at most the number of classes).
        tta: average the logits over the mirror image (where the model's data may be mirrored: allow_flip; digits
            may not) and 1-pixel shifts, exactly as the evaluation does; None: as the run was configured (--tta).
        batch_size: images decoded and run together.
        on_progress: called as on_progress(files_done, files_total) after each batch (the CLI's progress line).
        keep_pixels: the first this many rows also get "pixels", the uint8 (C, H, W) image the model saw, and
            "classes", the model's class names (for write_gallery).

    Returns:
        (rows, skipped): rows {"path", "top": [(class, probability)], "note"} in input order; skipped
        [(path, reason)] for paths that do not exist, files that cannot be decoded, and files in the folders
        whose extension is not an image's.
    """
    if top_k < 1:
        raise ConfigError(f"top_k: {top_k} is not allowed; use a whole number of classes >= 1")
    model = open_source(source)
    tta = model.tta if tta is None else tta
    decode = decode_module()
    files, skipped = find_images(inputs, decode.IMAGE_EXTENSIONS)
    flip_note = "" if not tta or model.allow_flip else "no flip TTA: this model's images must not be mirrored"
    rows: list[Row] = []
    for start in range(0, len(files), batch_size):
        images, kept, notes = decode_batch(files[start:start + batch_size], model, decode, skipped)
        if images is None:
            continue
        probs = softmax(tta_logits(model, images, tta))  # (B, K) float32
        unlike = unfamiliar_notes(images, model.input_stats)  # '' for images like the training images
        first = len(rows)
        rows += [{"path": str(path), "top": top_classes(row, model.classes, top_k),
                  "note": "; ".join(n for n in (odd, note, flip_note) if n)}
                 for path, row, note, odd in zip(kept, probs, notes, unlike)]
        for index in range(first, min(len(rows), keep_pixels)):
            rows[index] |= {"pixels": images[index - first], "classes": model.classes}
        if on_progress is not None:
            on_progress(min(start + batch_size, len(files)), len(files))
    return rows, skipped


def find_images(inputs: Sequence[str | Path], extensions: Sequence[str]) -> tuple[list[Path], list[tuple[str, str]]]:
    """Files named directly, plus image files found under folders; returns (files, skipped).

    Folders are walked by the one safe walk (data/walk.py: regular files only, each real folder once, a problem
    per entry); hidden entries and __MACOSX are left out quietly, as documented."""
    walk = _walk_module()
    files: list[Path] = []
    skipped: list[tuple[str, str]] = []
    for item in inputs:
        path = Path(item)
        if not walk.is_utf8(str(path)):
            skipped.append((walk.shown(path), "its name is not valid UTF-8 text; rename it"))
        elif path.is_dir():
            found, ignored = _images_under(path, extensions, walk)
            files += found
            skipped += ignored
        elif path.is_file():
            files.append(path)  # named explicitly: decoded whatever its extension, so a wrong one gets a reason
        elif path.exists() or path.is_symlink():  # a FIFO would block the decoder; a dangling link says where to
            skipped.append((str(path), walk.Walker.not_a_file(path)))
        else:
            skipped.append((str(path), "does not exist"))
    return list(dict.fromkeys(files)), skipped  # a file named twice is predicted once


def _images_under(folder: Path, extensions: Sequence[str], walk: ModuleType) -> tuple[list[Path], list[tuple[str, str]]]:
    walker = walk.Walker()
    found, ignored = [], []
    for path in walker.files_under(folder):
        if path.suffix.lower() in extensions or decode_module().has_dicom_magic(path):  # extension-less DICOM
            found.append(path)
        else:
            ignored.append((str(path), f"not an image file extension ({path.suffix or 'none'})"))
    ignored += [(problem.path, problem.reason) for problem in walker.problems] + walker.repeats
    return found, ignored


def _walk_module() -> ModuleType:
    """visiontrain.data.walk, loaded like decode_module: without visiontrain.data's torch import, for ONNX bundles."""
    name, standalone = "visiontrain.data.walk", "visiontrain._walk_without_torch"
    if name in sys.modules:
        return sys.modules[name]
    if standalone not in sys.modules:
        spec = importlib.util.spec_from_file_location(standalone, Path(__file__).parent / "data" / "walk.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[standalone] = module
        spec.loader.exec_module(module)
    return sys.modules[standalone]


def decode_batch(paths: list[Path], model: EagerModel | BundlePredictor, decode: ModuleType,
                 skipped: list[tuple[str, str]]) -> tuple[np.ndarray | None, list[Path], list[str]]:
    """uint8 (B, C, H, W) of the readable files, those files, and a channel note per file; others -> skipped."""
    policy = decode_policy(model.decode_policy)
    channels, size = model.input_size[0], model.input_size[-1]
    images, kept, notes = [], [], []
    for path in paths:
        try:
            pixels = decode.decode_image(path, policy, size=size)  # (1 or 3, size, size) uint8
        except decode.DecodeError as error:
            skipped.append((str(path), str(error)))
            continue
        notes.append(channel_note(pixels.shape[0], channels))
        images.append(decode.to_channels(pixels, channels))
        kept.append(path)
    return (np.stack(images) if images else None), kept, notes


def channel_note(file_channels: int, model_channels: int) -> str:
    if file_channels == model_channels:
        return ""
    if model_channels == 3:
        return "grayscale image repeated to 3 channels for this RGB model"
    return "RGB image converted to grayscale (ITU-R 601 luma) for this 1-channel model"


def tta_logits(model: EagerModel | BundlePredictor, images: np.ndarray, tta: bool) -> np.ndarray:
    """Logits float32 (B, K); with tta, the evaluation's test-time augmentation (engine/loop.py predict_logits):
    the mean over the image, its mirror image (where allow_flip) and 1-pixel diagonal shifts either way."""
    logits = model.logits(images)
    if not tta:
        return logits
    views = ([images[..., ::-1]] if model.allow_flip else []) + [_shift(images, 1), _shift(images, -1)]
    return (logits + sum(model.logits(np.ascontiguousarray(view)) for view in views)) / (1 + len(views))


def _shift(images: np.ndarray, pixels: int) -> np.ndarray:
    """uint8 (B, C, H, W) translated diagonally by `pixels`, reflecting at the border (as loop._shift)."""
    height, width = images.shape[2:]
    padded = np.pad(images, ((0, 0), (0, 0), (abs(pixels),) * 2, (abs(pixels),) * 2), mode="reflect")
    start = abs(pixels) + pixels
    return padded[:, :, start:start + height, start:start + width]


def format_rows(rows: list[Row], fmt: Literal["table", "csv", "json"] = "table") -> str:
    """Rows as an aligned table, CSV (path, predicted, probability, top_k, note) or JSON."""
    if fmt not in OUTPUT_FORMATS:
        raise ConfigError(f"output format {fmt!r} is not one of {', '.join(OUTPUT_FORMATS)}")
    if fmt == "json":
        return json.dumps([{"path": r["path"], "predicted": r["top"][0][0], "probability": r["top"][0][1],
                            "top": [{"class": c, "probability": p} for c, p in r["top"]], "note": r["note"]}
                           for r in rows], indent=2) + "\n"
    table = [[r["path"], r["top"][0][0], f"{r['top'][0][1]:.4f}", " ".join(f"{c}:{p:.3f}" for c, p in r["top"]),
              r["note"]] for r in rows]
    header = ["path", "predicted", "probability", "top_k", "note"]
    if fmt == "csv":  # names guarded against spreadsheet formulas (_csv.py)
        return csv_text(header, table)
    widths = [max(len(cell) for cell in column) for column in zip(header, *table)]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip() for line in [header, *table]]
    return "\n".join(lines) + "\n"


def true_class(path: str | Path, classes: Sequence[str]) -> str | None:
    """The class a file's folder names (the parent folder's name is a class name), else None."""
    name = Path(path).parent.name
    return name if name in classes else None


def write_gallery(rows: list[Row], path: str | Path, *, total: int | None = None) -> Path:
    """A PNG grid of the rows kept with pixels (predict_paths(keep_pixels=GALLERY_MAX)): each image with its top
    class and probability. Where the parent folder names a class, the caption gives it ("true: cat") and a wrong
    prediction is framed and captioned red: marked by the frame too, not by colour alone. `total`: how many images
    were predicted, for the heading (default: the rows)."""
    shown = [row for row in rows if "pixels" in row][:GALLERY_MAX]
    if not shown:
        raise ConfigError("--gallery: no image was predicted, so there is nothing to draw")
    captions, colours, wrong, known = [], [], 0, 0
    for row in shown:
        predicted, probability = row["top"][0]
        truth = true_class(row["path"], row["classes"])
        known += truth is not None
        wrong += truth is not None and truth != predicted
        caption = f"{_short(predicted)} ({probability:.0%})"
        captions.append(caption if truth is None else f"{caption}\ntrue: {_short(truth)}")
        colours.append(WRONG if truth is not None and truth != predicted else None)
    total = len(rows) if total is None else total
    heading = f"the first {len(shown)} of {total} images" if total > len(shown) else f"{total} images"
    heading += f"; {wrong} of {known} wrong (red frame) where the folder names the class" if known else ""
    return image_grid(np.stack([row["pixels"] for row in shown]), captions, path, title=heading, colors=colours)


def _short(name: str) -> str:
    return name if len(name) <= GALLERY_CAPTION else name[:GALLERY_CAPTION - 3] + "..."


def gallery_target(path: str | Path, inputs: Sequence[str | Path], *, output: str | Path | None = None,
                   source: str | Path | None = None) -> Path:
    """--gallery's PNG, refused at once (before any image is decoded) if it is a folder, one of the input files or
    an existing file in an input folder (it would be overwritten by the picture of its own prediction), the -o
    file or the model's file."""
    target = output_file(path, "--gallery")
    named = [(item, "an input image") for item in inputs] + [(output, "the -o file"), (source, "the model")]
    for item, what in named:
        if item is not None and _same_file(target, Path(item)):
            raise OutputError(f"--gallery {target} is {what} of this command; give the gallery a new file name, "
                              "such as gallery.png")
    for folder in (Path(item) for item in inputs):  # an existing file under an input folder is an input too
        if target.is_file() and folder.is_dir() and target.resolve().is_relative_to(folder.resolve()):
            raise OutputError(f"--gallery {target} is an input image (it is in {folder}); give the gallery a new "
                              "file name outside the input folders, such as gallery.png")
    return target


def _same_file(a: Path, b: Path) -> bool:
    a, b = a.expanduser(), b.expanduser()
    if a.absolute() == b.absolute():
        return True
    try:
        return a.samefile(b)  # the same file by another path (a link, ./x, ../dir/x)
    except OSError:
        return False  # one of them does not exist
