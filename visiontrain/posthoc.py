"""What is fitted after the epochs, from the model a run keeps, and written into its checkpoint: the temperature that
calibrates its probabilities on the validation split (metrics/calibration.py), and the ranges of the training
images' pixel statistics that predict compares new images with (metrics/input_check.py)."""
from __future__ import annotations

from typing import Any

from torch import nn

from .engine.build import Setup
from .engine.checkpoint import load_checkpoint, save_checkpoint
from .engine.distributed import DistEnv
from .inference import Predictor, kept_checkpoint
from .metrics.calibration import METHOD, calibration_report, fit_temperature
from .metrics.input_check import fit_ranges
from .run import RunDir

MIN_CALIBRATION_IMAGES = 50  # fewer validation images leave the temperature to chance
FITTED = ("temperature", "calibration", "input_stats")  # the checkpoint keys written here


def fit_after_training(run_dir: RunDir, built: Setup, env: DistEnv, model: nn.Module | None = None) -> dict[str, Any]:
    """The kept checkpoint with FITTED added, saved into it (and into last.pt when that holds the same step).
    Every process computes the same numbers; only rank 0 writes. `model`: a model passed from Python, which no name
    rebuilds."""
    path = kept_checkpoint(run_dir)
    checkpoint = load_checkpoint(path)
    calibration = fit_calibration(Predictor(checkpoint, built.device, model=model), built)
    checkpoint |= {"temperature": calibration["temperature"], "calibration": calibration,
                   "input_stats": fit_ranges(built.loaded.train.images)}
    if env.is_main:
        save_checkpoint(path, checkpoint)
        if path != run_dir.last and run_dir.last.is_file():
            last = load_checkpoint(run_dir.last)
            if last["state"]["global_step"] == checkpoint["state"]["global_step"]:  # the same weights
                save_checkpoint(run_dir.last, last | {key: checkpoint[key] for key in FITTED})
    return checkpoint


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
