"""torch.export bundles (`--format pt2`): verified against eager PyTorch on real images, loadable by plain torch in a
fresh process that never imports visiontrain, and used by `visiontrain predict`.

Runs are trained for one short epoch on real handwritten digits (scikit-learn's, 28x28 PNGs) and, for the RGB
vgg-cifar (BatchNorm and Dropout, which eval mode changes), on 32x32 JPEG crops of its two sample photos;
accuracy does not matter here, parity does.
"""
from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import run_main
from realdata import write_digits_folder, write_photo_folder

import visiontrain
from visiontrain.export import EXPORTERS, BundleError, export_predictor, export_run, load_bundle
from visiontrain.export.verify import ExportVerificationError
from visiontrain.predict import predict_paths

pytestmark = pytest.mark.usefixtures("shared_cache")  # one dataset cache per module (conftest.py)

TINY = {"epochs": 1, "batch_size": 32, "optimizer": "adam", "lr": 2e-3, "augment": "none", "threads": 1,
        "progress": "none", "report": False}


class Runs:
    """Runs and pt2 bundles made on first use, shared by the module's tests."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.digits = write_digits_folder(folder / "digits", 300, 100)
        self.runs: dict[str, Path] = {}
        self.bundles: dict[str, Path] = {}

    def run(self, model: str) -> Path:
        if model not in self.runs:
            data = write_photo_folder(self.folder / "photos", 30, 20, size=32) if model == "vgg-cifar" else self.digits
            self.runs[model] = visiontrain.train(dataset=str(data), model=model, runs_dir=str(self.folder / "runs"),
                                                 name=model, **TINY).path
        return self.runs[model]

    def bundle(self, model: str) -> Path:
        if model not in self.bundles:
            self.bundles[model] = export_run(self.run(model), "pt2")
        return self.bundles[model]


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Runs:
    return Runs(tmp_path_factory.mktemp("pt2-runs"))


def dataset_images(run: Path, predictor) -> torch.Tensor:
    """uint8 (n, C, H, W) test images of the run's own dataset, as the model takes them."""
    from visiontrain.config import build_config, load_yaml
    from visiontrain.data import load_dataset_of

    config = build_config(load_yaml(run / "config.yaml"), apply_preset=False)
    dataset = load_dataset_of(config.replace(image_size=predictor.input_size[-1], channels=predictor.input_size[0]),
                              verbose=False)
    return dataset.test.images[::3][:32]


@pytest.mark.parametrize("model", ["lenet", "vgg-cifar", "fastnet"])
def test_a_pt2_export_is_verified_and_matches_eager_pytorch_on_real_images(runs, model):
    bundle = runs.bundle(model)
    meta = json.loads((bundle / "model.json").read_text())
    check = meta["verification"]
    assert meta["format"] == "pt2" and meta["model_file"] == "model.pt2" and (bundle / "model.pt2").is_file()
    assert check["max_abs_diff"] <= 1e-4 and check["top1_agreement"] == 1.0
    assert check["batch_sizes"][:2] == [1, 7] and check["images"] >= 40  # the batch dimension is dynamic
    assert "torch.export" in check["runtime"] and "python -I" in check["runtime"]
    assert meta["input"]["value_range"].startswith("0..255")  # normalisation inside the graph
    predictor = visiontrain.load(runs.run(model))
    images = dataset_images(runs.run(model), predictor)
    reference = predictor.logits(images).numpy()
    exported = load_bundle(bundle).logits(images.numpy())
    assert np.abs(exported - reference).max() <= 1e-4 and (exported.argmax(1) == reference.argmax(1)).all()


def test_plain_torch_export_load_runs_it_in_a_fresh_python_without_visiontrain(runs, tmp_path):
    run = runs.run("fastnet")
    predictor = visiontrain.load(run)
    images = dataset_images(run, predictor)[:5]
    torch.save(images.float(), tmp_path / "images.pt")  # float32 0..255: the program normalises
    code = ("import sys, json, torch\n"
            "model = torch.export.load(sys.argv[1]).module()\n"
            "images = torch.load(sys.argv[2], weights_only=True)\n"
            "batches = [model(images).argmax(1).tolist(), model(images[:1]).argmax(1).tolist()]\n"
            "assert 'visiontrain' not in sys.modules\n"
            "print(json.dumps(batches))\n")
    command = [sys.executable, "-I", "-c", code, str(runs.bundle("fastnet") / "model.pt2"), str(tmp_path / "images.pt")]
    result = subprocess.run(command, capture_output=True, text=True, timeout=180, check=False, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    expected = predictor.logits(images).argmax(1).tolist()
    assert json.loads(result.stdout) == [expected, expected[:1]]


def test_visiontrain_export_and_predict_use_a_pt2_bundle(runs, tmp_path, capsys):
    run = runs.run("lenet")
    exported = run_main(capsys, "export", run, "--format", "pt2", "-o", tmp_path / "bundle")
    assert exported.returncode == 0, exported.stderr
    assert "verified on" in exported.stdout and "top-1 agreement 100%" in exported.stdout
    files = sorted((runs.digits / "test").rglob("*.png"))[::10]
    expected = [r["top"][0][0] for r in visiontrain.load(run).predict(files)]
    for source in (tmp_path / "bundle", tmp_path / "bundle" / "model.pt2"):
        predicted = run_main(capsys, "predict", source, *files, "--format", "json", "--top-k", "3")
        assert predicted.returncode == 0, predicted.stderr
        rows = json.loads(predicted.stdout)
        assert [row["predicted"] for row in rows] == expected and all(len(row["top"]) == 3 for row in rows)


def test_a_pt2_bundle_gives_the_runs_own_predictions_for_a_folder(runs):
    run = runs.run("lenet")
    from_run, _ = predict_paths(run, [runs.digits / "test"], top_k=2)
    from_bundle, skipped = predict_paths(runs.bundle("lenet"), [runs.digits / "test"], top_k=2)
    assert skipped == [] and len(from_bundle) == 100
    assert [r["top"][0][0] for r in from_bundle] == [r["top"][0][0] for r in from_run]
    for a, b in zip(from_bundle, from_run):
        assert a["top"][0][1] == pytest.approx(b["top"][0][1], abs=1e-5)


def test_an_edited_input_size_or_a_damaged_program_is_refused_in_one_sentence(runs, tmp_path):
    bundle = shutil.copytree(runs.bundle("lenet"), tmp_path / "edited")
    meta = json.loads((bundle / "model.json").read_text())
    (bundle / "model.json").write_text(json.dumps(meta | {"input_size": [1, 32, 32]}))
    with pytest.raises(BundleError, match=r"gives input_size \[1, 32, 32\] but model.pt2 takes \[1, 28, 28\]"):
        load_bundle(bundle)
    damaged = shutil.copytree(runs.bundle("lenet"), tmp_path / "damaged")
    data = (damaged / "model.pt2").read_bytes()[:5000]  # cut short: no zip directory
    (damaged / "model.pt2").write_bytes(data)
    import hashlib

    (damaged / "model.json").write_text(json.dumps(meta | {"model_sha256": hashlib.sha256(data).hexdigest()}))
    with pytest.raises(BundleError) as error:
        load_bundle(damaged)
    assert "is not a loadable torch.export program" in str(error.value) and "\n" not in str(error.value)


def test_a_pt2_export_that_differs_is_refused_and_nothing_is_written(runs, tmp_path, monkeypatch):
    pt2 = EXPORTERS.get("pt2")

    def off_by_a_bit(path, meta, batches):
        return [logits + 1e-3 for logits in pt2.load_isolated(path, meta, batches)]

    monkeypatch.setitem(EXPORTERS._items, "pt2", dataclasses.replace(pt2, load_isolated=off_by_a_bit))
    with pytest.raises(ExportVerificationError, match=r"max abs logit diff 0\.001.*allowed 0\.0001"):
        export_run(runs.run("lenet"), "pt2", tmp_path / "bundle")
    assert not (tmp_path / "bundle").exists()


class DataDependent(torch.nn.Module):
    """A classifier whose forward branches on the values of its input: torch.export cannot capture it as one graph."""

    def __init__(self, classifier: torch.nn.Module):
        super().__init__()
        self.classifier = classifier

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        logits = self.classifier(images)
        return logits if images.mean() > 0 else -logits


def test_a_model_torch_export_cannot_capture_gets_one_sentence_naming_the_other_formats(runs, tmp_path):
    predictor = visiontrain.load(runs.run("lenet"))
    predictor.model = DataDependent(predictor.model)
    with pytest.raises(ExportVerificationError) as error:
        export_predictor(predictor, "pt2", tmp_path / "bundle", run_dir=runs.run("lenet"))
    message = str(error.value)
    assert message.startswith("torch.export cannot capture this model") and "--format onnx" in message
    assert "\n" not in message and not (tmp_path / "bundle").exists()
