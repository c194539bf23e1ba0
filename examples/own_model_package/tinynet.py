"""A plain PyTorch CNN, with nothing of visiontrain in it: what a model of your own looks like."""
from torch import nn


def tiny_cnn(num_classes: int, in_channels: int = 1, image_size: int = 28) -> nn.Sequential:
    """Two 3x3 convolutions with max pooling, then a linear classifier (a plain nn.Sequential)."""
    side = image_size // 4  # two 2x2 poolings
    return nn.Sequential(
        nn.Conv2d(in_channels, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(32 * side * side, num_classes),
    )
