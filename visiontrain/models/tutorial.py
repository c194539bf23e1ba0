"""The seed tutorials' networks, layer for layer, so a student recognises them (sized from the input)."""
from __future__ import annotations

from torch import nn

from .._registry import MODELS
from .base import Classifier


def _flat_size(channels: int, size: int, reductions) -> int:  # noqa: ANN001
    for reduce in reductions:
        size = reduce(size)
    if size < 1:
        raise ValueError(f"the input is too small for this network (a feature map shrinks to {size} pixels)")
    return channels * size * size


@MODELS.register("mlp")
def mlp(*, num_classes: int, in_channels: int, image_size: int, width: float = 1.0) -> Classifier:
    """flatten -> Linear(C*H*W, 128*width) -> ReLU -> Linear(., classes): the first network of every course."""
    hidden = max(1, round(128 * width))
    return Classifier(nn.Flatten(), nn.Sequential(nn.Linear(in_channels * image_size**2, hidden), nn.ReLU()),
                      nn.Linear(hidden, num_classes))


@MODELS.register("simple-cnn")
def simple_cnn(*, num_classes: int, in_channels: int, image_size: int, width: float = 1.0) -> Classifier:
    """Conv(in,16,3,p1)-ReLU-MaxPool2 -> Conv(16,32,3,p1)-ReLU-MaxPool2 -> Linear(32*7*7,128)-ReLU -> Linear(128,K)."""
    _check_width(width)
    features = nn.Sequential(
        nn.Conv2d(in_channels, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(),
    )
    flat = _flat_size(32, image_size, [lambda s: s // 2, lambda s: s // 2])  # 28 -> 14 -> 7
    return Classifier(features, nn.Sequential(nn.Linear(flat, 128), nn.ReLU()), nn.Linear(128, num_classes))


@MODELS.register("lenet")
def lenet(*, num_classes: int, in_channels: int, image_size: int, width: float = 1.0) -> Classifier:
    """Conv(in,6,5)-ReLU-MaxPool2 -> Conv(6,12,5)-ReLU-MaxPool2 -> Linear(12*4*4,120) -> Linear(120,60) -> Linear(60,K).

    As in the Fashion-MNIST tutorial: no activation between the linear layers.
    """
    _check_width(width)
    features = nn.Sequential(
        nn.Conv2d(in_channels, 6, 5), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 12, 5), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(),
    )
    flat = _flat_size(12, image_size, [lambda s: (s - 4) // 2, lambda s: (s - 4) // 2])  # 28 -> 12 -> 4
    return Classifier(features, nn.Sequential(nn.Linear(flat, 120), nn.Linear(120, 60)), nn.Linear(60, num_classes))


@MODELS.register("vgg-cifar")
def vgg_cifar(*, num_classes: int, in_channels: int, image_size: int, width: float = 1.0) -> Classifier:
    """Three blocks of two (3x3 conv + BN + ReLU) with 64, 128, 256 channels, each then MaxPool2;
    Dropout(0.5)-Linear(256*4*4,512)-ReLU-Dropout(0.5)-Linear(512,K)."""
    _check_width(width)
    layers: list[nn.Module] = []
    channels = in_channels
    for out in (64, 128, 256):
        for _ in range(2):
            layers += [nn.Conv2d(channels, out, 3, padding=1), nn.BatchNorm2d(out), nn.ReLU()]
            channels = out
        layers.append(nn.MaxPool2d(2))
    layers.append(nn.Flatten())
    flat = _flat_size(256, image_size, [lambda s: s // 2] * 3)  # 32 -> 16 -> 8 -> 4
    head = nn.Sequential(nn.Dropout(0.5), nn.Linear(flat, 512), nn.ReLU(), nn.Dropout(0.5))
    return Classifier(nn.Sequential(*layers), head, nn.Linear(512, num_classes))


def _check_width(width: float) -> None:
    if width != 1.0:
        raise ValueError("width: this tutorial network has fixed widths; leave width at 1.0")
