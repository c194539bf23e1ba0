"""TorchScript: a traced module that `torch.jit.load` runs without visiontrain (C++ libtorch too).

PyTorch 2.x marks torch.jit as deprecated in favour of torch.export; it still loads everywhere libtorch does,
which is why it is offered. Verification loads it in a fresh `python -I` process that never imports
visiontrain, so a file that secretly needs visiontrain's classes fails there rather than at a user's.
"""
from __future__ import annotations

import io
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

from .formats import EXPORTERS, ExportFormat

if TYPE_CHECKING:
    import numpy as np
    import torch
    from torch import nn

    from .formats import Runner

_JIT_DEPRECATION = r"`torch\.jit\."  # FutureWarning on every trace/save/load since torch 2.9; not the user's to fix

# Runs in `python -I` (no PYTHONPATH, no user site, not the cwd): only torch is imported.
ISOLATED_SCRIPT = r"""
import sys, warnings
import torch
warnings.filterwarnings("ignore", category=FutureWarning)
model_path, inputs_path, outputs_path, threads = sys.argv[1:5]
torch.set_num_threads(int(threads))
model = torch.jit.load(model_path, map_location="cpu")
with torch.inference_mode():
    logits = [model(batch) for batch in torch.load(inputs_path, weights_only=True)]
assert "visiontrain" not in sys.modules, "loading the TorchScript file imported visiontrain"
torch.save(logits, outputs_path)
"""


def serialize(model: nn.Module, example: torch.Tensor) -> bytes:
    """The .ts file's bytes: `model` traced on `example` float32 (2, C, H, W); the batch size stays free."""
    import torch

    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_JIT_DEPRECATION, category=FutureWarning)
        torch.jit.save(torch.jit.trace(model, example), buffer)
    return buffer.getvalue()


def load(path: Path, meta: dict) -> Runner:
    import torch

    from .verify import torch_runner  # torch: a TorchScript bundle needs it, an ONNX one must not

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_JIT_DEPRECATION, category=FutureWarning)
        model = torch.jit.load(str(path), map_location="cpu")
    return torch_runner(model.eval())


def load_isolated(path: Path, meta: dict, batches: list[np.ndarray]) -> list[np.ndarray]:
    """Logits for each float32 batch, computed by `torch.jit.load(path)` in a fresh `python -I` process."""
    import torch

    from .verify import ExportVerificationError  # (the same)

    with tempfile.TemporaryDirectory(prefix="visiontrain-ts-") as folder:
        inputs, outputs = Path(folder) / "inputs.pt", Path(folder) / "outputs.pt"
        torch.save([torch.from_numpy(batch) for batch in batches], inputs)
        command = [sys.executable, "-I", "-c", ISOLATED_SCRIPT, str(path), str(inputs), str(outputs),
                   str(torch.get_num_threads())]
        result = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
        if result.returncode != 0:
            last = (result.stderr.strip().splitlines() or ["no output"])[-1]
            raise ExportVerificationError(f"{path.name} did not run under plain torch.jit.load in a fresh "
                                          f"`python -I` process ({last}); nothing was written")
        return [logits.numpy() for logits in torch.load(outputs, weights_only=True)]


def runtime() -> str:
    import torch

    return f"torch.jit {torch.__version__} (separate python -I process)"


EXPORTERS.register("torchscript")(ExportFormat(filename="model.ts", serialize=serialize, load=load, runtime=runtime,
                                               load_isolated=load_isolated))
