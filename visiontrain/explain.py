"""Grad-CAM (Selvaraju et al., 2017): a heat map of the pixels that made the model choose a class.

    written, skipped, layer = explain_paths("runs/mnist-simple-cnn", ["digit.png", "photos/"], "gradcam/")

Written here with one forward hook and one tensor (backward) hook rather than taken from a library such as
pytorch-grad-cam or captum: no extra dependency, and it works on the Classifier interface that every registered
model has (the target layer is looked up in `model.features`), so no architecture is special-cased.

The images are found, decoded and normalised exactly as `predict` does (predict.find_images / decode_batch, the
Predictor's normaliser), and the predicted class and its confidence are the Predictor's (with the run's TTA), so
a heat map's title agrees with `visiontrain predict`. The heat map itself comes from one plain forward pass.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ._io import atomic_write_bytes, atomic_write_text
from .errors import CheckpointError, VisiontrainError
from .figures import figure_png, literal, new_figure
from .inference import Predictor, load
from .predict import EagerModel, decode_batch, decode_module, find_images
from .run import RunDir

MISCLASSIFIED_SHOWN = 6  # Grad-CAM panels of the report's misclassified gallery
FIGURE_MARK = "visiontrain explain: Grad-CAM figure"  # in each figure's PNG text: the only files explain replaces


class ExplainError(VisiontrainError):
    """No layer to explain (a model without convolutions), an unknown --layer or --class, or a bundle as source."""


# -- the target layer ------------------------------------------------------------------------------------------
def feature_map_layers(model: nn.Module, input_size: Sequence[int]) -> list[str]:
    """Names of the modules in `model.features` whose output is a 4-D (N, C, H, W) map, in the order they run."""
    found: list[str] = []

    def record(name: str) -> Any:
        def hook(module: nn.Module, inputs: Any, output: Any) -> None:
            if isinstance(output, torch.Tensor) and output.ndim == 4:
                found.append(name)
        return hook

    hooks = [module.register_forward_hook(record(f"features.{name}" if name else "features"))
             for name, module in model.features.named_modules()]
    was_training = model.training
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(1, *input_size, device=next(model.parameters()).device))
    finally:
        for handle in hooks:
            handle.remove()
        model.train(was_training)
    return list(dict.fromkeys(found))


def conv_layers(model: nn.Module) -> list[str]:
    return [f"features.{name}" for name, module in model.features.named_modules() if isinstance(module, nn.Conv2d)]


def target_layer(model: nn.Module, input_size: Sequence[int], name: str | None = None,
                 model_name: str = "this model") -> tuple[str, nn.Module]:
    """(name, module) of the layer Grad-CAM explains: `name` if given (with or without the 'features.' prefix),
    else the last nn.Conv2d of model.features, else the last module of model.features with a 4-D output."""
    convs = conv_layers(model)
    maps = feature_map_layers(model, input_size) if name is not None or not convs else []
    if not convs and not maps:
        raise ExplainError(f"{model_name} has no convolutional layer (no 4-D feature map in its features), so "
                           "Grad-CAM has nothing to explain; use a CNN such as simple-cnn")
    if name is None:
        chosen = convs[-1] if convs else maps[-1]
    else:
        chosen = next((n for n in (name, f"features.{name}") if n in convs or n in maps), None)
        if chosen is None:
            raise ExplainError(f"unknown layer {name!r} for Grad-CAM on {model_name}; valid layers are the "
                               f"convolutions {', '.join(convs) or '(none)'} or any other module of its features "
                               f"with a 4-D output (such as {maps[-1]})")
    return chosen, model.get_submodule(chosen)


# -- Grad-CAM ---------------------------------------------------------------------------------------------------
def grad_cam(model: nn.Module, images: torch.Tensor, targets: torch.Tensor, layer: nn.Module) -> torch.Tensor:
    """Heat maps float (N, H, W) in [0, 1] at the input's size, for normalised float images (N, C, H, W) and the
    class indices `targets` (N,): ReLU(sum_k mean_xy(d score / d A_k) * A_k) at `layer`, upsampled bilinearly and
    divided by its maximum (an all-zero map stays zero: nothing in the image speaks for that class)."""
    saved: dict[str, torch.Tensor] = {}

    def keep(module: nn.Module, inputs: Any, output: torch.Tensor) -> None:
        saved["activation"] = output.detach().clone()  # clone: a later in-place op (ReLU(inplace=True)) edits it
        output.register_hook(lambda gradient: saved.__setitem__("gradient", gradient.detach()))

    handle = layer.register_forward_hook(keep)
    was_training = model.training
    try:
        with torch.enable_grad():
            images = images.detach().float().requires_grad_(True)  # gradients flow also past frozen first layers
            scores = model.eval()(images).float().gather(1, targets.long().view(-1, 1).to(images.device))
            torch.autograd.grad(scores.sum(), images)  # fires the tensor hook; leaves the parameters' .grad alone
    finally:
        handle.remove()
        model.train(was_training)
    activation, gradient = saved["activation"].float(), saved["gradient"].float()  # (N, C, h, w)
    cam = F.relu((gradient.mean((2, 3), keepdim=True) * activation).sum(1, keepdim=True))  # (N, 1, h, w)
    cam = F.interpolate(cam, size=images.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
    return (cam / cam.flatten(1).max(1).values.clamp_min(1e-12).view(-1, 1, 1)).clamp(0, 1).cpu()


def predictor_cam(predictor: Predictor, images: torch.Tensor, targets: torch.Tensor, layer: nn.Module) -> torch.Tensor:
    """Grad-CAM of uint8 images (N, C, H, W) of the model's input size, normalised by the run's own Normalizer."""
    device = predictor.normalize.precision.device
    return grad_cam(predictor.model, predictor.normalize(images.to(device)), targets, layer)


# -- drawing ----------------------------------------------------------------------------------------------------
def _show(axis: Any, image: torch.Tensor, cam: torch.Tensor | None = None) -> Any:
    """Draw uint8 (C, H, W) on `axis`, with the heat map (H, W) over it; returns the heat map's image handle."""
    pixels = image.permute(1, 2, 0).cpu().numpy()
    grey = pixels.shape[-1] == 1
    axis.imshow(pixels[..., 0] if grey else pixels, cmap="gray" if grey else None, vmin=0, vmax=255,
                interpolation="nearest")
    axis.axis("off")
    if cam is None:
        return None
    return axis.imshow(cam.numpy(), cmap="jet", alpha=0.5, vmin=0, vmax=1, interpolation="bilinear")


def explanation_png(image: torch.Tensor, cam: torch.Tensor, title: str, layer: str) -> bytes:
    """PNG: the image and the image with its heat map over it (and a colour bar), under `title`."""
    figure = new_figure(7.2, 4.0)
    left, right = figure.subplots(1, 2)
    _show(left, image)
    left.set_title("image", fontsize=9)
    heat = _show(right, image, cam)
    right.set_title(literal(f"Grad-CAM at {layer}"), fontsize=9)
    figure.colorbar(heat, ax=right, shrink=0.8, label="relative importance")
    figure.suptitle(literal(title), fontsize=10)  # file and class names are drawn as written
    return figure_png(figure, metadata={"Source": FIGURE_MARK})


# -- image files (visiontrain explain) --------------------------------------------------------------------------
def explain_paths(source: str | Path, inputs: Sequence[str | Path], out_dir: str | Path | None = None, *,
                  class_name: str | None = None, layer: str | None = None, batch_size: int = 32,
                  device: str = "cpu") -> tuple[list[dict[str, Any]], list[tuple[str, str]], str]:
    """Write one Grad-CAM PNG per image file (folders are searched recursively, as by predict).

    Args:
        source: a run folder or a checkpoint file (an export bundle has no gradients).
        inputs: image files and folders.
        out_dir: where the PNGs go (default: <run folder>/explain); a folder's subfolders are kept.
        class_name: explain this class rather than the predicted one.
        layer: the module to explain by name (default: the last convolution of the model's features).

    Returns:
        (rows, skipped, layer): rows {"path", "png", "true", "predicted", "confidence", "explained"} in input
        order; skipped [(path, reason)] as predict gives them; the name of the layer explained.
    """
    source = Path(source)
    if source.is_dir() and (source / "model.json").is_file() and not (source / "config.yaml").is_file():
        raise ExplainError(f"{source} is an export bundle; Grad-CAM needs the gradients of the PyTorch model, so "
                           "give the run folder or its checkpoint file")
    predictor = load(source, device=device)
    model_name = str(predictor.config.get("model", "this model"))
    layer_name, module = target_layer(predictor.model, predictor.input_size, layer, model_name)
    if class_name is not None and class_name not in predictor.classes:
        raise ExplainError(f"--class {class_name!r} is not one of the run's classes: {', '.join(predictor.classes)}")
    out = Path(out_dir) if out_dir is not None else default_out_dir(source)
    decode = decode_module()
    jobs, skipped = _output_names(inputs, decode.IMAGE_EXTENSIONS, find_images)
    _check_outputs(out, inputs, jobs)
    rows: list[dict[str, Any]] = []
    for start in range(0, len(jobs), batch_size):
        batch = dict(jobs[start:start + batch_size])
        pixels, kept, _ = decode_batch(list(batch), EagerModel(predictor), decode, skipped)
        if pixels is None:
            continue
        images = torch.from_numpy(pixels)
        probs = predictor.logits(images).softmax(1)  # the predict / eval numbers (TTA as the run has it)
        predicted = probs.argmax(1)
        targets = predicted if class_name is None else torch.full_like(predicted, predictor.classes.index(class_name))
        cams = predictor_cam(predictor, images, targets, module)
        for index, path in enumerate(kept):
            folders = (path.parent.name, f"{path.parent.parent.name}/{path.parent.name}")  # also 'T-shirt/top'
            true = next((name for name in folders if name in predictor.classes), None)
            name, confidence = predictor.classes[int(predicted[index])], float(probs[index, predicted[index]])
            verdict = f"predicted: {name} ({confidence:.1%})"
            lines = [path.name, verdict if true is None else f"true: {true}  ·  {verdict}"]
            if class_name is not None:
                lines.append(f"explained: {class_name} ({float(probs[index, targets[index]]):.1%})")
            png = out / batch[path]
            atomic_write_bytes(png, explanation_png(images[index], cams[index], "\n".join(lines), layer_name))
            rows.append({"path": str(path), "png": str(png), "true": true, "predicted": name,
                         "confidence": confidence, "explained": predictor.classes[int(targets[index])]})
    return rows, skipped, layer_name


def _check_outputs(out: Path, inputs: Sequence[str | Path], jobs: list[tuple[Path, Path]]) -> None:
    """Refuse, before any image is decoded, to write a figure over anything but a figure explain wrote before: never
    over an input image or a file of the user's (`-o .` beside digit.png would replace digit.png), and never into
    an input folder (the figures would become inputs of the next run)."""
    resolved = out.resolve()
    for item in map(Path, inputs):
        if item.is_dir() and resolved.is_relative_to(item.resolve()):
            raise ExplainError(f"the output folder {out} is inside the input folder {item}: the figures would be "
                               "mixed with the images they explain; give -o a folder outside the inputs")
    sources = {path.resolve() for path, _ in jobs}
    for path, name in jobs:
        target = out / name
        if target.resolve() in sources:
            raise ExplainError(f"the Grad-CAM figure of {path} would be written over the input image {target}; "
                               "give -o a folder outside the inputs (default: RUN_DIR/explain)")
        if (target.exists() or target.is_symlink()) and not _is_figure(target):
            raise ExplainError(f"{target} exists and is not a Grad-CAM figure that visiontrain explain wrote, so it "
                               "is not replaced; move it, or give -o another folder")


def _is_figure(path: Path) -> bool:
    """Whether `path` is a regular file holding explain's mark (a PNG text chunk, read from the header only)."""
    from PIL import Image

    if path.is_symlink() or not path.is_file():
        return False
    try:
        with Image.open(path) as image:
            return image.info.get("Source") == FIGURE_MARK
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        return False


def default_out_dir(source: str | Path) -> Path:
    """<run folder>/explain, or ./explain for a checkpoint file."""
    return (Path(source) if Path(source).is_dir() else Path(".")) / "explain"


def _output_names(inputs: Sequence[str | Path], extensions: Sequence[str], find_images: Any
                  ) -> tuple[list[tuple[Path, Path]], list[tuple[str, str]]]:
    """(image file, PNG path relative to the output folder) per image: a folder's files keep their subfolders
    (photos/cat/1.jpg -> cat/1.png), a file named directly goes to the top; a name taken twice gets -2, -3..."""
    jobs: list[tuple[Path, Path]] = []
    skipped: list[tuple[str, str]] = []
    seen, taken = set(), set()
    for item in inputs:
        files, ignored = find_images([item], extensions)
        skipped += ignored
        for path in files:
            if path in seen:
                continue
            seen.add(path)
            relative = path.relative_to(item) if Path(item).is_dir() else Path(path.name)
            name, number = relative.with_suffix(".png"), 1
            while name in taken:
                number += 1
                name = relative.with_name(f"{relative.stem}-{number}.png")
            taken.add(name)
            jobs.append((path, name))
    return jobs, skipped


# -- the report's misclassified gallery ---------------------------------------------------------------------------
def write_misclassified_gradcam(run_dir: str | Path, images: torch.Tensor, labels: torch.Tensor, logits: torch.Tensor,
                                classes: Sequence[str], split: str = "test", count: int = MISCLASSIFIED_SHOWN,
                                predictor: Predictor | None = None) -> Path | None:
    """plots/gradcam.png (test; else gradcam_<split>.png): Grad-CAM of the predicted class for the `count`
    misclassified images with the highest loss, from the run's kept model: `predictor` (the end of a training run
    passes the one it built, also for a model passed from Python), else loaded from its checkpoint. Where there is
    nothing to show (no convolution, no checkpoint, no mistake) it writes plots/gradcam.txt with the reason instead,
    which the report prints as a note; it never raises for those."""
    run = RunDir.open(run_dir)
    png = run.plot_path("gradcam", split)
    logits, labels = logits.float().cpu(), labels.long().cpu()
    probs = logits.softmax(1)
    confidence, predicted = probs.max(1)
    losses = F.cross_entropy(logits, labels, reduction="none")
    wrong = (predicted != labels).nonzero()[:, 0]
    chosen = wrong[losses[wrong].argsort(descending=True)][:count]
    try:
        if predictor is None:
            predictor = load(run.path)
        name, layer = target_layer(predictor.model, predictor.input_size, None, str(predictor.config.get("model")))
        if list(images.shape[1:]) != predictor.input_size:
            raise ExplainError(f"the {split} images are {tuple(images.shape[1:])}, the model takes "
                               f"{tuple(predictor.input_size)}")
        if not len(chosen):
            raise ExplainError(f"no {split} image is misclassified")
    except (ExplainError, CheckpointError) as reason:
        png.unlink(missing_ok=True)
        atomic_write_text(png.with_suffix(".txt"), f"Grad-CAM is not shown: {reason}.\n")
        return None
    cams = predictor_cam(predictor, images.cpu()[chosen], predicted[chosen], layer)
    figure = new_figure(1.9 * len(chosen) + 0.8, 4.6)
    axes = figure.subplots(2, len(chosen), squeeze=False)
    for column, (index, cam) in enumerate(zip(chosen.tolist(), cams)):
        _show(axes[0, column], images[index])
        axes[0, column].set_title(literal(f"true: {classes[int(labels[index])]}\npred: "
                                          f"{classes[int(predicted[index])]} {float(confidence[index]):.2f}"), fontsize=8)
        heat = _show(axes[1, column], images[index], cam)
    figure.colorbar(heat, ax=axes[1, :].tolist(), shrink=0.9, label="relative importance")
    figure.suptitle(literal(f"{run.path.name}: Grad-CAM at {name} for the predicted class, {len(chosen)} "
                            f"misclassified {split} images with the highest loss"), fontsize=10)
    atomic_write_bytes(png, figure_png(figure))
    png.with_suffix(".txt").unlink(missing_ok=True)
    return png
