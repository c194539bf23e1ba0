"""Grad-CAM (visiontrain/explain.py): the heat map itself, the layer it picks, `visiontrain explain`, the report."""
from __future__ import annotations

import base64
import io
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import visiontrain
from visiontrain.explain import ExplainError, explain_paths, grad_cam, predictor_cam, target_layer
from visiontrain.models import Classifier, create_model

from conftest import run_cli, run_main

TINY = dict(epochs=1, batch_size=32, optimizer="adam", lr=2e-3, augment="none", threads=1, progress="none")


@pytest.fixture(scope="module")
def runs(digits_small, tmp_path_factory):
    """A 1-epoch simple-cnn and a 1-epoch mlp on the handwritten-digit PNG folder (reports on), and a folder of 6 test
    digits in class folders plus a stray text file."""
    root = tmp_path_factory.mktemp("explain-runs")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("VISIONTRAIN_HOME", str(root / "home"))
        cnn = visiontrain.train(dataset=str(digits_small), model="simple-cnn", runs_dir=str(root), name="cnn", **TINY)
        mlp = visiontrain.train(dataset=str(digits_small), model="mlp", runs_dir=str(root), name="mlp", **TINY)
    images = root / "digits"
    for digit in ("3", "7"):
        for source in sorted((digits_small / "test" / digit).glob("*.png"))[:3]:
            (images / digit).mkdir(parents=True, exist_ok=True)
            shutil.copy(source, images / digit / source.name)
    (images / "notes.txt").write_text("not an image\n")
    return SimpleNamespace(cnn=cnn.path, mlp=mlp.path, images=images)


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(io.BytesIO(data)) as image:
        return image.size


# -- the heat map --------------------------------------------------------------------------------------------
def mean_filter_model(classes: int = 2) -> Classifier:
    """features: a 2x2 stride-2 averaging conv (28 -> 14 px map) and global mean; fc: class 0 = +mean, 1 = -mean.
    So d score_0 / d A is a positive constant and Grad-CAM for class 0 is the 14 px map of the image itself."""
    conv = nn.Conv2d(1, 1, 2, stride=2, bias=False)
    with torch.no_grad():
        conv.weight.fill_(0.25)
    fc = nn.Linear(1, classes, bias=False)
    with torch.no_grad():
        fc.weight.copy_(torch.tensor([[1.0], [-1.0]]))
    return Classifier(nn.Sequential(conv, nn.AdaptiveAvgPool2d(1), nn.Flatten()), nn.Identity(), fc)


def test_grad_cam_of_a_known_model_highlights_the_bright_square():
    model = mean_filter_model()
    images = torch.zeros(2, 1, 28, 28)
    images[0, :, 2:10, 4:12] = 1.0  # a bright square top left
    images[1, :, 18:26, 16:24] = 1.0  # ... bottom right
    name, layer = target_layer(model, (1, 28, 28))
    assert name == "features.0" and layer is model.features[0]
    cam = grad_cam(model, images, torch.tensor([0, 0]), layer)
    assert cam.shape == (2, 28, 28) and cam.dtype == torch.float32  # the input's spatial size
    assert cam.min() >= 0 and cam.max() <= 1 and torch.allclose(cam.flatten(1).max(1).values, torch.ones(2))
    assert cam[0, 3:9, 5:11].min() > 0.9 and cam[0, 16:, 14:].max() == 0  # on the square, nothing far from it
    assert cam[1, 19:25, 17:23].min() > 0.9 and cam[1, :12, :12].max() == 0
    # class 1 scores -mean: nothing in the image speaks for it, so its map is all zero (not noise scaled up)
    assert grad_cam(model, images, torch.tensor([1, 1]), layer).abs().max() == 0
    assert all(p.grad is None for p in model.parameters()) and model.training  # no side effects on the model


def test_grad_cam_of_a_trained_run_has_the_input_size(runs):
    predictor = visiontrain.load(runs.cnn)
    images = torch.stack([torch.from_numpy(np.array(Image.open(p)))[None]
                          for p in sorted(runs.images.rglob("*.png"))])  # (6, 1, 28, 28) uint8
    _, layer = target_layer(predictor.model, predictor.input_size)
    cam = predictor_cam(predictor, images, predictor.logits(images).argmax(1), layer)
    assert cam.shape == (6, 28, 28) and cam.min() >= 0 and cam.max() <= 1
    assert (cam.flatten(1).max(1).values == 1).all()  # each map reaches 1 where the evidence is strongest


# -- the layer it explains ------------------------------------------------------------------------------------
@pytest.mark.parametrize("name, size, expected", [
    ("simple-cnn", (1, 28, 28), "features.3"),
    ("lenet", (1, 28, 28), "features.3"),
    ("vgg-cifar", (3, 32, 32), "features.17"),
    ("fastnet", (1, 28, 28), "features.4.4"),
    ("fastnet-s1", (1, 28, 28), "features.4.4"),
    ("resnet18", (3, 32, 32), "features.layer4.1.conv2"),
    ("efficientnet_lite0", (3, 32, 32), "features.conv_head"),
])
def test_the_automatic_layer_is_the_last_convolution(name, size, expected):
    if name == "efficientnet_lite0":
        pytest.importorskip("timm")
    torch.manual_seed(0)
    model = create_model(name, num_classes=10, in_channels=size[0], image_size=size[-1],
                         width=0.25 if name.startswith("fastnet") else 1.0)
    chosen, layer = target_layer(model, size, model_name=name)
    assert chosen == expected and isinstance(layer, nn.Conv2d)
    assert chosen == [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)][-1]
    cam = grad_cam(model, torch.randn(2, *size), torch.tensor([0, 1]), layer)
    assert cam.shape == (2, *size[1:]) and cam.min() >= 0 and cam.max() <= 1


def test_layer_override_by_name_and_its_errors():
    model = create_model("resnet18", num_classes=10, in_channels=3, image_size=32)
    # a residual block by its short name; a BatchNorm whose output the next ReLU(inplace=True) overwrites
    for name, full in (("layer4", "features.layer4"), ("features.bn1", "features.bn1")):
        chosen, layer = target_layer(model, (3, 32, 32), name, "resnet18")
        assert chosen == full
        cam = grad_cam(model, torch.randn(2, 3, 32, 32), torch.tensor([0, 1]), layer)
        assert cam.shape == (2, 32, 32) and 0 <= cam.min() and cam.max() <= 1
    with pytest.raises(ExplainError, match=r"unknown layer 'layer9'.*features\.conv1, .*features\.layer4\.1\.conv2"):
        target_layer(model, (3, 32, 32), "layer9", "resnet18")
    mlp = create_model("mlp", num_classes=10, in_channels=1, image_size=28)
    with pytest.raises(ExplainError, match="mlp has no convolutional layer"):
        target_layer(mlp, (1, 28, 28), None, "mlp")


# -- visiontrain explain ----------------------------------------------------------------------------------------
def test_explain_writes_one_png_per_image(runs, tmp_path):
    single = tmp_path / "loose.png"
    shutil.copy(next(runs.images.glob("7/*.png")), single)
    result = run_cli("explain", runs.cnn, runs.images, single, "-o", tmp_path / "out")
    assert result.returncode == 0, result.stderr
    assert "wrote 7 Grad-CAM images (layer features.3)" in result.stdout
    assert "notes.txt" in result.stderr and "not an image file extension" in result.stderr  # listed, as by predict
    written = sorted(p.relative_to(tmp_path / "out").as_posix() for p in (tmp_path / "out").rglob("*.png"))
    expected = sorted([f"{p.parent.name}/{p.stem}.png" for p in runs.images.rglob("*.png")] + [single.name])
    assert written == expected  # class folders kept; the file named directly goes to the top
    for path in (tmp_path / "out").rglob("*.png"):
        width, height = png_size(path.read_bytes())
        assert width > height >= 300  # image and overlay side by side


def test_explain_agrees_with_predict(runs, tmp_path):
    rows, skipped, layer = explain_paths(runs.cnn, [runs.images], tmp_path / "out")
    predicted, _ = visiontrain.predict_paths(runs.cnn, [runs.images], top_k=1)
    assert layer == "features.3" and [s[0] for s in skipped] == [str(runs.images / "notes.txt")]
    assert [r["path"] for r in rows] == [r["path"] for r in predicted]
    for mine, theirs in zip(rows, predicted):
        assert mine["predicted"] == theirs["top"][0][0] == mine["explained"]
        assert mine["confidence"] == pytest.approx(theirs["top"][0][1], abs=1e-5)
        assert mine["true"] == Path(mine["path"]).parent.name  # from the class folder
    forced, _, _ = explain_paths(runs.cnn, [runs.images], tmp_path / "forced", class_name="3", layer="features.0")
    assert {r["explained"] for r in forced} == {"3"} and len(forced) == 6


@pytest.mark.parametrize("args, words", [
    (["--layer", "features.9"], ["unknown layer 'features.9'", "features.0, features.3"]),
    (["--class", "cat"], ["'cat' is not one of the run's classes", "0, 1, 2"]),
])
def test_explain_bad_layer_or_class_is_one_sentence_exit_2(runs, tmp_path, args, words, capsys):
    result = run_main(capsys, "explain", runs.cnn, runs.images, "-o", tmp_path, *args)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    [line] = [l for l in result.stderr.splitlines() if not l.startswith("visiontrain: skipped")]
    assert line.startswith("visiontrain: error:") and all(word in line for word in words), line
    assert not list(tmp_path.rglob("*.png"))


def test_explain_on_a_model_without_convolutions_is_exit_2(runs, tmp_path, capsys):
    result = run_main(capsys, "explain", runs.mlp, runs.images, "-o", tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [
        "visiontrain: error: mlp has no convolutional layer (no 4-D feature map in its features), so Grad-CAM has "
        "nothing to explain; use a CNN such as simple-cnn"]


def test_explain_refuses_an_export_bundle(tmp_path):
    (tmp_path / "model.json").write_text("{}")
    with pytest.raises(ExplainError, match="export bundle"):
        explain_paths(tmp_path, [tmp_path])


# -- report.html --------------------------------------------------------------------------------------------------
def test_report_shows_grad_cam_of_misclassified_images_or_says_why_not(runs):
    gradcam = runs.cnn / "plots" / "gradcam.png"
    assert png_size(gradcam.read_bytes())[0] >= 1000 and not gradcam.with_suffix(".txt").exists()
    page = (runs.cnn / "report.html").read_text()
    section = page.split('<section id="gradcam">')[1].split("</section>")[0]
    assert "Grad-CAM of misclassified test images" in section and section.count("data:image/png;base64,") == 1
    assert page.count(base64.b64encode(gradcam.read_bytes()).decode()) == 1  # not again under "More plots"
    # mlp: no PNG, no error, a note in the report instead
    assert not (runs.mlp / "plots" / "gradcam.png").exists()
    note = (runs.mlp / "plots" / "gradcam.txt").read_text()
    assert note.startswith("Grad-CAM is not shown: mlp has no convolutional layer")
    section = (runs.mlp / "report.html").read_text().split('<section id="gradcam">')[1].split("</section>")[0]
    assert "no convolutional layer" in section and "<img" not in section


def test_the_end_of_a_run_builds_its_kept_model_once(digits_small, tmp_path, monkeypatch):
    """The calibration, the test evaluation and the report's Grad-CAM share one model built from the kept checkpoint
    (they built it three times), with the temperature fitted after it was built."""
    import visiontrain.inference as inference

    built = []
    original = inference.Predictor.__init__

    def counting(self, *args, **kwargs):
        built.append(self)
        original(self, *args, **kwargs)

    monkeypatch.setattr(inference.Predictor, "__init__", counting)
    run = visiontrain.train(dataset=str(digits_small), model="simple-cnn", runs_dir=str(tmp_path), name="once", **TINY)
    assert len(built) == 1
    assert built[0].temperature == torch.load(run.path / "checkpoints" / "best.pt", weights_only=True)["temperature"]
    assert (run.path / "plots" / "gradcam.png").is_file()
