"""How plain PyTorch loads a model file (TorchScript's torch.jit.load, torch.export.load): the pieces of an
ExportFormat that follow from the loading expression. Imports no torch until a method runs, so registering the
formats costs an ONNX user nothing."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np


@dataclass(frozen=True)
class TorchLoader:
    """How plain PyTorch loads a model file (TorchScript, torch.export): its `library` and an `expression` of {path}
    that gives a callable module. The ExportFormat pieces that follow from it are these methods: the check in a fresh
    `python -I` process, the runtime's name for model.json, and the model card's usage lines."""

    library: str  # e.g. "torch.jit"
    expression: str  # e.g. "torch.jit.load({path}, map_location='cpu')"

    def load_isolated(self, path: Path, meta: dict, batches: list[np.ndarray]) -> list[np.ndarray]:
        """Logits for each float32 batch, computed by the file loaded with `expression` in a fresh `python -I`."""
        from .verify import isolated_logits  # torch: a torch bundle needs it, an ONNX one must not

        return isolated_logits(self.expression.format(path="model_path"), path, batches, f"plain {self.library}.load")

    def runtime(self) -> str:
        import torch  # as above

        return f"{self.library} {torch.__version__} (separate python -I process)"

    def usage(self, meta: dict) -> str:
        return (f"import torch\nmodel = {self.expression.format(path=repr(meta['model_file']))}\n"
                "logits = model(torch.as_tensor(images, dtype=torch.float32))")
