"""ONNX: torch's torch.export-based exporter (dynamo=True) with a dynamic batch dimension, run by onnxruntime.

The graph takes `images` float32 (N, C, H, W) in 0..255 and returns `logits` float32 (N, K); loading it needs
only onnxruntime and numpy (no torch, no visiontrain).
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from .formats import EXPORTERS, ExportFormat
from .bundle import BundleError

if TYPE_CHECKING:
    import torch
    from torch import nn

    from .formats import Runner

INPUT_NAME, OUTPUT_NAME = "images", "logits"


def serialize(model: nn.Module, example: torch.Tensor) -> bytes:
    """The ONNX file's bytes for `model` (float32 (N, C, H, W) 0..255 -> logits), N dynamic."""
    import torch

    batch = torch.export.Dim("batch")
    program = torch.onnx.export(model, (example,), input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                                dynamic_shapes={"images": {0: batch}}, dynamo=True, verbose=False)
    return program.model_proto.SerializeToString()


def load(path: Path, meta: dict) -> Runner:
    """An onnxruntime session on the CPU; refuses a file whose input shape differs from model.json's input_size."""
    import onnxruntime
    from onnxruntime.capi.onnxruntime_pybind11_state import Fail, InvalidGraph, InvalidProtobuf

    try:
        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except (Fail, InvalidGraph, InvalidProtobuf) as error:
        raise BundleError(f"{path} is not a loadable ONNX model ({type(error).__name__}); export the run "
                          "again") from None
    (model_input,) = session.get_inputs()
    if list(model_input.shape[1:]) != list(meta["input_size"]):
        raise BundleError(f"{path.parent / 'model.json'} gives input_size {meta['input_size']} but {path.name} takes "
                          f"{model_input.shape[1:]}; model.json was edited or belongs to another model: export again")
    name = model_input.name
    return lambda images: session.run(None, {name: images})[0]


def runtime() -> str:
    import onnxruntime

    return f"onnxruntime {onnxruntime.__version__} (CPUExecutionProvider)"


def usage(meta: dict) -> str:
    return ("import numpy as np, onnxruntime\n"
            f"session = onnxruntime.InferenceSession({meta['model_file']!r}, providers=['CPUExecutionProvider'])\n"
            f"logits = session.run(None, {{{INPUT_NAME!r}: images.astype(np.float32)}})[0]")


EXPORTERS.register("onnx")(ExportFormat(filename="model.onnx", serialize=serialize, load=load, runtime=runtime,
                                        usage=usage))
