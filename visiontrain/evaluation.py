"""Evaluation of a run on a split: metrics computed once from logits, written as plain files, printed as a table."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from ._csv import csv_text
from ._io import atomic_write_text
from .config import build_config, load_yaml
from .data import load_dataset_of, subsample
from .data.tensors import ImageTensors
from .errors import DataError, RunError
from .inference import load
from .metrics.classification import classification_metrics
from .run import RunDir


def write_evaluation(run: RunDir, split: str, logits: torch.Tensor, data: ImageTensors, *, verbose: bool = True,
                     top_k: int = 5, temperature: float = 1.0) -> dict[str, Any]:
    """Compute metrics from logits float (N, K) and write eval/<split>/{metrics.json, per_class.csv,
    confusion_matrix.csv, predictions.csv} in the run folder (names in the CSV files guarded against spreadsheet
    formulas: _csv.py).

    temperature: the T the logits were divided by (Predictor.logits). With T != 1, metrics.json also holds the
    uncalibrated loss and ECE (of logits * T) under "calibration", and predictions.csv a confidence_uncalibrated
    column, from which the report draws the reliability diagram before and after."""
    metrics = classification_metrics(logits, data.labels, data.classes)
    raw_confidence = None
    if temperature != 1.0:
        raw = logits.float() * temperature
        raw_confidence = raw.softmax(1).max(1).values
        before = classification_metrics(raw, data.labels, data.classes)
        metrics["calibration"] = {"temperature": temperature, "ece_uncalibrated": before["ece"],
                                  "loss_uncalibrated": before["loss"]}
    folder = run.path / "eval" / split
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_text(folder / "metrics.json", json.dumps(metrics, indent=2) + "\n")
    atomic_write_text(folder / "per_class.csv", csv_text(["class", "precision", "recall", "f1", "support"],
                                                     [[r["class"], f"{r['precision']:.4f}", f"{r['recall']:.4f}",
                                                       f"{r['f1']:.4f}", r["support"]] for r in metrics["per_class"]]))
    atomic_write_text(folder / "confusion_matrix.csv",
                      csv_text(["true \\ predicted", *data.classes], [[c, *row] for c, row in zip(data.classes, metrics["confusion_matrix"])]))
    probs = logits.float().softmax(1)
    k = min(top_k, probs.shape[1])
    top = probs.topk(k, 1)
    rows = [[data.name_of(i), data.classes[int(data.labels[i])], data.classes[int(top.indices[i, 0])],
             f"{float(top.values[i, 0]):.4f}", " ".join(f"{data.classes[int(c)]}:{float(p):.3f}"
                                                       for c, p in zip(top.indices[i], top.values[i]))]
            for i in range(len(data))]
    header = ["image", "true", "predicted", "confidence", f"top{k}"]
    if raw_confidence is not None:  # the same class's probability before the temperature
        header.append("confidence_uncalibrated")
        rows = [row + [f"{float(value):.4f}"] for row, value in zip(rows, raw_confidence)]
    atomic_write_text(folder / "predictions.csv", csv_text(header, rows))
    if verbose:
        print(format_table(metrics, split))
    return metrics


def format_table(metrics: dict[str, Any], split: str) -> str:
    width = max(12, *(len(r["class"]) for r in metrics["per_class"]))
    lines = [f"{split}: accuracy {metrics['accuracy']:.2%}  loss {metrics['loss']:.4f}  "
             f"balanced accuracy {metrics['balanced_accuracy']:.2%}  macro F1 {metrics['macro_f1']:.4f}  "
             f"(n={metrics['n']})" + (f"  top-5 {metrics['top5_accuracy']:.2%}" if "top5_accuracy" in metrics else ""),
             f"{'class':<{width}}  {'accuracy':>8}  {'precision':>9}  {'f1':>6}  {'n':>6}"]
    if metrics.get("calibration"):
        calibration = metrics["calibration"]
        lines.insert(1, f"calibrated by temperature {calibration['temperature']:.3f}: expected calibration error "
                        f"{metrics['ece']:.4f} (uncalibrated {calibration['ece_uncalibrated']:.4f})")
    for row in metrics["per_class"]:
        lines.append(f"{row['class']:<{width}}  {row['recall']:>8.2%}  {row['precision']:>9.2%}  {row['f1']:>6.3f}  "
                     f"{row['support']:>6}")
    if metrics.get("most_confused"):
        lines.append("most confused: " + ", ".join(f"{m['true']} -> {m['predicted']} ({m['count']})"
                                                   for m in metrics["most_confused"][:3]))
    return "\n".join(lines)


def evaluate_run(run_dir: str | Path, *, split: str = "test", data: str | None = None, verbose: bool = True) -> dict:
    """Evaluate the model a run keeps on `split` of its dataset (or of the image folder `data`).

    A run with a split.csv (it carved its own validation split, or trained with --split-file) is evaluated on
    exactly that split: the same files in the same split, with files added since then left out (and reported).
    """
    run = RunDir.open(run_dir)
    predictor = load(run.path)
    values = load_yaml(run.config_path)
    if data is not None:
        values["split_file"] = None  # another folder: its own split
    elif run.split_path.is_file():
        values["split_file"] = str(run.split_path)
    config = build_config(values, apply_preset=False)
    if data is not None:
        config = config.replace(dataset=str(data), data_dir=None, val_fraction=0.0 if split == "test" else config.val_fraction)

    model_size = config.replace(image_size=predictor.input_size[-1], channels=predictor.input_size[0])
    # the run's own data is read as the run read it (config.yaml's image_size and channels, None where it took the
    # data's own): the training's cache entry, not a second copy keyed by the sizes they resolved to
    dataset = load_dataset_of(config if data is None else model_size, verbose=verbose)
    if list(dataset.train.images.shape[1:]) != predictor.input_size:  # its files changed since: at the model's size
        dataset = load_dataset_of(model_size, verbose=verbose)
    if data is None:  # a --fraction / --limit run: the same images it was validated and tested on
        dataset = subsample(dataset, fraction=config.fraction, limit=config.limit, seed=config.seed)
    tensors = {"test": dataset.test, "val": dataset.val, "train": dataset.train}.get(split)
    if data is not None and split == "test" and dataset.test is None and dataset.val is None:
        tensors = dataset.train  # a plain folder of class sub-folders: every image in it is for evaluation
    if tensors is None:
        raise RunError(f"the dataset {config.dataset} has no {split} split; use --split val or --split test")
    if tensors.classes != predictor.classes:
        missing = [c for c in predictor.classes if c not in tensors.classes]
        extra = [c for c in tensors.classes if c not in predictor.classes]
        detail = "; ".join([f"it lacks {', '.join(missing[:5])}"] * bool(missing)
                           + [f"it has {', '.join(extra[:5])}, which the run never saw"] * bool(extra)) or "another order"
        raise DataError(f"the classes of {config.dataset} differ from the run's ({detail}); evaluate on data with the "
                        "same class folders")
    logits = predictor.logits(tensors.images)
    # another folder's results go beside the run's own (eval/data-<folder>/), never over eval/test/
    return write_evaluation(run, split if data is None else f"data-{Path(data).name}", logits, tensors, verbose=verbose,
                            temperature=predictor.temperature)
