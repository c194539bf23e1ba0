"""timm architectures by name (`--model timm/<name>`): built offline, wrapped like torchvision's, trained end to end."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from conftest import run_cli
from visiontrain.models import MODELS, create_model

timm = pytest.importorskip("timm")

SMALL = "timm/mobilenetv3_small_050"  # 0.6 M parameters: the end-to-end run


@pytest.mark.parametrize("name, width", [("timm/resnet18", 512), ("timm/convnext_atto", 320)])
@pytest.mark.parametrize("in_channels", [1, 3])
def test_a_timm_backbone_gets_a_new_head_and_the_dataset_channels(name, width, in_channels):
    torch.manual_seed(0)
    model = create_model(name, num_classes=3, in_channels=in_channels, image_size=32)
    images = torch.randn(4, in_channels, 32, 32)
    logits = model(images)
    assert logits.shape == (4, 3) and torch.isfinite(logits).all()
    assert isinstance(model.fc, nn.Linear) and (model.fc.in_features, model.fc.out_features) == (width, 3)
    assert isinstance(model.features.get_classifier(), nn.Identity)  # timm's own head is now model.fc
    assert model.forward_features(images).shape == (4, width)
    stem = model.features.get_submodule(model.features.pretrained_cfg["first_conv"])
    assert stem.in_channels == in_channels
    logits.sum().backward()
    assert model.fc.weight.grad is not None and stem.weight.grad is not None
    model.reset_classifier(5)
    assert model(images).shape == (4, 5)


def test_the_head_stage_trains_only_the_head():
    """--finetune head/gradual: the backbone's parameters and BatchNorm statistics stay put, fc learns."""
    from visiontrain.config import build_config
    from visiontrain.engine.optim import build_optimizer

    torch.manual_seed(0)
    model = create_model("timm/resnet18", num_classes=3, in_channels=3, image_size=32)
    backbone = {k: v.clone() for k, v in model.features.state_dict().items()}
    head = model.fc.weight.detach().clone()
    optimizer = build_optimizer(model, build_config({"model": "timm/resnet18", "optimizer": "sgd", "lr": 0.1}))
    head_ids = set(map(id, model.fc.parameters()))
    for parameter in model.parameters():
        parameter.requires_grad_(id(parameter) in head_ids)
    model.train()
    model.features.eval()  # as the training loop does while the backbone is frozen
    for _ in range(2):
        loss = nn.functional.cross_entropy(model(torch.randn(8, 3, 32, 32)), torch.randint(0, 3, (8,)))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert all(torch.equal(backbone[k], v) for k, v in model.features.state_dict().items())
    assert not torch.equal(head, model.fc.weight)


def test_fixed_size_and_two_head_networks_build_for_small_images():
    """DeiT (distilled): built for the data's 32 px instead of its 224, and both of its heads become model.fc."""
    model = create_model("timm/deit_tiny_distilled_patch16_224", num_classes=3, in_channels=1, image_size=32).eval()
    with torch.no_grad():
        assert model(torch.randn(2, 1, 32, 32)).shape == (2, 3)
    assert isinstance(model.features.head, nn.Identity) and isinstance(model.features.head_dist, nn.Identity)


def test_grad_cam_explains_the_last_convolution_of_a_timm_backbone():
    from visiontrain.explain import target_layer

    model = create_model("timm/resnet18", num_classes=3, in_channels=3, image_size=32)
    assert target_layer(model, (3, 32, 32))[0] == "features.layer4.1.conv2"


def test_an_unknown_timm_name_says_which_names_are_close():
    from visiontrain.errors import UnknownNameError

    with pytest.raises(UnknownNameError) as error:
        MODELS.get("timm/convnext_atoo")
    message = str(error.value)
    assert "did you mean 'timm/convnext_atto'" in message and "visiontrain models --timm" in message
    assert "\n" not in message and len(message) < 300  # one sentence, not timm's 1,400 names
    assert "timm/convnext_atoo" not in MODELS and "timm/convnext_atto" in MODELS
    assert "'timm/convnext_atto'" in MODELS.unknown_message("convnext_atto")  # a bare timm name: the prefix


def test_the_cli_names_the_unknown_timm_model_and_lists_timm_on_request(capsys):
    from visiontrain.cli import main

    assert main(["train", "--model", "timm/resnet81", "--dataset", "mnist"]) == 2
    assert "did you mean 'timm/resnet18'" in capsys.readouterr().err
    assert main(["models"]) == 0
    listing = capsys.readouterr().out
    assert "timm/<name>" in listing and "--timm PATTERN" in listing and "timm/resnet18" not in listing
    assert main(["models", "--timm", "convnext_at*"]) == 0
    assert "timm/convnext_atto" in capsys.readouterr().out.split()


def test_pretrained_with_a_timm_name_and_no_network_says_to_pass_weights(tmp_path, monkeypatch):
    """(Downloads by name, once, and offline use: tests/test_pretrained_by_name.py; conftest closes the Hub here.)"""
    from huggingface_hub import constants

    from visiontrain.errors import CheckpointError
    from visiontrain.models.pretrained import pretrained_model

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    with pytest.raises(CheckpointError, match=r"could not be downloaded.*--weights FILE with --pretrained"):
        pretrained_model("timm/resnet18", num_classes=3, in_channels=3, image_size=32)


def write_colour_folder(root, per_class: int = 8, test: int = 4):
    """root/{train,test}/<colour>/*.png: 3 classes of 32x32 RGB noise around a red, green or blue mean."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for index, colour in enumerate(["red", "green", "blue"]):
        for split, count in (("train", per_class), ("test", test)):
            folder = root / split / colour
            folder.mkdir(parents=True)
            for i in range(count):
                pixels = rng.normal(60, 20, (32, 32, 3))
                pixels[..., index] += 120
                Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(folder / f"{i}.png")
    return root


def test_train_a_timm_model_from_a_weights_file_head_only(tmp_path):
    """`visiontrain train --model timm/... --weights FILE --finetune head`: the backbone is the file's, unchanged."""
    import visiontrain

    data = write_colour_folder(tmp_path / "colours")
    source = timm.create_model(SMALL.removeprefix("timm/"), pretrained=False, num_classes=1000)
    torch.save(source.state_dict(), tmp_path / "weights.pth")
    result = run_cli("train", "--dataset", data, "--model", SMALL, "--weights", tmp_path / "weights.pth",
                     "--finetune", "head", "--epochs", "1", "--batch-size", "8", "--image-size", "32", "--threads",
                     "1", "--progress", "none", "--no-report", "--device", "cpu", "--runs-dir", tmp_path / "runs",
                     "--name", "timm-run", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    run = tmp_path / "runs" / "timm-run"
    assert f"model: {SMALL}" in (run / "config.yaml").read_text()
    state = torch.load(run / "checkpoints" / "last.pt", weights_only=True)["model"]
    expected = {f"features.{k}": v for k, v in source.state_dict().items() if not k.startswith("classifier.")}
    assert all(torch.equal(state[k], v) for k, v in expected.items())  # parameters and BatchNorm statistics
    assert state["fc.weight"].shape == (3, 1024)
    predictor = visiontrain.load(run)
    assert predictor.classes == ["blue", "green", "red"]


def test_pretrained_weights_from_a_file_bring_the_pretraining_preprocessing_and_fit_gray_data(tmp_path, fashion_folder):
    """--pretrained --weights FILE: timm's mean/std for the architecture (averaged for 1 channel), and the file's
    RGB stem filters summed for grayscale images, so nothing but the head is left out."""
    source = timm.create_model("resnet18", pretrained=False, num_classes=1000)
    torch.save(source.state_dict(), tmp_path / "resnet18.pth")
    result = run_cli("train", "--dataset", fashion_folder, "--model", "timm/resnet18", "--pretrained", "--weights",
                     tmp_path / "resnet18.pth", "--finetune", "head", "--epochs", "1", "--image-size", "32",
                     "--threads", "1", "--progress", "none", "--no-report", "--runs-dir", tmp_path, "--name", "gray")
    assert result.returncode == 0, result.stderr
    assert "did not fit this model: fc.weight, fc.bias" in result.stderr  # the stem fitted, only the head is new
    checkpoint = torch.load(tmp_path / "gray" / "checkpoints" / "last.pt", weights_only=True)
    cfg = timm.models.get_pretrained_cfg("resnet18")
    assert checkpoint["mean"] == pytest.approx([sum(cfg.mean) / 3]) and checkpoint["std"] == pytest.approx([sum(cfg.std) / 3])
    assert torch.allclose(checkpoint["model"]["features.conv1.weight"], source.conv1.weight.sum(1, keepdim=True))


def test_a_model_that_cannot_be_built_leaves_no_empty_run_folder(tmp_path, fashion_folder):
    result = run_cli("train", "--dataset", fashion_folder, "--model", "timm/resnet18", "--pretrained", "--threads", "1",
                     "--runs-dir", tmp_path / "runs", "--progress", "none")
    assert result.returncode == 2 and "--weights FILE with --pretrained" in result.stderr  # conftest: no network
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())
