"""After the epochs (fit.py hands over here): what is fitted from the model a run keeps and written into its
checkpoint (the temperature that calibrates its probabilities on the validation split, metrics/calibration.py, and
the ranges of the training images' pixel statistics that predict compares new images with, metrics/input_check.py),
then the test evaluation, summary.json, and the plots and report."""
from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn

from .engine.build import Setup
from .engine.checkpoint import load_checkpoint, save_checkpoint
from .engine.distributed import DistEnv
from .engine.loop import TrainState
from .engine.overfit import verdict
from .evaluation import write_evaluation
from .explain import write_misclassified_gradcam
from .inference import Predictor, kept_checkpoint
from .metrics.calibration import METHOD, calibration_report, fit_temperature
from .metrics.classification import classification_metrics
from .metrics.input_check import fit_ranges
from .report import plot_misclassified, write_report
from .report.batch import write_training_batch
from .report.plots import plot_confusion, plot_curves
from .run import RunDir

MIN_CALIBRATION_IMAGES = 50  # fewer validation images leave the temperature to chance
FITTED = ("temperature", "calibration", "input_stats")  # the checkpoint keys written here


def fit_after_training(run_dir: RunDir, built: Setup, env: DistEnv,
                       model: nn.Module | None = None) -> tuple[dict[str, Any], Predictor]:
    """The kept checkpoint with FITTED added, saved into it (and into last.pt when that holds the same step), and
    the kept model built once, with the fitted temperature, for the test evaluation and Grad-CAM that follow.
    Every process computes the same numbers; only rank 0 writes. `model`: a model passed from Python, which no name
    rebuilds."""
    path = kept_checkpoint(run_dir)
    checkpoint = load_checkpoint(path)
    predictor = Predictor(checkpoint, built.device, model=model)
    calibration = fit_calibration(predictor, built)
    checkpoint |= {"temperature": calibration["temperature"], "calibration": calibration,
                   "input_stats": fit_ranges(built.loaded.train.images)}
    predictor.fitted(checkpoint)
    if env.is_main:
        save_checkpoint(path, checkpoint)
        if path != run_dir.last and run_dir.last.is_file():
            last = load_checkpoint(run_dir.last)
            if last["state"]["global_step"] == checkpoint["state"]["global_step"]:  # the same weights
                save_checkpoint(run_dir.last, last | {key: checkpoint[key] for key in FITTED})
    return checkpoint, predictor


def fit_calibration(predictor: Predictor, built: Setup) -> dict[str, Any]:
    """{"temperature": T, ...how it was fitted and what it changed on the validation split}, or T = 1 and why."""
    config, val = built.config, built.dataset.val
    reason = ("turned off (--no-calibrate)" if not config.calibrate else
              "the overfit-batch check trains no model to use" if config.overfit_batch else
              "no validation split (val_fraction 0) to fit it on" if val is None else
              f"the validation split has {len(val)} images; at least {MIN_CALIBRATION_IMAGES} are needed"
              if len(val) < MIN_CALIBRATION_IMAGES else None)
    if reason is None:
        logits = predictor.logits(val.images, batch_size=config.eval_batch_size, calibrated=False)
        if bool((logits.argmax(1) == val.labels).all()):
            reason = "every validation image is predicted correctly, so the split cannot say how sure to be"
    if reason is not None:
        return {"temperature": 1.0, "method": None, "note": f"probabilities are the model's own softmax: {reason}"}
    temperature = fit_temperature(logits, val.labels)
    return {"temperature": temperature, "method": METHOD, "split": "val", "images": len(val),
            "tta": predictor.tta} | calibration_report(logits, val.labels, temperature)


def finish(run_dir: RunDir, built: Setup, env: DistEnv, state: TrainState, elapsed: Callable[[], float],
           facts: dict[str, Any], *, model: nn.Module | None = None, plots: bool = False) -> dict[str, Any]:
    """The fits above, the test evaluation of the kept model, summary.json (rank 0) and, with config.report, the
    plots and report.html; returns the summary. elapsed(): the run's wall seconds so far; facts: what only the run
    knows (time_to_first_step, time_budget, stopped_by), added as they are (None: left out). plots: draw the curves
    and confusion matrix even without a report (a logger shows them)."""
    config, data = built.config, built.dataset
    summary: dict[str, Any] = {"status": "complete", "format_version": 1, "test_acc": None, "test_loss": None}
    kept, predictor = fit_after_training(run_dir, built, env, model=model)
    summary["calibration"] = kept["calibration"]
    summary["input_check"] = {key: kept["input_stats"][key] for key in ("method", "images", "flagged_in_training")}
    logits = None
    if data.test is not None and not config.overfit_batch:  # a memorised batch says nothing about the test split
        # the model the run keeps (best.pt: the epoch validation picked), through the one inference path that
        # eval, predict, explain and export use, in the inference precision rather than the training one
        logits = predictor.logits(data.test.images, batch_size=config.eval_batch_size)
        metrics = write_evaluation(run_dir, "test", logits, data.test, verbose=False,
                                   temperature=predictor.temperature) if env.is_main \
            else classification_metrics(logits, data.test.labels, data.classes)
        summary |= {"test_acc": metrics["accuracy"], "test_loss": metrics["loss"]}
    last = state.rows[-1] if state.rows else {}
    best_row = next((row for row in state.rows if row["epoch"] == state.best_epoch), {})
    summary |= {
        "best_val_acc": best_row.get("val_acc") if data.val is not None else None,
        "best_epoch": state.best_epoch, "epochs_completed": state.epoch,
        "final_val_acc": last.get("val_acc"), "final_train_acc": last.get("train_acc"),
        "wall_seconds": elapsed(), "train_seconds": state.train_seconds,
        "probe": state.probe,
        "images_per_second": state.global_step * config.batch_size * env.world_size / max(1e-9, state.train_seconds),
    } | built.describe() | {"run_dir": str(run_dir.path)}
    summary |= {key: value for key, value in facts.items() if key not in summary and value is not None}
    if built.selection.balanced:
        summary["best_val_balanced_acc"] = best_row.get("val_balanced_acc")
    if config.overfit_batch:  # the verdict on the batch it trained on, with the final (not the best-val) weights
        summary["overfit_batch"] = verdict(built.validation_logits(data.train.images), data.train.labels, config,
                                           len(data.classes))
    if env.is_main:
        run_dir.write_json(run_dir.summary_path, summary)
        if config.report:
            _write_report(run_dir, built, logits, predictor)
        elif plots:
            plot_curves(run_dir.path)
            if logits is not None:
                plot_confusion(run_dir.path)
    return summary


def _write_report(run_dir: RunDir, built: Setup, test_logits: torch.Tensor | None, predictor: Predictor) -> None:
    """plots/ and report.html; after summary.json, which the report reads. (matplotlib, ~1.5 s to import, loads
    here at the end, inside the drawing functions, never before the first step.)"""
    write_training_batch(built, run_dir.path / "plots" / "augmented_batch.png")  # what the model sees
    if test_logits is not None:
        test = built.dataset.test
        plot_misclassified(run_dir.path, test.images, test.labels, test_logits, test.classes)
        # and where the model looked in its worst mistakes: plots/gradcam.png (or .txt saying why there is none)
        write_misclassified_gradcam(run_dir.path, test.images, test.labels, test_logits, test.classes,
                                    predictor=predictor)
    write_report(run_dir.path)  # also draws the curves, confusion matrix and reliability diagram
