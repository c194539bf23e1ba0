"""What an export format is (ExportFormat) and the registry of them: one entry per format module (onnx.py,
torchscript.py, pt2.py, safetensors.py), which registers itself when imported."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._registry import EXPORTERS  # noqa: F401  (name -> ExportFormat)

if TYPE_CHECKING:
    import numpy as np
    from torch import nn

Runner = Callable[["np.ndarray"], "np.ndarray"]  # float32 (N, C, H, W) 0..255 -> logits float32 (N, K)


@dataclass(frozen=True)
class ExportFormat:
    """One export format: how to write the model file and how to run it again.

    filename: the model file's name inside the bundle.
    serialize: (exportable model, example images float (2, C, H, W) 0..255) -> the file's bytes. The model is
        verify.exportable(): eval mode, fp32, CPU, normalisation inside.
    load: (model file, model.json dict) -> Runner, in this process (what a BundlePredictor uses).
    load_isolated: like `load`, but proving the file runs without visiontrain (TorchScript, pt2: a fresh
        `python -I` process); None: `load` is already that proof (onnxruntime never imports visiontrain or torch).
    normalizes_inside: True when the model file takes 0..255 pixels; False when it holds weights only.
    runtime: what runs it, for model.json.
    usage: (model.json dict) -> three lines of Python that load the model file and compute `logits` from
        `images`, for the bundle's README.md model card; None: the card shows visiontrain's load_bundle.
    """

    filename: str
    serialize: Callable[[nn.Module, Any], bytes]
    load: Callable[[Path, dict], Runner]
    runtime: Callable[[], str]
    normalizes_inside: bool = True
    load_isolated: Callable[[Path, dict, list], list] | None = None
    usage: Callable[[dict], str] | None = None
