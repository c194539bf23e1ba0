"""Export a trained run as a self-describing, verified bundle folder: ONNX, TorchScript, torch.export (pt2) or
safetensors.

    bundle = export_run("runs/mnist-fastnet", "onnx")   # -> runs/mnist-fastnet/export/onnx/
    load_bundle(bundle).predict(["digit.png"])           # onnxruntime + numpy + Pillow are enough

A bundle is the model file (model.onnx / model.ts / model.pt2 / model.safetensors) and model.json (class names, input
size, mean/std, the decode policy, the training config, metrics, versions and the verification numbers). ONNX
and TorchScript models take float32 (N, C, H, W) pixels in 0..255 and normalise inside the graph, so a user
cannot feed them the wrong mean/std. Nothing is written until the export, loaded back, matches the eager model
on real images of the run's dataset (verify.py).

This package imports torch only inside functions: `load_bundle` on an ONNX bundle runs without torch.
"""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from . import onnx, pt2, safetensors, torchscript  # noqa: F401  (each registers its format on import)
from .bundle import BundleError, BundlePredictor, describe, load_bundle, write_bundle
from .formats import EXPORTERS, ExportFormat, Runner  # noqa: F401

if TYPE_CHECKING:
    from ..inference import Predictor



def export_run(run_dir: str | Path, format: str = "onnx", out_dir: str | Path | None = None, *,
               data: str | None = None) -> Path:
    """Export a run's model (best checkpoint, else last; or a checkpoint file) and verify it.

    Args:
        run_dir: a run folder, or a checkpoint file.
        format: a name in EXPORTERS: "onnx", "torchscript", "pt2" (torch.export) or "safetensors".
        out_dir: the bundle folder; default `<run_dir>/export/<format>/`.
        data: verify on this image folder (same class folders) instead of the run's dataset.

    Returns:
        The bundle folder. Raises ExportVerificationError (nothing written) when the export does not match.
    """
    from ..inference import load  # torch: only to export, never to load an ONNX bundle

    EXPORTERS.get(format)  # an unknown format fails before the model is loaded
    source = Path(run_dir)
    predictor = load(source)
    run_folder = source if source.is_dir() else None
    out = Path(out_dir) if out_dir is not None else _default_out_dir(source, format)
    return export_predictor(predictor, format, out, run_dir=run_folder, data=data, source=source)


def _default_out_dir(source: Path, format: str) -> Path:
    """<run>/export/<format>/; for a checkpoint file, the run folder above its checkpoints/ folder."""
    if source.is_dir():
        return source / "export" / format
    folder = source.parent.parent if source.parent.name == "checkpoints" else source.parent
    return folder / "export" / format


def export_predictor(predictor: Predictor, format: str, out_dir: str | Path, *, run_dir: str | Path | None = None,
                     data: str | None = None, source: str | Path | None = None) -> Path:
    """Export a loaded model (visiontrain.load) into `out_dir`; see export_run.

    The predictor's model is copied and put in eval mode, fp32, on the CPU, whatever state the caller left it
    in; the caller's model is not changed.
    """
    from . import verify  # torch, as above
    exporter = EXPORTERS.get(format)
    model = verify.exportable(predictor)
    images, split = verify.verification_images(predictor, run_dir=run_dir, data=data)
    file_bytes = exporter.serialize(model, verify.example_input(images))
    with tempfile.TemporaryDirectory(prefix="visiontrain-export-") as staging:
        staged = Path(staging) / exporter.filename
        staged.write_bytes(file_bytes)
        meta = describe(predictor, format, exporter, run_dir=run_dir, source=source)
        meta["verification"] = verify.verify_export(exporter, staged, meta, model, images) | {"split": split}
    return write_bundle(Path(out_dir), exporter.filename, file_bytes, meta)


__all__ = [
    "EXPORTERS",
    "BundleError",
    "BundlePredictor",
    "ExportFormat",
    "export_predictor",
    "export_run",
    "load_bundle",
]
