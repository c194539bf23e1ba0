"""torch.export (`--format pt2`): an ExportedProgram saved with `torch.export.save`, loaded with `torch.export.load`.

torch.export is TorchScript's successor in PyTorch 2.x (torch.jit is deprecated): one whole-graph capture of
ATen operators, the input the AOTInductor compiler, ExecuTorch (mobile) and the ONNX exporter build on. The
program takes `images` float32 (N, C, H, W) in 0..255 (normalisation inside the graph, as ONNX and TorchScript)
with N dynamic, and returns logits float32 (N, K):

    import torch
    model = torch.export.load("model.pt2").module()
    logits = model(images)                     # float32 (N, C, H, W), pixel values 0..255

The registry name is `pt2`, the file's suffix (as `onnx` is): `visiontrain export RUN --format export` would
read as a typo. Verification loads the file in a fresh `python -I` process that never imports visiontrain.
Like torch.jit.load, torch.export.load unpickles: load .pt2 files only from sources you trust.
"""
from __future__ import annotations

import io
import logging
import zipfile
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

from .bundle import BundleError
from .formats import EXPORTERS, ExportFormat
from .torchloader import TorchLoader

if TYPE_CHECKING:
    import torch
    from torch import nn

    from .formats import Runner

INPUT_NAME = "images"  # verify.Normalized.forward's argument: the name dynamic_shapes refers to


def serialize(model: nn.Module, example: torch.Tensor) -> bytes:
    """The .pt2 file's bytes: `model` captured by torch.export on `example` float32 (2, C, H, W), N dynamic."""
    import torch

    from .verify import ExportVerificationError  # torch: a pt2 bundle needs it, an ONNX one must not

    try:
        program = torch.export.export(model, (example,), dynamic_shapes={INPUT_NAME: {0: torch.export.Dim("batch")}})
    except Exception as error:  # noqa: BLE001 - torch.export's tracer raises many types (UserError, Unsupported...)
        first = (str(error).strip().splitlines() or [""])[0][:200]
        raise ExportVerificationError(f"torch.export cannot capture this model ({type(error).__name__}: {first}); "
                                      "export it with --format onnx or --format torchscript instead") from None
    buffer = io.BytesIO()
    torch.export.save(program, buffer)
    return buffer.getvalue()


@contextmanager
def _quiet_torch_export() -> Iterator[None]:
    """torch.export.load logs a traceback before it raises for a damaged file; the BundleError says it once."""
    logger = logging.getLogger("torch.export")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def load(path: Path, meta: dict) -> Runner:
    """The program's module on the CPU; refuses a damaged file or one whose input shape differs from model.json's."""
    import torch

    from .verify import torch_runner  # torch, as above

    try:
        with _quiet_torch_export():
            program = torch.export.load(str(path))
    except (zipfile.BadZipFile, RuntimeError, KeyError, ValueError) as error:
        raise BundleError(f"{path} is not a loadable torch.export program ({type(error).__name__}); export the run "
                          "again") from None
    shape = input_shape(program)
    if shape != list(meta["input_size"]):
        raise BundleError(f"{path.parent / 'model.json'} gives input_size {meta['input_size']} but {path.name} takes "
                          f"{shape}; model.json was edited or belongs to another model: export again")
    return torch_runner(program.module())  # captured in eval mode: the module has no train()/eval() to call


def input_shape(program: torch.export.ExportedProgram) -> list[int | str]:
    """[C, H, W] of the program's one user input (a symbolic size as its text)."""
    names = program.graph_signature.user_inputs
    node = next(n for n in program.graph.nodes if n.op == "placeholder" and n.name in names)
    return [int(size) if str(size).isdigit() else str(size) for size in node.meta["val"].shape[1:]]


LOADER = TorchLoader("torch.export", "torch.export.load({path}).module()")
EXPORTERS.register("pt2")(ExportFormat(filename="model.pt2", serialize=serialize, load=load, runtime=LOADER.runtime,
                                       load_isolated=LOADER.load_isolated, usage=LOADER.usage))
