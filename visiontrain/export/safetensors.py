"""safetensors: the classifier's weights only (no pickle, no code), with model.json saying how to rebuild it.

    from safetensors.torch import load_file
    model = visiontrain.models.create_model(meta["model"], num_classes=len(meta["classes"]),
                                            in_channels=meta["input_size"][0], image_size=meta["input_size"][1],
                                            width=meta["width"])
    model.load_state_dict(load_file("model.safetensors"))   # takes normalised images: (pixels/255 - mean) / std
    probabilities = (model(images) / meta["temperature"]).softmax(1)   # calibrated, as predict gives them

The tensor names are those of the checkpoint's `model` state dict; normalisation and the temperature are not in
the file (model.json holds both; BundlePredictor applies them).
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


def serialize(model: nn.Module, example: torch.Tensor) -> bytes:
    """The weights of model.classifier (an exportable() model) as safetensors bytes."""
    from safetensors.torch import save

    # cloned: safetensors refuses tensors that share storage, and views are not contiguous
    state = {name: tensor.detach().clone().contiguous() for name, tensor in model.classifier.state_dict().items()}
    return save(state, metadata={"format": "visiontrain classifier state dict", "described_by": "model.json"})


def load(path: Path, meta: dict) -> Runner:
    """Rebuild the model named in model.json, load the weights, and put the normalisation in front."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from ..models import create_model  # torch: imported when a safetensors bundle is loaded, not for ONNX
    from .verify import Normalized, torch_runner  # (the same)

    channels, size = meta["input_size"][0], meta["input_size"][-1]
    try:
        state = load_file(str(path))
    except SafetensorError as error:
        raise BundleError(f"{path} is not a readable safetensors file ({error}); export the run again") from None
    num_classes = len(meta["classes"])
    if "fc.weight" in state and state["fc.weight"].shape[0] != num_classes:
        raise BundleError(f"{path.parent / 'model.json'} lists {num_classes} classes but {path.name} outputs "
                          f"{state['fc.weight'].shape[0]} logits; model.json was edited or belongs to another model: "
                          "export again")
    classifier = create_model(meta["model"], num_classes=num_classes, in_channels=channels, image_size=size,
                              width=meta.get("width", 1.0))
    try:
        classifier.load_state_dict(state)
    except RuntimeError as error:
        raise BundleError(f"{path.name} does not fit model {meta['model']} as {path.parent / 'model.json'} describes "
                          f"it ({str(error).splitlines()[-1].strip()}); export the run again") from None
    return torch_runner(Normalized(classifier.eval(), meta["mean"], meta["std"], meta.get("temperature", 1.0)).eval())


def runtime() -> str:
    import safetensors
    import torch

    return f"safetensors {safetensors.__version__} weights in eager torch {torch.__version__}"


EXPORTERS.register("safetensors")(ExportFormat(filename="model.safetensors", serialize=serialize, load=load,
                                               runtime=runtime, normalizes_inside=False))
