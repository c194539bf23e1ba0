"""Matplotlib PNGs of a run folder: training curves, confusion matrix, reliability diagram, image grids.

Every plot reads the plain files of the run folder (metrics.csv, eval/<split>/...), so it can be redrawn at any
time without the model. Figures are drawn on matplotlib's Agg canvas without pyplot: no GUI backend, no global
figure list to leak, safe inside a training process. matplotlib is imported inside the functions so that
`import visiontrain` stays light.
"""
from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from ..errors import RunError
from ..figures import figure_png, image_grid, literal, new_figure, save_png
from ..run import RunDir

if TYPE_CHECKING:
    import torch
    from matplotlib.figure import Figure  # noqa: F401

RELIABILITY_BINS = 15  # as metrics.classification.expected_calibration_error, so the bars add up to its ECE
CELL_TEXT_MAX_CLASSES = 30  # above this a count per cell is unreadable; the colour alone carries the matrix
TICK_LABELS_MAX = 100  # class names on an axis before only every n-th is labelled


# -- reading the run folder -----------------------------------------------------------------------------------
def number(value: Any) -> float | None:
    """A metrics.csv cell as a float; '' or None (e.g. no validation split) as None."""
    if value is None or value == "":
        return None
    return float(value)


def series(rows: Sequence[Mapping[str, Any]], column: str) -> list[float | None]:
    return [number(row.get(column)) for row in rows]


def eval_splits(run: RunDir) -> list[str]:
    """The splits with eval/<split>/metrics.json, test first (it is the one a report leads with)."""
    folder = run.path / "eval"
    found = sorted(p.parent.name for p in folder.glob("*/metrics.json")) if folder.is_dir() else []
    return sorted(found, key=lambda split: (split != "test", split != "val", split))


def read_eval(run: RunDir, split: str) -> dict[str, Any] | None:
    path = run.path / "eval" / split / "metrics.json"
    return json.loads(path.read_text()) if path.is_file() else None


def _require_eval(run: RunDir, split: str) -> dict[str, Any]:
    metrics = read_eval(run, split)
    if metrics is None:
        raise RunError(f"{run.path} has no eval/{split}/metrics.json; evaluate it first with "
                       f"`visiontrain eval {run.path} --split {split}`")
    return metrics


def _percent_axis(axis) -> None:  # noqa: ANN001
    from matplotlib.ticker import PercentFormatter

    axis.yaxis.set_major_formatter(PercentFormatter(1.0))


def _epoch_axis(axis) -> None:  # noqa: ANN001
    from matplotlib.ticker import MaxNLocator

    axis.set_xlabel("epoch")
    axis.xaxis.set_major_locator(MaxNLocator(integer=True))
    axis.grid(alpha=0.3)


def _line(axis, epochs: list[float], values: list[float | None], label: str, **style: Any) -> None:  # noqa: ANN001
    points = [(e, v) for e, v in zip(epochs, values) if v is not None]
    if points:
        marker = "o" if len(points) <= 30 else None  # dots show where the epochs are; at 100s they are clutter
        axis.plot(*zip(*points), label=literal(label), marker=marker, markersize=3, **style)


# -- training curves ------------------------------------------------------------------------------------------
def plot_curves(run_dir: str | Path) -> Path:
    """Loss, accuracy (train vs val) and learning rate per epoch from metrics.csv; writes plots/curves.png."""
    run = RunDir.open(run_dir)
    rows = run.read_metrics()
    if not rows:
        raise RunError(f"{run.path} has no epochs in metrics.csv yet; plot it after the first epoch")
    epochs = [number(r.get("epoch")) or i + 1 for i, r in enumerate(rows)]
    figure = new_figure(13, 3.8)
    loss, accuracy, lr = figure.subplots(1, 3)
    for axis, metric, label in ((loss, "loss", "loss (cross-entropy)"), (accuracy, "acc", "accuracy")):
        _line(axis, epochs, series(rows, f"train_{metric}"), "train")
        _line(axis, epochs, series(rows, f"val_{metric}"), "val")
        axis.set_ylabel(label)
        axis.legend()
        _epoch_axis(axis)
    _percent_axis(accuracy)
    if any(row.get("backbone_lr") not in (None, "") for row in rows):  # fine-tuning: the head's and the backbone's
        # an lr of 0 (the probe's epoch, a frozen backbone) is a gap in the line: nothing learnt by gradient steps
        parts = [("head", "head_lr", "tab:green"), ("backbone", "backbone_lr", "tab:purple")]
    else:
        parts = [("lr", "lr", "tab:green")]
    rates = []
    for label, column, color in parts:
        values = [rate if rate or len(parts) == 1 else None for rate in series(rows, column)]
        _line(lr, epochs, values, label, color=color)
        rates += values
    positive = [rate for rate in rates if rate is not None and rate > 0]
    if positive and (len(parts) > 1 or len(positive) == len(rates)) and max(positive) > 10 * min(positive):
        lr.set_yscale("log")  # schedules such as one-cycle end orders of magnitude below their peak
    if len(parts) > 1:
        lr.legend()
    lr.set_ylabel("learning rate (end of epoch)")
    _epoch_axis(lr)
    figure.suptitle(literal(f"{run.path.name}: training curves"))
    return save_png(figure, run.path / "plots" / "curves.png")


def comparison_png(named_rows: Sequence[tuple[str, Sequence[Mapping[str, Any]]]]) -> bytes:
    """PNG of val accuracy and val loss per epoch, one line per run; a run without a val split shows its train
    curves dashed (labelled "(train)") so that it is not silently missing."""
    figure = new_figure(12, 4.2)
    accuracy, loss = figure.subplots(1, 2)
    for index, (name, rows) in enumerate(named_rows):
        epochs = [number(r.get("epoch")) or i + 1 for i, r in enumerate(rows)]
        has_val = any(v is not None for v in series(rows, "val_acc"))
        prefix, style = ("val", "-") if has_val else ("train", "--")
        label = name if has_val else f"{name} (train)"
        for axis, metric in ((accuracy, "acc"), (loss, "loss")):
            _line(axis, epochs, series(rows, f"{prefix}_{metric}"), label, color=f"C{index % 10}", linestyle=style)
    accuracy.set_ylabel("val accuracy")
    loss.set_ylabel("val loss (cross-entropy)")
    _percent_axis(accuracy)
    for axis in (accuracy, loss):
        _epoch_axis(axis)
        axis.legend(fontsize=8)
    figure.suptitle("validation curves")
    return figure_png(figure)


# -- confusion matrix -----------------------------------------------------------------------------------------
def plot_confusion(run_dir: str | Path, split: str = "test") -> Path:
    """Confusion matrix of eval/<split>/metrics.json: rows true, columns predicted; colour is the share of the
    true class (row-normalised) so small classes are as visible as large ones; counts are printed in the cells
    up to CELL_TEXT_MAX_CLASSES classes. Writes plots/confusion_matrix.png (test) or confusion_matrix_<split>.png.
    """
    import numpy as np

    run = RunDir.open(run_dir)
    metrics = _require_eval(run, split)
    counts = np.asarray(metrics["confusion_matrix"], dtype=np.int64)  # (K, K), rows = true class
    classes = [row["class"] for row in metrics["per_class"]]
    shares = counts / np.maximum(counts.sum(1, keepdims=True), 1)  # (K, K) float, each row sums to 1
    side = min(22.0, max(6.0, 3 + 0.18 * len(classes)))  # inches: 10 classes -> 6, 100 -> 21
    figure = new_figure(side + 1.4, side)
    axis = figure.add_subplot()
    image = axis.imshow(shares, cmap="Blues", vmin=0, vmax=1, interpolation="nearest")
    figure.colorbar(image, ax=axis, shrink=0.8, label="share of the true class")
    _class_ticks(axis, classes)
    if len(classes) <= CELL_TEXT_MAX_CLASSES:
        _cell_counts(axis, counts, shares)
    axis.set_xlabel("predicted")
    axis.set_ylabel("true")
    axis.set_title(literal(f"{run.path.name}: {split} confusion matrix (n={int(counts.sum())}, "
                           f"accuracy {metrics['accuracy']:.2%})"))
    return save_png(figure, run.plot_path("confusion_matrix", split))


def _class_ticks(axis, classes: list[str]) -> None:  # noqa: ANN001
    step = math.ceil(len(classes) / TICK_LABELS_MAX)
    ticks = list(range(0, len(classes), step))
    names = [literal(classes[i]) for i in ticks]
    font = max(4.0, min(10.0, 180 / len(ticks)))  # 10 classes -> 10 pt, 100 -> 4 pt (the figure grows too)
    axis.set_xticks(ticks, names, rotation=90 if max(map(len, names)) > 3 else 0, fontsize=font)
    axis.set_yticks(ticks, names, fontsize=font)


def _cell_counts(axis, counts, shares) -> None:  # noqa: ANN001
    font = max(5.0, min(10.0, 120 / len(counts)))
    for true, predicted in zip(*counts.nonzero()):  # empty cells stay blank: zeros are noise to the eye
        colour = "white" if shares[true, predicted] > 0.5 else "black"  # readable on dark and light blue
        axis.text(predicted, true, str(counts[true, predicted]), ha="center", va="center", fontsize=font, color=colour)


# -- calibration ----------------------------------------------------------------------------------------------
def read_predictions(run: RunDir, split: str, column: str = "confidence") -> tuple[list[float], list[bool]]:
    """(confidence of the top class, whether it was right) per image of eval/<split>/predictions.csv; column
    "confidence_uncalibrated": the same class's probability before the temperature (empty when there is none)."""
    path = run.path / "eval" / split / "predictions.csv"
    if not path.is_file():
        raise RunError(f"{run.path} has no eval/{split}/predictions.csv; evaluate it first with "
                       f"`visiontrain eval {run.path} --split {split}`")
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    if rows and column not in rows[0]:
        return [], []
    return [float(r[column]) for r in rows], [r["true"] == r["predicted"] for r in rows]


def reliability_bins(confidence: list[float], correct: list[bool], bins: int = RELIABILITY_BINS
                     ) -> list[tuple[float, float, int, float, float]]:
    """(low, high, count, mean confidence, accuracy) per bin (low, high]; the ECE is the count-weighted mean of
    |confidence - accuracy|, as in metrics.classification."""
    result = []
    for index in range(bins):
        low, high = index / bins, (index + 1) / bins
        inside = [(p, c) for p, c in zip(confidence, correct) if low < p <= high]
        if inside:
            result.append((low, high, len(inside), sum(p for p, _ in inside) / len(inside),
                           sum(c for _, c in inside) / len(inside)))
    return result


def plot_reliability(run_dir: str | Path, split: str = "test") -> Path:
    """Reliability diagram from eval/<split>/predictions.csv: accuracy per confidence bin against the diagonal of
    perfect calibration, image counts per bin below, ECE in the title. Writes plots/reliability.png (test).
    A calibrated run (a temperature, metrics/calibration.py) gets two columns: before and after the temperature."""
    run = RunDir.open(run_dir)
    metrics = read_eval(run, split) or {}
    calibration = metrics.get("calibration") or {}
    panels = [read_predictions(run, split)]
    before = read_predictions(run, split, "confidence_uncalibrated") if calibration else ([], [])
    if before[0]:
        panels.insert(0, before)
    figure = new_figure(6 * len(panels), 6.5)
    axes = figure.subplots(2, len(panels), sharex=True, height_ratios=[3, 1], squeeze=False)
    for column, (confidence, correct) in enumerate(panels):
        bins = reliability_bins(confidence, correct)
        total = max(1, len(confidence))
        # metrics.json holds the ECE of the unrounded confidences; predictions.csv keeps 4 decimals
        key = "ece_uncalibrated" if len(panels) == 2 and column == 0 else "ece"
        ece = (calibration if key != "ece" else metrics).get(key, sum(n / total * abs(p - a) for _, _, n, p, a in bins))
        _reliability_panel(axes[0, column], axes[1, column], bins)
        if len(panels) == 1:
            title = f"{run.path.name}: {split} reliability (ECE {ece:.4f}, n={len(confidence)})"
        elif column == 0:
            title = f"{run.path.name}: {split}, before calibration (ECE {ece:.4f}, n={len(confidence)})"
        else:
            title = f"after temperature scaling, T = {calibration['temperature']:.3g} (ECE {ece:.4f})"
        axes[0, column].set_title(literal(title), fontsize=10)
    return save_png(figure, run.plot_path("reliability", split))


def _reliability_panel(top, bottom, bins: list[tuple[float, float, int, float, float]]) -> None:  # noqa: ANN001
    width = 1 / RELIABILITY_BINS
    top.bar([low for low, *_ in bins], [a for *_, a in bins], width=width, align="edge", edgecolor="black",
            color="tab:blue", label="accuracy in bin")
    top.plot([0, 1], [0, 1], "--", color="gray", label="perfect calibration")
    # a red line above its bar means over-confident in that bin, below it under-confident
    top.hlines([p for _, _, _, p, _ in bins], [low for low, *_ in bins], [high for _, high, *_ in bins],
               colors="tab:red", linewidth=2.5, label="mean confidence in bin")
    top.set(ylabel="accuracy", xlim=(0, 1), ylim=(0, 1))
    top.legend(loc="upper left", fontsize=8)
    bottom.bar([low for low, *_ in bins], [n for _, _, n, _, _ in bins], width=width, align="edge", color="gray")
    bottom.set(xlabel="confidence of the predicted class", ylabel="images", yscale="log")  # log: most sit near 1


def plot_misclassified(run_dir: str | Path, images: "torch.Tensor", labels: "torch.Tensor", logits: "torch.Tensor",
                       classes: Sequence[str], split: str = "test", count: int = 32) -> Path:
    """Grid of the `count` images with the highest loss (the model's worst mistakes, most confident first).

    Args:
        run_dir: the run folder; writes plots/misclassified.png (test) or plots/misclassified_<split>.png.
        images: uint8 (N, C, H, W) as the dataset holds them (before normalisation).
        labels: int64 (N,) true classes.
        logits: float (N, K) of the model on `images`.
        classes: K class names; index = label.
        split: which split the images come from (names the file and the heading).
        count: how many images to show.
    """
    import torch

    run = RunDir.open(run_dir)
    if logits.ndim != 2 or not len(logits) == len(labels) == len(images) or logits.shape[1] != len(classes):
        raise ValueError(f"plot_misclassified needs images (N, C, H, W), labels (N,) and logits (N, K) with K = "
                         f"{len(classes)} classes; got {tuple(images.shape)}, {tuple(labels.shape)}, "
                         f"{tuple(logits.shape)}")
    logits, labels = logits.float().cpu(), labels.long().cpu()
    losses = torch.nn.functional.cross_entropy(logits, labels, reduction="none")  # (N,)
    order = losses.argsort(descending=True)[:count]
    confidence, predicted = logits.softmax(1).max(1)  # (N,), (N,)
    titles = [f"true: {classes[int(labels[i])]}\npred: {classes[int(predicted[i])]} {float(confidence[i]):.2f}"
              for i in order]
    wrong = int((predicted != labels).sum())
    heading = (f"{run.path.name}: the {len(order)} {split} images with the highest loss "
               f"({wrong} of {len(labels)} misclassified)")
    return image_grid(images.cpu()[order], titles, run.plot_path("misclassified", split), title=heading)


# -- everything the files allow ---------------------------------------------------------------------------------
def write_run_plots(run_dir: str | Path) -> list[Path]:
    """Draw every plot that the run folder's files allow: curves (metrics.csv with an epoch), and per evaluated
    split a confusion matrix (metrics.json) and a reliability diagram (predictions.csv). Returns the PNGs."""
    run = RunDir.open(run_dir)
    paths = [plot_curves(run.path)] if run.read_metrics() else []
    for split in eval_splits(run):
        paths.append(plot_confusion(run.path, split))
        if (run.path / "eval" / split / "predictions.csv").is_file():
            paths.append(plot_reliability(run.path, split))
    return paths
