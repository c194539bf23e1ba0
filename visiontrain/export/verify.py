"""What gets exported, and the proof that the exported file computes what the eager model computes (R25).

`exportable()` fixes what every format exports: a copy of the model in eval mode, fp32, on the CPU, behind
the training pipeline's normalisation, so the file takes float32 pixels in 0..255. `verify_export()` loads the
written file back (onnxruntime; TorchScript and pt2 in a separate `python -I` process) and compares its logits with the
eager model's on up to 64 real images of the run's dataset, at batch sizes 1, 7 and all of them (which proves
the batch dimension is dynamic): max |diff| <= 1e-4 and 100% top-1 agreement, or ExportVerificationError.
"""
from __future__ import annotations

import copy
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from ..config import build_config, load_yaml
from ..data import load_dataset_of
from ..data.memory import PYTHON_PREFIX, read_sample
from ..engine.loop import Normalizer, predict_logits
from ..engine.precision import Precision
from ..errors import ConfigError, DataError, VisiontrainError

if TYPE_CHECKING:
    from ..inference import Predictor
    from .formats import ExportFormat, Runner

MAX_ABS_DIFF = 1e-4  # logits; fp32 kernels of different runtimes differ by ~1e-6 on these models
MAX_IMAGES = 64
BATCH_SIZES = (1, 7)  # besides all the images at once: odd sizes catch a batch dimension frozen at export


class ExportVerificationError(VisiontrainError):
    """The exported model does not reproduce the eager model (or could not be checked); nothing was written."""


class Normalized(nn.Module):
    """float32 pixels (N, C, H, W) in 0..255 -> logits float32 (N, K): normalisation, the classifier, then the
    division by the run's temperature (calibrated logits, as Predictor.logits gives them; left out when T = 1).

    The same two ops as engine.loop.Normalizer (images * 1/(255 std) + (-mean/std)), so the exported graph
    rounds exactly as training and evaluation did.
    """

    def __init__(self, classifier: nn.Module, mean: list[float], std: list[float], temperature: float = 1.0):
        super().__init__()
        std_tensor = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)
        self.classifier, self.temperature = classifier, float(temperature)
        self.register_buffer("scale", 1 / (255 * std_tensor))
        self.register_buffer("shift", -torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1) / std_tensor)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        logits = self.classifier(images * self.scale + self.shift)  # (N, C, H, W) normalised -> (N, K)
        return logits if self.temperature == 1.0 else logits / self.temperature  # a constant in the graph


def exportable(predictor: Predictor) -> Normalized:
    """A copy of the predictor's model, eval mode (also if the caller left it in train()), fp32, CPU, with the
    run's temperature."""
    classifier = copy.deepcopy(predictor.model).float().cpu().eval().to(memory_format=torch.contiguous_format)
    classifier.requires_grad_(False)
    return Normalized(classifier, predictor.mean, predictor.std, predictor.temperature).eval()


def torch_runner(model: nn.Module) -> Runner:
    """Wrap a torch module taking float32 (N, C, H, W) 0..255 as a numpy Runner."""

    @torch.inference_mode()
    def run(images: np.ndarray) -> np.ndarray:
        return model(torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32))).float().numpy()

    return run


def example_input(images: torch.Tensor) -> torch.Tensor:
    """float32 (2, C, H, W) from uint8 images: two real images (a batch of 1 would fix the batch size at 1)."""
    return images[[0, -1]].float()


def verification_images(predictor: Predictor, *, run_dir: str | Path | None = None,
                        data: str | None = None) -> tuple[torch.Tensor, str]:
    """Up to 64 real images, uint8 (n, C, H, W), of the run's dataset (test split, else val, else train).

    The run's config.yaml names the dataset (the checkpoint's copy of the config when only a checkpoint file is
    given); `data` replaces it with an image folder that has the same class folders.
    """
    config_path = Path(run_dir) / "config.yaml" if run_dir is not None else None
    values = dict(load_yaml(config_path) if config_path is not None and config_path.is_file() else predictor.config)
    if data is not None:
        values |= {"dataset": str(data), "data_dir": None, "val_fraction": 0.0, "split_file": None}
    elif run_dir is not None and (Path(run_dir) / "split.csv").is_file():  # the run's own split (data/splitfile.py)
        values["split_file"] = str(Path(run_dir) / "split.csv")

    channels, size = predictor.input_size[0], predictor.input_size[-1]
    sample = Path(run_dir) / "samples.pt" if run_dir is not None else None
    if data is None and str(values.get("dataset", "")).startswith(PYTHON_PREFIX) and sample and sample.is_file():
        kept = read_sample(sample)  # data passed from Python cannot be read again: the run kept these images
        return kept["images"], kept["split"]
    try:
        config = build_config(values | {"image_size": size, "channels": channels}, apply_preset=False)
        dataset = load_dataset_of(config, verbose=False)
    except (ConfigError, DataError) as error:
        raise ExportVerificationError(f"cannot verify the export on real images ({error}); export where the run's "
                                      "dataset is, or pass an image folder with the same classes as --data") from None
    split, tensors = next((name, t) for name, t in (("test", dataset.test), ("val", dataset.val),
                                                    ("train", dataset.train)) if t is not None)
    if tensors.classes != predictor.classes:
        raise ExportVerificationError(f"the classes of {config.dataset} differ from the model's "
                                      f"({', '.join(predictor.classes[:5])}...); verify on data with the same classes")
    # evenly spaced: folder datasets are sorted by class, so the first 64 images would be one class
    indices = torch.linspace(0, len(tensors) - 1, min(MAX_IMAGES, len(tensors))).round().long()
    return tensors.images[indices], split


def verify_export(exporter: ExportFormat, path: Path, meta: dict[str, Any], model: Normalized,
                  images: torch.Tensor) -> dict[str, Any]:
    """Run the file at `path` on uint8 `images` (n, C, H, W) and compare with the eager `model`.

    Returns the numbers for model.json: images, batch_sizes, max_abs_diff, top1_agreement, tolerance, runtime.
    """
    reference = reference_logits(model, meta, images)  # (n, K) float32
    pixels = images.numpy().astype(np.float32)  # (n, C, H, W) 0..255, what the exported file takes
    batches = [pixels[:size] for size in BATCH_SIZES if size < len(pixels)] + [pixels]
    if exporter.load_isolated is not None:
        outputs = exporter.load_isolated(path, meta, batches)
    else:
        runner = exporter.load(path, meta)
        outputs = [runner(batch) for batch in batches]
    for batch, logits in zip(batches, outputs):
        if logits.shape != (len(batch), reference.shape[1]):
            raise ExportVerificationError(f"the {meta['format']} export returned logits of shape {logits.shape} for "
                                          f"a batch of {len(batch)}, expected {(len(batch), reference.shape[1])}")
    max_abs_diff = max(float(np.abs(out - reference[:len(out)]).max()) for out in outputs)
    agreement = min(float((out.argmax(1) == reference[:len(out)].argmax(1)).mean()) for out in outputs)
    result = {"images": len(pixels), "batch_sizes": [len(b) for b in batches], "max_abs_diff": max_abs_diff,
              "top1_agreement": agreement, "tolerance": MAX_ABS_DIFF, "runtime": exporter.runtime(),
              "reference": "eager PyTorch, eval mode, fp32, CPU", "threads": torch.get_num_threads()}
    if max_abs_diff > MAX_ABS_DIFF or agreement < 1.0:
        raise ExportVerificationError(
            f"the {meta['format']} export of {meta['model']} differs from the eager model on {len(pixels)} real images "
            f"(max abs logit diff {max_abs_diff:.3g}, allowed {MAX_ABS_DIFF:g}; top-1 agreement {agreement:.1%}, "
            f"required 100%), so nothing was written; try another format and report the versions "
            f"(torch {torch.__version__}, {exporter.runtime()})")
    return result


def reference_logits(model: Normalized, meta: dict[str, Any], images: torch.Tensor) -> np.ndarray:
    """The reference: the training pipeline's own Normalizer and predict_logits (eval mode, fp32, CPU, no TTA),
    divided by the temperature as Predictor.logits divides them."""
    normalize = Normalizer(meta["mean"], meta["std"], Precision(torch.device("cpu"), None, False, False))
    logits = predict_logits(model.classifier, images, normalize, tta=False)
    return (logits if model.temperature == 1.0 else logits / model.temperature).float().numpy()


# Runs in `python -I` (no PYTHONPATH, no user site, not the cwd): only torch is imported. {load} is the format's
# loader, an expression of `model_path` that gives a callable module (torch.jit.load, torch.export.load).
ISOLATED_SCRIPT = r"""
import sys, warnings
import torch
warnings.filterwarnings("ignore", category=FutureWarning)
model_path, inputs_path, outputs_path, threads = sys.argv[1:5]
torch.set_num_threads(int(threads))
model = {load}
with torch.inference_mode():
    logits = [model(batch) for batch in torch.load(inputs_path, weights_only=True)]
assert "visiontrain" not in sys.modules, "loading the model file imported visiontrain"
torch.save(logits, outputs_path)
"""


def isolated_logits(load: str, path: Path, batches: list[np.ndarray], what: str) -> list[np.ndarray]:
    """Logits for each float32 batch, computed by the model file at `path` loaded with the expression `load` (of
    `model_path`) in a fresh `python -I` process that never imports visiontrain; `what` names the loader in the
    error (e.g. "plain torch.jit.load")."""
    with tempfile.TemporaryDirectory(prefix="visiontrain-isolated-") as folder:
        inputs, outputs = Path(folder) / "inputs.pt", Path(folder) / "outputs.pt"
        torch.save([torch.from_numpy(batch) for batch in batches], inputs)
        command = [sys.executable, "-I", "-c", ISOLATED_SCRIPT.replace("{load}", load), str(path), str(inputs),
                   str(outputs), str(torch.get_num_threads())]
        result = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
        if result.returncode != 0:
            last = (result.stderr.strip().splitlines() or ["no output"])[-1]
            raise ExportVerificationError(f"{path.name} did not run under {what} in a fresh `python -I` process "
                                          f"({last}); nothing was written")
        return [logits.numpy() for logits in torch.load(outputs, weights_only=True)]
