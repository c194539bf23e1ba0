"""TorchScript: a traced module that `torch.jit.load` runs without visiontrain (C++ libtorch too).

PyTorch 2.x marks torch.jit as deprecated in favour of torch.export; it still loads everywhere libtorch does,
which is why it is offered. Verification loads it in a fresh `python -I` process that never imports
visiontrain, so a file that secretly needs visiontrain's classes fails there rather than at a user's.
"""
from __future__ import annotations

import io
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

from .formats import EXPORTERS, ExportFormat
from .torchloader import TorchLoader

if TYPE_CHECKING:
    import torch
    from torch import nn

    from .formats import Runner

_JIT_DEPRECATION = r"`torch\.jit\."  # FutureWarning on every trace/save/load since torch 2.9; not the user's to fix


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


LOADER = TorchLoader("torch.jit", "torch.jit.load({path}, map_location='cpu')")
EXPORTERS.register("torchscript")(ExportFormat(filename="model.ts", serialize=serialize, load=load,
                                               runtime=LOADER.runtime, load_isolated=LOADER.load_isolated,
                                               usage=LOADER.usage))
