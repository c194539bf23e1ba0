"""Every registered model (a sample of torchvision's): shapes, gradients, the common interface."""
from __future__ import annotations

import pytest
import torch

from helpers import TORCHVISION_SAMPLE, model_param, own_models, package_models
from visiontrain.models import MODELS, create_model

PACKAGE = package_models()
DOCUMENTED = {"mlp", "simple-cnn", "lenet", "vgg-cifar", "fastnet", "fastnet-s1", "fastnet-wide"}  # README's own


def test_the_registry_holds_the_documented_models_and_torchvision():
    """The parametrised tests (here, test_summary.py, test_export.py) read the models from the registry; if a
    documented model stopped being registered, or were registered so that the helpers no longer see it as the
    package's own, it would silently drop out of them: this names it."""
    names = MODELS.names()
    assert DOCUMENTED <= set(own_models()) <= set(PACKAGE), (DOCUMENTED - set(own_models()))
    assert "efficientnet_lite0" in set(PACKAGE) - set(own_models())  # timm's architecture, registered by us
    assert set(TORCHVISION_SAMPLE) <= set(names) - set(PACKAGE) and "resnet50" in names and len(names) > 50


@pytest.mark.parametrize("name", [model_param(name) for name in PACKAGE + TORCHVISION_SAMPLE])
@pytest.mark.parametrize("in_channels, size", [(1, 28), (3, 32)])
def test_forward_backward_head_reset(name, in_channels, size):
    torch.manual_seed(0)
    model = create_model(name, num_classes=10, in_channels=in_channels, image_size=size)
    images = torch.randn(4, in_channels, size, size)
    logits = model(images)
    assert logits.shape == (4, 10) and torch.isfinite(logits).all()
    logits.sum().backward()
    assert model.fc.weight.grad is not None and model.fc.weight.grad.abs().sum() > 0
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for n, p in model.named_parameters()
               if not n.startswith("fc."))  # the gradient reaches the layers below the head
    features = model.forward_head(model.forward_features(images), pre_logits=True)
    assert features.shape == (4, model.fc.in_features)
    model.eval()  # the interface, without dropout's randomness: logits = head(features(images)), fc last
    with torch.no_grad():
        assert torch.allclose(model.forward_head(model.forward_features(images)), model(images), atol=1e-5)
    model.reset_classifier(3)
    assert model(images).shape == (4, 3) and model.fc.out_features == 3


def count(model):
    return sum(p.numel() for p in model.parameters())


def test_seed_networks_have_the_tutorial_parameter_counts():
    # hand-computed from the tutorial's layers (weights + biases), 28x28 grayscale, 10 classes
    mlp = 784 * 128 + 128 + 128 * 10 + 10
    simple = (1 * 16 * 9 + 16) + (16 * 32 * 9 + 32) + (32 * 7 * 7 * 128 + 128) + (128 * 10 + 10)
    lenet = (1 * 6 * 25 + 6) + (6 * 12 * 25 + 12) + (12 * 4 * 4 * 120 + 120) + (120 * 60 + 60) + (60 * 10 + 10)
    assert count(create_model("mlp", num_classes=10, in_channels=1, image_size=28)) == mlp == 101_770
    assert count(create_model("simple-cnn", num_classes=10, in_channels=1, image_size=28)) == simple == 206_922
    assert count(create_model("lenet", num_classes=10, in_channels=1, image_size=28)) == lenet == 32_998
    convs = sum(i * o * 9 + o + 2 * o for i, o in [(3, 64), (64, 64), (64, 128), (128, 128), (128, 256), (256, 256)])
    vgg = convs + 256 * 4 * 4 * 512 + 512 + 512 * 10 + 10
    assert count(create_model("vgg-cifar", num_classes=10, in_channels=3, image_size=32)) == vgg == 3_249_994


def test_grayscale_into_an_rgb_backbone_sums_the_filters():
    from torchvision.models import resnet18

    from visiontrain.models.zoo import adapt_input_channels

    rgb = resnet18()
    gray = resnet18()
    gray.load_state_dict(rgb.state_dict())
    adapt_input_channels(gray, 1)
    image = torch.rand(1, 1, 32, 32)
    with torch.no_grad():
        assert torch.allclose(gray.conv1(image), rgb.conv1(image.expand(-1, 3, -1, -1)), atol=1e-5)


def test_whitening_layer_decorrelates_patches():
    from visiontrain.models.fast import Whitening

    torch.manual_seed(0)
    images = torch.randn(500, 1, 12, 12).cumsum(-1)  # strongly correlated neighbouring pixels
    layer = Whitening(1)
    layer.fit(images)
    with torch.no_grad():
        out = torch.nn.functional.conv2d(images, layer.weight[:4])  # the 4 whitened components
    flat = out.permute(1, 0, 2, 3).reshape(4, -1)
    covariance = torch.cov(flat)
    assert torch.allclose(covariance, torch.eye(4), atol=0.05)


def test_duplicate_registration_is_refused():
    with pytest.raises(ValueError, match="already registered"):
        MODELS.register("lenet")(lambda **_: None)


@pytest.mark.parametrize("in_channels", [1, 3])
def test_squeezenet_whose_classifier_is_a_1x1_convolution_builds(in_channels):
    """torchvision's squeezenet has no Linear layer: its final 1x1 convolution becomes fc (5 classes here)."""
    model = create_model("squeezenet1_0", num_classes=5, in_channels=in_channels, image_size=64)
    images = torch.randn(2, in_channels, 64, 64)
    logits = model(images)
    assert logits.shape == (2, 5) and torch.isfinite(logits).all()
    assert isinstance(model.fc, torch.nn.Linear) and (model.fc.in_features, model.fc.out_features) == (512, 5)
    logits.sum().backward()
    assert model.fc.weight.grad is not None
    model.reset_classifier(3)
    assert model(images).shape == (2, 3)


def test_a_1x1_convolution_classifier_becomes_the_equal_linear_layer():
    """Pooling then fc = torchvision's final 1x1 convolution then pooling (its ReLU on the class maps left out)."""
    import copy

    import torchvision

    from visiontrain.models.zoo import Wrapped

    torch.manual_seed(0)
    original = torchvision.models.squeezenet1_1(num_classes=5).eval()
    wrapped = Wrapped(copy.deepcopy(original)).eval()
    images = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        expected = original.classifier[1](original.features(images)).mean((2, 3))
        assert torch.allclose(wrapped(images), expected, atol=1e-5)
    assert torch.equal(wrapped.fc.weight, original.classifier[1].weight.flatten(1))
