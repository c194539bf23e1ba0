"""The bundle's README.md: a model card made from model.json alone.

What the model does and its classes, the data it was trained on (name, counts, fingerprint), its test metrics
(per class and calibration where the run was evaluated), the preprocessing, what it is for and what it was not
trained on, the versions, and how to load it in three lines. Every value that comes from the user's data or
files (class, dataset and file names, config values) goes through report's markdown_text, so a class folder
named `<script>` or `a|b` stays text: Markdown renderers pass raw HTML through and `|` would end a table cell.
"""
from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any

from ..report.html import markdown_text as md
from .formats import EXPORTERS

SAFE = "loading an ONNX or safetensors file runs no code from it"
FORMAT_NOTES = {  # what a user of the model file must know beyond the three lines
    "pt2": "torch.export.load unpickles parts of the file, and PyTorch's documentation says never to load one from "
           f"an untrusted source: load it only from a source you trust ({SAFE}). The .pt2 format is still evolving: "
           "a newer torch than the one that wrote it (torch {torch}) may refuse it; then export the run again.",
    "torchscript": f"A TorchScript file is a program that torch runs: load it only from a source you trust ({SAFE}). "
                   "torch.jit is deprecated in favour of torch.export (`--format pt2`).",
}
MAX_CLASS_ROWS = 500  # classes listed in the card; model.json lists every one
TRAINING_FIELDS = ("epochs", "batch_size", "optimizer", "lr", "weight_decay", "schedule", "augment", "label_smoothing",
                   "pretrained", "seed")


def model_card(meta: dict[str, Any]) -> str:
    """README.md's text for the bundle that `meta` (model.json's content) describes."""
    sections = [_heading(meta), _classes(meta), _data(meta), _metrics(meta), _preprocessing(meta), _limits(meta),
                _loading(meta), _verification(meta)]
    return "\n".join(section for section in sections if section)


# -- formatting ------------------------------------------------------------------------------------------------
def _number(value: Any) -> float | None:
    return float(value) if type(value) in (int, float) and math.isfinite(value) else None


def _percent(value: Any) -> str:
    number = _number(value)
    return "—" if number is None else f"{number:.2%}"


def _decimal(value: Any, digits: int = 4) -> str:
    number = _number(value)
    return "—" if number is None else f"{number:.{digits}f}"


def _count(value: Any) -> str:
    return f"{value:,}" if type(value) is int else "—"


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A Markdown table; every cell escaped (the header is this module's own text, escaped all the same)."""
    def line(cells: Sequence[Any]) -> str:
        return "| " + " | ".join(md(cell) for cell in cells) + " |"

    return "\n".join([line(header), line(["---"] * len(header)), *map(line, rows)]) + "\n"


def _code(text: str, language: str = "") -> str:
    """A fenced code block whose fence is longer than any run of backticks in `text` (CommonMark), so nothing in
    it can close the block early."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}{language}\n{text}\n{fence}\n"


# -- sections ----------------------------------------------------------------------------------------------------
def _heading(meta: dict[str, Any]) -> str:
    classes, (channels, height, width) = meta["classes"], meta["input_size"]
    colour = "grayscale" if channels == 1 else "RGB"
    versions = meta.get("versions") or {}
    return (f"# Model card: {md(meta.get('model', 'model'))}, an image classifier of {len(classes)} classes\n\n"
            f"Exported by visiontrain {md(versions.get('visiontrain', '?'))} on {md(meta.get('created', '?'))} as "
            f"`{meta['format']}` ({md(meta['model_file'])}); this card is made from model.json, which holds every "
            "value below in machine-readable form.\n\n"
            f"**Task:** image classification. Given one {colour} image, resized and cropped to {width}x{height} "
            f"pixels, the model returns {len(classes)} scores (logits), one per class; their softmax is the "
            "probability of each class, and the largest is the prediction.\n")


def _classes(meta: dict[str, Any]) -> str:
    classes = meta["classes"]
    per_class = {row.get("class"): row for row in (meta.get("evaluation") or {}).get("per_class") or []
                 if isinstance(row, dict)}
    if per_class:
        header = ["index", "class", "test precision", "test recall", "test F1", "test images"]
        rows = [[index, name, _percent(per_class.get(name, {}).get("precision")),
                 _percent(per_class.get(name, {}).get("recall")), _decimal(per_class.get(name, {}).get("f1"), 3),
                 _count(per_class.get(name, {}).get("support"))] for index, name in enumerate(classes)]
    else:
        header, rows = ["index", "class"], [[index, name] for index, name in enumerate(classes)]
    more = len(rows) - MAX_CLASS_ROWS
    tail = f"\n_...and {more:,} more: model.json's `classes` lists them all._\n" if more > 0 else ""
    return f"## Classes\n\nLogit *i* is class *i*.\n\n{_table(header, rows[:MAX_CLASS_ROWS])}{tail}"


def _data(meta: dict[str, Any]) -> str:
    dataset, config = meta.get("dataset") or {}, meta.get("config") or {}
    name = dataset.get("name") or config.get("dataset") or "not recorded"
    counts = [f"{split} {_count(dataset.get(split))}" for split in ("train", "val", "test")
              if dataset.get(split) is not None]
    if dataset.get("val_source") == "train" and dataset.get("val") is not None:
        counts[1] += " (held out of the train folder)"
    rows = [["dataset", name], ["images", ", ".join(counts) or "not recorded (exported without the run folder)"],
            ["fingerprint (SHA-256 of the decoded pixels, labels and class names)",
             dataset.get("fingerprint") or "not recorded"],
            ["model", f"{meta.get('model')} (width {meta.get('width', 1.0)})"]]
    rows += [[field.replace("_", " "), config[field]] for field in TRAINING_FIELDS if field in config]
    return "## Training data and recipe\n\n" + _table(["", "value"], rows)


def _metrics(meta: dict[str, Any]) -> str:
    metrics, evaluation = meta.get("metrics") or {}, meta.get("evaluation") or {}
    best = metrics.get("best_val_acc")
    rows = [
        ["test accuracy", _percent(evaluation.get("accuracy", metrics.get("test_acc")))
         + (f" on {_count(evaluation['n'])} images" if type(evaluation.get("n")) is int else "")],
        ["test balanced accuracy (mean recall over classes)", _percent(evaluation.get("balanced_accuracy"))],
        ["test macro F1", _decimal(evaluation.get("macro_f1"))],
        ["test top-5 accuracy", _percent(evaluation.get("top5_accuracy"))],
        ["test expected calibration error (ECE: mean gap between confidence and accuracy)",
         _decimal(evaluation.get("ece"))],
        ["test loss (cross-entropy)", _decimal(metrics.get("test_loss"))],
        ["best validation accuracy", "—" if _number(best) is None else
         f"{_percent(best)} (epoch {metrics.get('best_epoch')})"],
        ["epochs trained", _count(metrics.get("epochs_completed"))],
    ]
    rows = [row for row in rows if not row[1].startswith("—")]
    if not rows:
        return ("## Metrics\n\n_No metrics were recorded: the model was exported from a checkpoint file without its "
                "run folder. Evaluate it with `visiontrain eval RUN`._\n")
    return ("## Metrics\n\nMeasured on held-out images of the same dataset; per-class numbers are in the classes "
            "table.\n\n" + _table(["metric", "value"], rows))


def _preprocessing(meta: dict[str, Any]) -> str:
    convention, preprocessing = meta.get("input") or {}, meta.get("preprocessing") or {}
    channels, height, width = meta["input_size"]
    rows = [["input", f"{convention.get('dtype', 'float32')} (N, {channels}, {height}, {width}), "
                      f"{convention.get('layout', 'NCHW')}, {convention.get('channel_order', '')}"],
            ["values", convention.get("value_range", "—")],
            ["normalisation", f"{convention.get('normalization', '—')}; mean {meta['mean']}, std {meta['std']}"],
            ["resize", preprocessing.get("resize", "—")], ["channels", preprocessing.get("channels", "—")],
            ["test-time augmentation", "on (visiontrain predict averages the image and shifted copies)"
             if (meta.get("config") or {}).get("tta") else "off"]]
    policy = [[key.replace("_", " "), "none" if value is None else value]
              for key, value in (meta.get("decode_policy") or {}).items()]
    decode = ("\nHow image files are decoded (the same policy in training, evaluation and `visiontrain predict`):\n\n"
              + _table(["decode policy", "value"], policy)) if policy else ""
    return "## Preprocessing\n\n" + _table(["", "value"], rows) + decode


def _limits(meta: dict[str, Any]) -> str:
    classes, dataset = meta["classes"], meta.get("dataset") or {}
    channels, height, width = meta["input_size"]
    name = md(dataset.get("name") or (meta.get("config") or {}).get("dataset") or "its training data")
    shown = ", ".join(md(c) for c in classes[:10]) + (f" and {len(classes) - 10:,} more" if len(classes) > 10 else "")
    items = [
        f"**Intended use:** sorting images like those of {name} into its {len(classes)} classes ({shown}).",
        "**It cannot say \"none of these\".** Every image gets one of these classes, also an image of something it "
        "never saw; a high probability is no proof that the image belongs to any class.",
        f"**It was trained only on {name}**"
        + (f" ({_count(dataset.get('train'))} training images)" if type(dataset.get("train")) is int else "")
        + f", at {width}x{height} pixels, {'grayscale' if channels == 1 else 'RGB'}. Images from other cameras, "
        "scanners, lighting, backgrounds, resolutions or populations were not in it; expect lower accuracy on "
        "them and measure it (`visiontrain eval RUN --data FOLDER`) before relying on the model.",
        "The test metrics come from the same source as the training images: they estimate accuracy on more "
        "images like those, not on the world at large.",
        "It was not evaluated for fairness across groups of people, robustness to deliberate attacks, or "
        "safety-critical decisions (medical, legal, security); do not use it for them without that evidence.",
    ]
    if not meta.get("allow_flip", True):
        items.append("Mirrored images change meaning for these classes (e.g. digits, text): the model never saw "
                     "mirrored images, and its test-time augmentation does not mirror.")
    return "## Intended use and limits\n\n" + "".join(f"- {item}\n" for item in items)


def _loading(meta: dict[str, Any]) -> str:
    exporter = EXPORTERS.get(meta["format"]) if meta["format"] in EXPORTERS else None
    channels, height, width = meta["input_size"]
    usage = exporter.usage(meta) if exporter is not None and exporter.usage is not None else None
    bundle_code = ('from visiontrain.export import load_bundle\npredictor = load_bundle("path/to/this/folder")\n'
                   'print(predictor.predict(["image.png"], top_k=3))')
    if usage is None:
        weights_only = exporter is not None and not exporter.normalizes_inside
        three = ("### In three lines, with visiontrain\n\n" + _code(bundle_code, "python")
                 + "\nvisiontrain decodes, resizes and normalises the image as in training.\n"
                 + (_rebuild(meta) if weights_only else ""))
    else:
        library = "onnxruntime and numpy" if meta["format"] == "onnx" else "torch"
        three = (f"### In three lines, with {library} only\n\n" + _code(usage, "python")
                 + "\nRun it in this folder (or give the model file's path). "
                 f"`images`: a float32 array (N, {channels}, {height}, {width}) of pixel values 0..255, prepared "
                 "as under Preprocessing (the normalisation is inside the model); `logits`: (N, "
                 f"{len(meta['classes'])}), column *i* is class *i*.\n\n"
                 "### With visiontrain (decoding, resizing and class names included)\n\n"
                 + _code(bundle_code, "python"))
    note = FORMAT_NOTES.get(meta["format"], "")
    trust = f"\n{note.format(torch=md((meta.get('versions') or {}).get('torch', '?')))}\n" if note else ""
    return ("## How to load it\n\n" + three + "\nFrom the command line:\n\n"
            + _code("visiontrain predict path/to/this/folder image.png photos/", "sh") + trust)


def _rebuild(meta: dict[str, Any]) -> str:
    """For a weights-only file: the network rebuilt with torch and visiontrain.models, fed normalised pixels."""
    channels, size = meta["input_size"][0], meta["input_size"][-1]
    code = ("import safetensors.torch, visiontrain.models\n"
            f"model = visiontrain.models.create_model({meta.get('model')!r}, num_classes={len(meta['classes'])}, "
            f"in_channels={channels}, image_size={size}, width={meta.get('width', 1.0)!r}).eval()\n"
            f"model.load_state_dict(safetensors.torch.load_file({meta['model_file']!r}))\n"
            "logits = model((images / 255 - mean) / std)  # mean, std: (1, C, 1, 1) tensors of model.json's values")
    return "\nThe file holds the weights only (no code, no normalisation). To run them with torch:\n\n" + _code(
        code, "python")


def _verification(meta: dict[str, Any]) -> str:
    check, versions = meta.get("verification") or {}, meta.get("versions") or {}
    rows = []
    if check:
        difference = _number(check.get("max_abs_diff"))
        rows += [["verified on", f"{_count(check.get('images'))} real {check.get('split', '')} images, batch sizes "
                                 f"{check.get('batch_sizes')}"],
                 ["max logit difference to eager PyTorch", ("—" if difference is None else f"{difference:.2e}")
                  + f" (allowed {check.get('tolerance')})"],
                 ["top-1 agreement", _percent(check.get("top1_agreement"))], ["runtime", check.get("runtime")]]
    rows += [[f"{name} version", version] for name, version in versions.items()]
    rows += [["model file SHA-256", meta.get("model_sha256", "—")]]
    return "## Verification and versions\n\n" + _table(["", "value"], rows)
