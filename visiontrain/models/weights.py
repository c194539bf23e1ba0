"""Weights files a run starts from (--weights, --pretrained): plain state dicts, loaded weights-only, fitted to a model.

Below the engine: the models' pretrained sources load files too, and a visiontrain checkpoint given as --weights is
unwrapped to its model tensors.
"""
from __future__ import annotations

import pickle
import zipfile
from pathlib import Path

import torch

from ..config import CHECKPOINT_KIND
from ..errors import CheckpointError


def load_state_dict_file(path: str | Path) -> dict[str, torch.Tensor]:
    """A plain state dict (e.g. torchvision/timm weights) for --weights, weights-only; unwraps 'state_dict'/'model'."""
    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise CheckpointError(f"{path} is not a safe weights file (contains Python objects); it was not loaded and "
                              "nothing in it was run") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError) as error:
        raise CheckpointError(f"{path} is truncated or corrupt ({type(error).__name__})") from None
    if isinstance(state, dict) and state.get("kind") == CHECKPOINT_KIND:
        state = state["model"]
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path} does not hold a state dict of tensors")
    return state


def fitting_tensors(state: dict[str, torch.Tensor], own: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The tensors of a weights file that fit a model, keyed as the model names them.

    A torchvision or timm state dict names the network's own layers ("conv1.weight"); behind visiontrain's
    Classifier interface that network is `features` ("features.conv1.weight"). A new head's tensors (another
    number of classes) do not fit and are left out. RGB filters (O, 3, k, k) for a 1-channel first convolution
    are summed over colour, as adapt_input_channels does: a gray image then gives what its RGB copy would.
    """
    usable = {}
    for key, value in state.items():
        name = next((n for n in (key, f"features.{key}") if n in own), None)
        if name is None:
            continue
        if value.ndim == 4 and value.shape[1] == 3 and own[name].shape == (value.shape[0], 1, *value.shape[2:]):
            value = value.sum(1, keepdim=True)
        if own[name].shape == value.shape:
            usable[name] = value
    return usable
