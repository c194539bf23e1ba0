"""--pretrained by name, as timm, torchvision, Ultralytics and fastai do it: torchvision's weights enum (torch's hub
cache, its hash check) and timm's Hugging Face Hub weights (the HF cache), downloaded once and read offline after.

Every download here comes from weightserver.WeightServer on 127.0.0.1, serving random weights of the real
architecture saved by the test: torchvision's entry has its URL pointed at the server, timm reaches it through
HF_ENDPOINT, the Hub's own setting.
"""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torchvision

from conftest import run_cli, run_main
from weightserver import WeightServer, closed_port_url, hashed_name

from visiontrain.models.pretrained import IMAGENET_MEAN, IMAGENET_STD, pretraining_preprocessing

QUICK = ["--epochs", "1", "--image-size", "32", "--finetune", "head", "--batch-size", "64", "--threads", "1",
         "--progress", "none", "--no-report", "--device", "cpu"]


def _point_resnet18_at(monkeypatch, url: str) -> None:
    """torchvision's ResNet18 DEFAULT weights, downloaded from `url` instead of download.pytorch.org."""
    weights = torchvision.models.get_model_weights("resnet18").DEFAULT
    monkeypatch.setattr(weights.value, "url", url)


def _torch_cache() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints"


def test_torchvision_weights_by_name_are_downloaded_once_then_read_offline(tmp_path, monkeypatch, capsys,
                                                                          digits_small):
    source = torchvision.models.resnet18(num_classes=1000)
    file = tmp_path / "served.pth"
    torch.save(source.state_dict(), file)
    name = hashed_name("resnet18", file)  # as torchvision names its files: torch.hub checks the hash prefix
    with WeightServer({f"/{name}": file}) as server:
        _point_resnet18_at(monkeypatch, f"{server.url}/{name}")
        first = run_main(capsys, "train", "--dataset", digits_small, "--model", "resnet18", "--pretrained", *QUICK,
                         "--runs-dir", tmp_path / "runs", "--name", "first")
        assert first.returncode == 0, first.stderr
        assert server.downloads() == [f"/{name}"]
        assert "downloading the pretrained weights of resnet18" in first.stderr
    assert (_torch_cache() / name).read_bytes() == file.read_bytes()  # torch's own cache, TORCH_HOME

    # the server is gone (no network): the cached file is used, nothing is asked for
    second = run_main(capsys, "train", "--dataset", digits_small, "--model", "resnet18", "--pretrained", *QUICK,
                      "--runs-dir", tmp_path / "runs", "--name", "second")
    assert second.returncode == 0, second.stderr
    assert "downloading" not in second.stderr
    for run in ("first", "second"):
        checkpoint = torch.load(tmp_path / "runs" / run / "checkpoints" / "last.pt", weights_only=True)
        state = checkpoint["model"]
        # the backbone is the served file's (head fine-tuning leaves it as loaded); the gray stem sums RGB filters
        assert torch.equal(state["features.layer3.1.conv2.weight"], source.layer3[1].conv2.weight)
        assert torch.equal(state["features.layer4.1.bn2.running_var"], source.layer4[1].bn2.running_var)
        assert torch.allclose(state["features.conv1.weight"], source.conv1.weight.sum(1, keepdim=True))
        assert state["fc.weight"].shape == (10, 512)  # a new head for the 10 digits
        # the pretraining's preprocessing travels with the run (ImageNet's, averaged for the 1-channel digits)
        assert checkpoint["mean"] == pytest.approx([sum(IMAGENET_MEAN) / 3])
        assert checkpoint["std"] == pytest.approx([sum(IMAGENET_STD) / 3])


def test_no_network_and_no_cached_file_says_what_to_download_and_where(tmp_path, monkeypatch, capsys, digits_small):
    url = f"{closed_port_url()}/resnet18-f37072fd.pth"
    _point_resnet18_at(monkeypatch, url)
    result = run_main(capsys, "train", "--dataset", digits_small, "--model", "resnet18", "--pretrained", *QUICK,
                      "--runs-dir", tmp_path / "runs")
    assert result.returncode == 2
    message = result.stderr.strip().splitlines()[-1]
    assert message.startswith("visiontrain: error: --pretrained resnet18: its weights are not in torch's cache")
    assert f"download {url} where there is network and put it at {_torch_cache() / 'resnet18-f37072fd.pth'}" in message
    assert "--weights FILE" in message
    assert not (tmp_path / "runs").exists()  # no empty run folder


def test_a_download_that_fails_its_hash_is_not_kept(tmp_path, monkeypatch):
    from visiontrain.errors import CheckpointError
    from visiontrain.models.pretrained import pretrained_model

    file = tmp_path / "served.pth"
    torch.save(torchvision.models.resnet18(num_classes=1000).state_dict(), file)
    with WeightServer({"/resnet18-00000000.pth": file}) as server:  # the name promises another file
        _point_resnet18_at(monkeypatch, f"{server.url}/resnet18-00000000.pth")
        with pytest.raises(CheckpointError, match="fails its checksum.*nothing was kept"):
            pretrained_model("resnet18", num_classes=2, in_channels=3, image_size=32)
    assert not any(_torch_cache().iterdir())


def test_the_pretraining_preprocessing_is_the_weights_own():
    assert pretraining_preprocessing("resnet18") == (224, IMAGENET_MEAN, IMAGENET_STD)
    assert pretraining_preprocessing("inception_v3") == (299, [0.5] * 3, [0.5] * 3)  # transform_input's scaling
    assert pretraining_preprocessing("efficientnet_b3")[0] == 300  # torchvision's crop size for these weights
    assert pretraining_preprocessing("fastnet") is None  # visiontrain's own networks have no pretraining


timm = pytest.importorskip("timm")
safetensors_torch = pytest.importorskip("safetensors.torch")
HUB_ID = "timm/convnext_atto.d2_in1k"  # timm's DEFAULT weights of convnext_atto on the Hub


@pytest.mark.slow
def test_timm_weights_by_name_come_through_the_hub_once_then_from_its_cache(tmp_path, digits_small):
    assert timm.models.get_pretrained_cfg("convnext_atto").hf_hub_id == HUB_ID
    source = timm.create_model("convnext_atto", pretrained=False, num_classes=1000)
    file = tmp_path / "model.safetensors"
    safetensors_torch.save_file(source.state_dict(), str(file))
    env = {"HF_HOME": str(tmp_path / "hf")}
    args = ["train", "--dataset", digits_small, "--model", "timm/convnext_atto", "--pretrained", *QUICK,
            "--runs-dir", tmp_path / "runs"]
    with WeightServer({f"/{HUB_ID}/resolve/main/model.safetensors": file}) as server:
        first = run_cli(*args, "--name", "first", env=env | {"HF_ENDPOINT": server.url})
        assert first.returncode == 0, first.stderr
        assert server.downloads() == [f"/{HUB_ID}/resolve/main/model.safetensors"]
        endpoint = server.url
    cached = list((tmp_path / "hf" / "hub").glob("models--timm--convnext_atto.d2_in1k/snapshots/*/model.safetensors"))
    assert len(cached) == 1 and cached[0].read_bytes() == file.read_bytes()  # the Hugging Face cache, HF_HOME

    second = run_cli(*args, "--name", "second", env=env | {"HF_ENDPOINT": endpoint})  # that server is gone
    assert second.returncode == 0, second.stderr
    cfg = timm.models.get_pretrained_cfg("convnext_atto")
    for run in ("first", "second"):
        checkpoint = torch.load(tmp_path / "runs" / run / "checkpoints" / "last.pt", weights_only=True)
        state = checkpoint["model"]
        block = "stages.1.blocks.0.conv_dw.weight"
        assert torch.equal(state[f"features.{block}"], source.state_dict()[block])
        assert torch.allclose(state["features.stem.0.weight"], source.stem[0].weight.sum(1, keepdim=True))
        assert checkpoint["mean"] == pytest.approx([sum(cfg.mean) / 3])


def test_timm_with_no_network_and_no_cache_says_what_to_download(tmp_path, monkeypatch):
    from huggingface_hub import constants

    from visiontrain.errors import CheckpointError
    from visiontrain.models.pretrained import pretrained_model

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))  # conftest: HF_ENDPOINT is closed
    with pytest.raises(CheckpointError) as error:
        pretrained_model("timm/convnext_atto", num_classes=3, in_channels=3, image_size=32)
    message = str(error.value)
    assert message.startswith("--pretrained timm/convnext_atto: its weights are not in the cache and could not be "
                              "downloaded")
    assert f"`hf download {HUB_ID}`" in message
    assert f"(models--timm--convnext_atto.d2_in1k in that Hugging Face cache) into {tmp_path / 'hf-cache'}" in message
    assert f"download {constants.ENDPOINT}/{HUB_ID}/resolve/main/model.safetensors and pass it as --weights FILE" \
        in message
