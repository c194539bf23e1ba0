"""Export and predict (R25): every model of the package's own, in every export format (both read from the
registries), exported, loaded back and checked against eager PyTorch on real images.

Runs are trained for one short epoch on real handwritten digits (scikit-learn's, 28x28 PNGs; 32x32 JPEG crops of its
two sample photos for the RGB vgg-cifar) and shared by the tests of this module; accuracy does not matter here,
parity does.
"""
from __future__ import annotations

import copy
import csv
import dataclasses
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import REPO
from helpers import export_formats, model_param, own_models
from realdata import write_digits_folder, write_photo_folder

import visiontrain
from visiontrain.errors import CheckpointError
from visiontrain.export import EXPORTERS, BundleError, export_predictor, export_run, load_bundle
from visiontrain.export.verify import ExportVerificationError
from visiontrain.predict import format_rows, predict_paths

pytestmark = pytest.mark.usefixtures("shared_cache")  # one dataset cache per module (conftest.py)

OWN, FORMATS = own_models(), export_formats()
PHOTO_MODELS = {"vgg-cifar"}  # trained on RGB photos: one 3-channel model in the exports; the others on grey digits
TINY = {"epochs": 1, "batch_size": 32, "optimizer": "adam", "lr": 2e-3, "augment": "none", "threads": 1,
        "progress": "none", "report": False}  # no report.html: not under test here, and it draws seconds of plots

NO_TORCH = "import sys; sys.modules['torch'] = None\n"  # any `import torch` now raises ImportError


def tiny_digit_folder(root: Path, train: int = 600, test: int = 200) -> Path:
    """600 + 200 real handwritten digits as 28x28 PNGs in root/{train,test}/<digit>/: few, so the exports stay fast."""
    return write_digits_folder(root, train, test)


def tiny_photo_folder(root: Path) -> Path:
    """32x32 RGB JPEGs, crops of scikit-learn's two photos: 30 train + 20 test of each in root/{train,test}/<photo>/
    (40 test images: verification takes up to 64 of the test split)."""
    return write_photo_folder(root, 30, 20, size=32)


class Zoo:
    """Runs and bundles made on first use and shared by the module's tests."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.digit_folder = tiny_digit_folder(folder / "digits")
        self.runs: dict[str, Path] = {}
        self.bundles: dict[tuple[str, str], Path] = {}

    def run(self, model: str) -> Path:
        if model not in self.runs:
            dataset = tiny_photo_folder(self.folder / "photos") if model in PHOTO_MODELS else self.digit_folder
            run = visiontrain.train(dataset=str(dataset), model=model, runs_dir=str(self.folder / "runs"), name=model,
                                    **TINY)
            self.runs[model] = run.path
        return self.runs[model]

    def bundle(self, model: str, fmt: str) -> Path:
        if (model, fmt) not in self.bundles:
            self.bundles[model, fmt] = export_run(self.run(model), fmt)
        return self.bundles[model, fmt]


@pytest.fixture(scope="module")
def zoo(tmp_path_factory) -> Zoo:
    return Zoo(tmp_path_factory.mktemp("export-zoo"))


def read_json(path: Path) -> dict:
    return json.loads(path.read_text())


def sample_digits(digit_folder: Path, count: int = 20) -> list[Path]:
    """Real test digits spread over the classes (the folder is sorted by class)."""
    files = sorted((digit_folder / "test").rglob("*.png"))
    return files[:: max(1, len(files) // count)][:count]




# -- every own model, every format ---------------------------------------------------------------------
@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("model", [model_param(name) for name in OWN])
def test_every_own_model_exports_to_every_format_and_matches_eager_pytorch(zoo, model, fmt):
    bundle = zoo.bundle(model, fmt)
    meta = read_json(bundle / "model.json")
    check = meta["verification"]
    assert check["max_abs_diff"] <= 1e-4 and check["top1_agreement"] == 1.0
    assert check["images"] >= 40 and check["batch_sizes"][:2] == [1, 7]  # the dynamic batch dimension
    assert (bundle / EXPORTERS.get(fmt).filename).is_file() and meta["format"] == fmt and meta["model"] == model
    predictor = visiontrain.load(zoo.run(model))
    assert meta["classes"] == predictor.classes and meta["input_size"] == predictor.input_size
    assert meta["mean"] == predictor.mean and meta["std"] == predictor.std
    pixels = "0..255" if EXPORTERS.get(fmt).normalizes_inside else "normalised"  # safetensors: weights only
    assert meta["input"]["value_range"].startswith(pixels) and meta["input"]["shape"] == ["N", *predictor.input_size]
    summary = read_json(zoo.run(model) / "summary.json")
    assert meta["config"]["model"] == model and meta["metrics"]["test_acc"] == summary["test_acc"]
    assert meta["versions"]["torch"] == torch.__version__ and meta["decode_policy"]
    images = _dataset_images(zoo.run(model), predictor)
    reference = predictor.logits(images).numpy()
    exported = load_bundle(bundle).logits(images.numpy())
    assert np.abs(exported - reference).max() <= 1e-4 and (exported.argmax(1) == reference.argmax(1)).all()


def _dataset_images(run: Path, predictor) -> torch.Tensor:
    from visiontrain.config import build_config, load_yaml
    from visiontrain.data import load_dataset_of

    config = build_config(load_yaml(run / "config.yaml"), apply_preset=False)
    dataset = load_dataset_of(config.replace(image_size=predictor.input_size[-1], channels=predictor.input_size[0]),
                              verbose=False)
    return dataset.test.images[::5][:32]


def test_safetensors_round_trip_holds_the_checkpoint_weights_without_pickle(zoo):
    from safetensors.torch import load_file

    bundle = zoo.bundle("simple-cnn", "safetensors")
    raw = (bundle / "model.safetensors").read_bytes()
    header_length = int.from_bytes(raw[:8], "little")
    assert raw[8:9] == b"{" and json.loads(raw[8:8 + header_length])  # a JSON header and raw tensors: no pickle
    weights = load_file(str(bundle / "model.safetensors"))
    checkpoint = torch.load(zoo.run("simple-cnn") / "checkpoints" / "best.pt", weights_only=True)
    assert weights.keys() == checkpoint["model"].keys()
    assert all(torch.equal(weights[k], checkpoint["model"][k]) for k in weights)
    meta = read_json(bundle / "model.json")
    assert meta["verification"]["max_abs_diff"] <= 1e-4 and "normalised" in meta["input"]["value_range"]
    files = sample_digits(zoo.digit_folder, 8)
    predictor = visiontrain.load(zoo.run("simple-cnn"))
    top1 = [r["top"][0][0] for r in load_bundle(bundle).predict(files)]
    assert top1 == [r["top"][0][0] for r in predictor.predict(files)]


def test_torchscript_runs_in_a_fresh_python_that_never_imports_visiontrain(zoo, tmp_path):
    bundle = zoo.bundle("fastnet", "torchscript")
    images = _dataset_images(zoo.run("fastnet"), visiontrain.load(zoo.run("fastnet")))[:5]
    torch.save(images.float(), tmp_path / "images.pt")  # float32 0..255: the model normalises
    code = ("import sys, torch; model = torch.jit.load(sys.argv[1]); images = torch.load(sys.argv[2], weights_only=True);"
            "logits = model(images); assert 'visiontrain' not in sys.modules; print(logits.argmax(1).tolist())")
    command = [sys.executable, "-I", "-c", code, str(bundle / "model.ts"), str(tmp_path / "images.pt")]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    predictor = visiontrain.load(zoo.run("fastnet"))
    assert json.loads(result.stdout) == predictor.logits(images).argmax(1).tolist()


def test_a_model_left_in_train_mode_still_exports_what_eval_mode_computes(zoo, tmp_path):
    predictor = visiontrain.load(zoo.run("vgg-cifar"))  # BatchNorm + Dropout: train mode changes the outputs
    images = _dataset_images(zoo.run("vgg-cifar"), predictor)
    eval_logits = predictor.logits(images)
    predictor.model.train()
    with torch.no_grad():  # on a copy: a train-mode forward also updates BatchNorm's running statistics
        train_logits = copy.deepcopy(predictor.model)(predictor.normalize(images))
    assert (train_logits - eval_logits).abs().max() > 1e-3  # so this test can fail
    bundle = export_predictor(predictor, "onnx", tmp_path / "bundle", run_dir=zoo.run("vgg-cifar"))
    assert read_json(bundle / "model.json")["verification"]["max_abs_diff"] <= 1e-4
    assert predictor.model.training  # the caller's model was copied, not changed
    assert np.abs(load_bundle(bundle).logits(images.numpy()) - eval_logits.numpy()).max() <= 1e-4


def test_a_mismatching_export_is_refused_with_its_numbers_and_nothing_is_written(zoo, tmp_path, monkeypatch):
    onnx_format = EXPORTERS.get("onnx")

    def load_off_by_a_bit(path, meta):
        runner = onnx_format.load(path, meta)
        return lambda images: runner(images) + 1e-3

    monkeypatch.setitem(EXPORTERS._items, "onnx", dataclasses.replace(onnx_format, load=load_off_by_a_bit))
    with pytest.raises(ExportVerificationError, match=r"max abs logit diff 0\.001.*allowed 0\.0001"):
        export_run(zoo.run("mlp"), "onnx", tmp_path / "bundle")
    assert not (tmp_path / "bundle").exists()


def test_without_the_runs_dataset_the_export_says_how_to_verify_it(zoo, tmp_path):
    run = shutil.copytree(zoo.run("mlp"), tmp_path / "moved-run", ignore=shutil.ignore_patterns("export"))
    config = (run / "config.yaml").read_text().replace(str(zoo.digit_folder), str(tmp_path / "gone"))
    (run / "config.yaml").write_text(config)
    with pytest.raises(ExportVerificationError, match="cannot verify the export on real images.*as --data"):
        export_run(run, "onnx")
    assert not (run / "export").exists()


def test_an_unknown_format_names_the_valid_ones(zoo):
    assert {"onnx", "pt2", "safetensors", "torchscript"} <= set(FORMATS)  # the documented ones, and any registered since
    with pytest.raises(KeyError, match=f"valid names are: {', '.join(FORMATS)}"):
        export_run(zoo.run("mlp"), "onxx")


# -- predict -------------------------------------------------------------------------------------------
def test_predict_matches_the_runs_own_evaluation_from_the_run_and_from_the_bundle(zoo):
    run = zoo.run("simple-cnn")
    with open(run / "eval" / "test" / "predictions.csv", newline="") as handle:
        expected = {str(Path(r["image"]).resolve()): r["predicted"] for r in csv.DictReader(handle)}
    for source in (run, zoo.bundle("simple-cnn", "onnx")):
        rows, skipped = predict_paths(source, [zoo.digit_folder / "test"], top_k=3)
        assert skipped == [] and len(rows) == len(expected) == 200
        assert {str(Path(r["path"]).resolve()): r["top"][0][0] for r in rows} == expected
        assert all(len(r["top"]) == 3 and r["top"][0][1] >= r["top"][1][1] for r in rows)


def test_unreadable_files_are_skipped_and_listed_and_the_rest_predicted(zoo, tmp_path):
    from PIL import Image

    folder = tmp_path / "photos"
    (folder / "nested").mkdir(parents=True)
    digits = sample_digits(zoo.digit_folder, 2)
    shutil.copy(digits[0], folder / "a.png")
    Image.open(digits[1]).convert("RGB").save(folder / "nested" / "b.png")  # an RGB file for a gray model
    (folder / "broken.png").write_bytes(digits[0].read_bytes()[:60])  # truncated
    (folder / "empty.jpg").write_bytes(b"")
    (folder / ".hidden.png").write_bytes(b"not even an image")
    (folder / "notes.txt").write_text("not an image")
    rows, skipped = predict_paths(zoo.run("simple-cnn"), [folder, tmp_path / "missing.png"])
    assert [Path(r["path"]).name for r in rows] == ["a.png", "b.png"]
    assert rows[0]["note"] == "" and "converted to grayscale" in rows[1]["note"]
    reasons = {Path(path).name: reason for path, reason in skipped}
    assert set(reasons) == {"broken.png", "empty.jpg", "notes.txt", "missing.png"}
    assert "corrupt" in reasons["broken.png"] and "empty" in reasons["empty.jpg"]
    assert reasons["missing.png"] == "does not exist"


def test_tta_is_the_evaluation_tta_and_never_mirrors_digits(zoo, tmp_path):
    from visiontrain.engine.loop import predict_logits

    files = sample_digits(zoo.digit_folder, 6)
    predictor = visiontrain.load(zoo.run("lenet"))
    images = torch.stack([predictor._decode(f) for f in files])
    for allow_flip in (True, False):
        expected = predictor.calibrate(predict_logits(predictor.model, images, predictor.normalize, tta=True,
                                                      allow_flip=allow_flip))  # the run's temperature, as predict
        bundle = shutil.copytree(zoo.bundle("lenet", "onnx"), tmp_path / f"flip-{allow_flip}")
        (bundle / "model.json").write_text(json.dumps(read_json(bundle / "model.json") | {"allow_flip": allow_flip}))
        rows, _ = predict_paths(bundle, files, tta=True, top_k=10)
        for row, probs in zip(rows, expected.softmax(1)):
            assert row["top"][0] == (predictor.classes[int(probs.argmax())], pytest.approx(float(probs.max()), abs=1e-5))
    assert "no flip TTA" in rows[0]["note"]


def test_format_rows_writes_a_table_csv_and_json(zoo):
    rows, _ = predict_paths(zoo.run("mlp"), sample_digits(zoo.digit_folder, 3), top_k=2)
    table = format_rows(rows, "table").splitlines()
    assert table[0].split() == ["path", "predicted", "probability", "top_k", "note"] and len(table) == 4
    parsed = list(csv.DictReader(format_rows(rows, "csv").splitlines()))
    assert [r["predicted"] for r in parsed] == [r["top"][0][0] for r in rows]
    assert len(parsed[0]["top_k"].split()) == 2
    as_json = json.loads(format_rows(rows, "json"))
    assert as_json[0]["top"][0] == {"class": rows[0]["top"][0][0], "probability": rows[0]["top"][0][1]}
    with pytest.raises(ValueError, match="table, csv, json"):
        format_rows(rows, "xml")


# -- refusing bad inputs -------------------------------------------------------------------------------
@pytest.mark.parametrize("damage, message", [
    ("delete", "has no model.json"),
    ("fewer classes", "lists 9 classes but model.onnx outputs 10 logits"),
    ("other input size", "gives input_size [1, 32, 32] but model.onnx takes [1, 28, 28]"),
    ("not json", "is not valid JSON"),
    ("no mean", "field 'mean' is missing"),
    ("replaced model", "does not match the SHA-256 in model.json"),
])
def test_a_bundle_with_a_missing_or_edited_model_json_is_refused_in_one_sentence(zoo, tmp_path, damage, message):
    bundle = shutil.copytree(zoo.bundle("simple-cnn", "onnx"), tmp_path / "bundle")
    meta = read_json(bundle / "model.json")
    edits = {"fewer classes": {"classes": meta["classes"][:9], "num_classes": 9},
             "other input size": {"input_size": [1, 32, 32]}}
    if damage == "delete":
        (bundle / "model.json").unlink()
    elif damage == "not json":
        (bundle / "model.json").write_text(json.dumps(meta)[:-10])
    elif damage == "no mean":
        (bundle / "model.json").write_text(json.dumps({k: v for k, v in meta.items() if k != "mean"}))
    elif damage == "replaced model":
        shutil.copy(zoo.bundle("lenet", "onnx") / "model.onnx", bundle / "model.onnx")
    else:
        (bundle / "model.json").write_text(json.dumps(meta | edits[damage]))
    with pytest.raises(BundleError) as error:
        predict_paths(bundle, sample_digits(zoo.digit_folder, 1))
    assert message in str(error.value) and "\n" not in str(error.value)


class RunsCode:
    """Unpickling this creates `marker`: proof that a loader ran code from the file."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_a_pickle_passed_as_a_checkpoint_is_refused_and_nothing_in_it_runs(zoo, tmp_path):
    marker = tmp_path / "code-ran"
    evil = tmp_path / "best.pt"
    torch.save({"kind": "visiontrain-checkpoint", "payload": RunsCode(marker)}, evil)
    with pytest.raises(CheckpointError, match="not a safe visiontrain checkpoint"):
        predict_paths(evil, sample_digits(zoo.digit_folder, 1))
    with pytest.raises(CheckpointError, match="not a safe visiontrain checkpoint"):
        export_run(evil, "onnx", tmp_path / "bundle")
    assert not marker.exists() and not (tmp_path / "bundle").exists()


# -- without visiontrain's training stack -----------------------------------------------------------------
def test_an_onnx_bundle_predicts_with_only_onnxruntime_numpy_and_pillow(zoo):
    bundle = zoo.bundle("simple-cnn", "onnx")
    files = [str(f) for f in sample_digits(zoo.digit_folder, 5)]
    code = NO_TORCH + (
        "import json; from visiontrain.predict import predict_paths\n"
        "rows, skipped = predict_paths(sys.argv[1], sys.argv[2:])\n"
        "assert sys.modules['torch'] is None\n"
        "print(json.dumps([r['top'][0][0] for r in rows]))\n")
    env = os.environ | {"PYTHONPATH": str(REPO)}
    result = subprocess.run([sys.executable, "-c", code, str(bundle), *files], capture_output=True, text=True,
                            env=env, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == [r["top"][0][0] for r in visiontrain.load(zoo.run("simple-cnn")).predict(files)]


def test_predict_reports_progress_per_batch(zoo):
    seen = []
    files = sample_digits(zoo.digit_folder, 6)
    rows, _ = predict_paths(zoo.run("mlp"), files, batch_size=4, on_progress=lambda done, total: seen.append((done, total)))
    assert seen == [(4, 6), (6, 6)] and len(rows) == 6
