"""Checkpoints: tensors and primitives only, written atomically, loaded weights-only, checked on load.

A checkpoint loads with plain `torch.load(path, weights_only=True)` in a process that never imported
visiontrain. visiontrain's own loader never falls back to unsafe unpickling: a file that holds Python objects is
refused and nothing in it runs (an explicit weights_only=True also overrides TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD).
"""
from __future__ import annotations

import errno
import pickle
import sys
import zipfile
from pathlib import Path
from typing import Any

import torch

from .._version import __version__
from .._io import atomic_torch_save
from ..config import CHECKPOINT_KIND, FORMAT_VERSION
from ..errors import CheckpointError

KIND = CHECKPOINT_KIND
REQUIRED_KEYS = ("kind", "format_version", "torch_version", "config", "classes", "mean", "std", "input_size", "model")


def non_finite_tensors(state: dict[str, Any], prefix: str = "") -> list[str]:
    """Names of floating-point tensors (nested in dicts/lists) that hold NaN or inf."""
    bad = []
    for key, value in state.items() if isinstance(state, dict) else enumerate(state):
        name = f"{prefix}{key}"
        if isinstance(value, torch.Tensor) and value.dtype.is_floating_point and not torch.isfinite(value).all():
            bad.append(name)
        elif isinstance(value, (dict, list, tuple)):
            bad += non_finite_tensors(value if not isinstance(value, tuple) else list(value), f"{name}.")
    return bad


def save_checkpoint(path: Path, checkpoint: dict[str, Any]) -> None:
    """Write atomically; refuse to write non-finite weights (the previous checkpoint then stays the latest)."""
    bad = non_finite_tensors({"model": checkpoint["model"], "ema": checkpoint.get("ema") or {}})
    if bad:
        raise CheckpointError(f"refusing to write {path}: {', '.join(bad[:3])} hold NaN or inf")
    checkpoint = {"kind": KIND, "format_version": FORMAT_VERSION, "torch_version": str(torch.__version__),
                  "visiontrain_version": __version__} | _to_cpu(checkpoint)
    try:
        atomic_torch_save(path, checkpoint)
    except OSError as error:
        if error.errno == errno.ENOSPC:
            raise CheckpointError(f"No space left on the device writing checkpoint {path}: disk full; the previous "
                                  "checkpoint is unchanged. Free space, then resume with --resume") from None
        raise CheckpointError(f"could not write checkpoint {path} ({error.strerror or error}); the previous "
                              "checkpoint is unchanged") from None


def _to_cpu(value: Any) -> Any:
    """GPU tensors -> CPU, so a checkpoint from a GPU run loads on any machine with plain torch.load."""
    if isinstance(value, torch.Tensor):
        return value.cpu()
    if isinstance(value, dict):
        return {k: _to_cpu(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_to_cpu(v) for v in value)
    return value


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load and check a visiontrain checkpoint on the CPU, weights-only, never falling back."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise CheckpointError(f"{path} is not a safe visiontrain checkpoint (contains Python objects); it was not "
                              "loaded and nothing in it was run") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError, KeyError, IndexError) as error:
        raise CheckpointError(f"{path} is truncated or corrupt ({type(error).__name__}); use another checkpoint "
                              "or retrain") from None
    if not isinstance(checkpoint, dict) or checkpoint.get("kind") != KIND:
        raise CheckpointError(f"{path} is not a visiontrain checkpoint (a plain state dict? pass it as --weights)")
    missing = [k for k in REQUIRED_KEYS if k not in checkpoint]
    if missing:
        raise CheckpointError(f"{path} lacks {', '.join(missing)}; it is damaged or from another tool")
    if checkpoint["format_version"] > FORMAT_VERSION:
        raise CheckpointError(f"{path} has format version {checkpoint['format_version']}, newer than this "
                              f"visiontrain ({__version__}, format {FORMAT_VERSION}) understands; upgrade visiontrain")
    return checkpoint


def newest_valid_checkpoint(*paths: Path) -> tuple[dict[str, Any], list[tuple[Path, str]]]:
    """The loadable checkpoint with the most steps among `paths` (a run's last.pt and best.pt), and those skipped
    (with why): a resume starts from the newest checkpoint that loads."""
    found, skipped = [], []
    for path in paths:
        if not path.is_file():
            continue
        try:
            found.append(load_checkpoint(path))
        except CheckpointError as error:
            skipped.append((path, str(error)))
    if not found:
        detail = "; ".join(f"{p}: {r}" for p, r in skipped) or "none were written"
        raise CheckpointError(f"no usable checkpoint in {paths[0].parent} ({detail})")
    return max(found, key=lambda c: c["state"]["global_step"]), skipped


def warn_if_other_torch(checkpoint: dict[str, Any], run: Path) -> None:
    """A resume under another torch than the run's: bit-exact resume holds per torch version, so say so."""
    saved = checkpoint.get("torch_version")
    if saved and saved != torch.__version__:
        print(f"visiontrain: warning: {run} was trained with torch {saved} and resumes with torch {torch.__version__};"
              " bit-exact resume holds per torch version, so the rest of the run may differ slightly from an "
              "uninterrupted one", file=sys.stderr)
