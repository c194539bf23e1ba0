"""Probabilities that mean what they say (temperature scaling), and a note on inputs unlike the training images.

One small real run (scikit-learn's handwritten digits, label smoothing 0.3, which makes a model under-confident,
and TTA) is shared by the module; the oracles are the run's own files, the model's own logits, and numbers that
could come out otherwise (an ECE that rises, a probability that differs between predict and a bundle).
"""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch

import visiontrain
from conftest import run_cli
from realdata import digits_slice, fashion_arrays, write_digits_folder
from visiontrain.engine.checkpoint import load_checkpoint
from visiontrain.inference import kept_checkpoint
from visiontrain.metrics.calibration import calibration_report, fit_temperature
from visiontrain.metrics.classification import expected_calibration_error
from visiontrain.metrics.input_check import fit_ranges, statistics, unfamiliar_notes
from visiontrain.run import RunDir


@pytest.fixture(scope="module")
def digit_folder(tmp_path_factory):
    return write_digits_folder(tmp_path_factory.mktemp("digits"), 900, 300)


@pytest.fixture(scope="module")
def smoothed_run(digit_folder, tmp_path_factory):
    """lenet, 3 epochs, label smoothing 0.3 (under-confident by construction), TTA, 90 validation images."""
    return visiontrain.train(dataset=str(digit_folder), model="lenet", epochs=3, batch_size=32, lr=3e-3,
                             label_smoothing=0.3, tta=True, progress="none", report=True, val_fraction=0.1,
                             runs_dir=str(tmp_path_factory.mktemp("runs")))


def _csv_rows(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


# -- the temperature itself ------------------------------------------------------------------------------------------
def _logits_and_labels(run, split):
    """The run's own (uncalibrated) logits on one of its splits, through the inference path."""
    from visiontrain.config import build_config, load_yaml
    from visiontrain.data import load_dataset_of

    run_dir = RunDir.open(run.path)
    config = build_config(load_yaml(run_dir.config_path) | {"split_file": str(run_dir.split_path)}, apply_preset=False)
    data = getattr(load_dataset_of(config, verbose=False), split)
    predictor = visiontrain.load(run.path)
    return predictor.logits(data.images, calibrated=False), data.labels


def test_the_fitted_temperature_minimises_the_validation_nll_and_scales_with_the_logits(smoothed_run):
    logits, labels = _logits_and_labels(smoothed_run, "val")
    temperature = fit_temperature(logits, labels)
    nll = [torch.nn.functional.cross_entropy(logits.double() / t, labels).item()
           for t in (temperature * 0.97, temperature, temperature * 1.03)]
    assert nll[1] < nll[0] and nll[1] < nll[2]  # a minimum, not just a step that went down
    # a deliberately over-confident (x4) and under-confident (x0.25) copy of the same model: T follows the scale
    for scale in (4.0, 0.25):
        assert fit_temperature(logits * scale, labels) == pytest.approx(temperature * scale, rel=1e-3)
    assert smoothed_run.summary["calibration"]["temperature"] == pytest.approx(temperature, rel=1e-6)


@pytest.mark.parametrize("scale", [4.0, 0.25])
def test_calibration_lowers_the_test_ece_of_a_miscalibrated_model(smoothed_run, scale):
    """Fitted on val, judged on test (images the temperature never saw), for a deliberately over- (x4) and
    under-confident (x0.25) copy of the calibrated model."""
    val_logits, val_labels = _logits_and_labels(smoothed_run, "val")
    test_logits, test_labels = _logits_and_labels(smoothed_run, "test")
    scale /= smoothed_run.summary["calibration"]["temperature"]
    temperature = fit_temperature(val_logits * scale, val_labels)
    report = calibration_report(test_logits * scale, test_labels, temperature)
    assert report["ece_after"] < report["ece_before"] - 0.02, report
    assert report["nll_after"] < report["nll_before"], report


def test_a_run_stores_its_temperature_and_the_test_evaluation_uses_it(smoothed_run):
    summary, path = smoothed_run.summary, smoothed_run.path
    calibration = summary["calibration"]
    assert calibration["temperature"] < 1  # label smoothing: under-confident, so the temperature sharpens
    assert calibration["ece_after"] < calibration["ece_before"]
    assert calibration["tta"] is True and calibration["images"] == 90
    checkpoint = load_checkpoint(kept_checkpoint(RunDir.open(path)))
    assert checkpoint["temperature"] == calibration["temperature"]
    metrics = json.loads((path / "eval" / "test" / "metrics.json").read_text())
    assert metrics["calibration"]["temperature"] == calibration["temperature"]
    assert metrics["ece"] < metrics["calibration"]["ece_uncalibrated"]
    # the stored T reproduces the calibrated probabilities of predictions.csv from the model's own logits
    logits, labels = _logits_and_labels(smoothed_run, "test")
    probs = (logits / checkpoint["temperature"]).softmax(1)
    raw = logits.softmax(1)
    rows = _csv_rows(path / "eval" / "test" / "predictions.csv")
    assert len(rows) == len(labels) == 300
    predicted = probs.argmax(1)
    for index, row in enumerate(rows):
        assert float(row["confidence"]) == pytest.approx(float(probs[index, predicted[index]]), abs=6e-5)
        assert float(row["confidence_uncalibrated"]) == pytest.approx(float(raw[index, predicted[index]]), abs=6e-5)
    # the accuracy is exactly that of the uncalibrated logits: a temperature never changes the predicted class
    assert torch.equal(predicted, logits.argmax(1))
    assert summary["test_acc"] == (logits.argmax(1) == labels).double().mean().item() == metrics["accuracy"]
    assert metrics["ece"] == pytest.approx(expected_calibration_error(probs.max(1).values, predicted == labels))


def test_predict_eval_and_the_report_agree_with_the_calibrated_numbers(smoothed_run, digit_folder):
    path = smoothed_run.path
    reported = {row["image"]: row for row in _csv_rows(path / "eval" / "test" / "predictions.csv")}
    result = run_cli("predict", path, digit_folder / "test", "--format", "json", "--top-k", "1")
    assert result.returncode == 0, result.stderr
    predicted = {row["path"]: row for row in json.loads(result.stdout)}
    assert len(predicted) == len(reported) == 300
    for image, row in reported.items():
        assert predicted[image]["predicted"] == row["predicted"]
        assert abs(predicted[image]["probability"] - float(row["confidence"])) <= 1e-4 + 5e-5  # 4 decimals in CSV
    again = visiontrain.evaluate(path)  # `visiontrain eval`: the same calibrated numbers
    assert again["ece"] == pytest.approx(json.loads((path / "eval" / "test" / "metrics.json").read_text())["ece"])
    page = (path / "report.html").read_text()
    assert "before temperature scaling" in page and "fitted on 90 validation images" in page


def test_an_onnx_bundle_gives_predicts_calibrated_probabilities(smoothed_run, digit_folder, tmp_path):
    from visiontrain.export import export_run, load_bundle

    bundle = export_run(smoothed_run.path, "onnx", tmp_path / "bundle")
    meta = json.loads((bundle / "model.json").read_text())
    temperature = smoothed_run.summary["calibration"]["temperature"]
    assert meta["temperature"] == temperature and "calibrated" in meta["output"]["meaning"]
    files = sorted((digit_folder / "test").rglob("*.png"))[::10]
    from visiontrain.predict import predict_paths

    from_run, _ = predict_paths(smoothed_run.path, files, top_k=3)
    from_bundle, _ = predict_paths(bundle, files, top_k=3)
    assert [r["path"] for r in from_run] == [r["path"] for r in from_bundle]
    for a, b in zip(from_run, from_bundle):
        assert [c for c, _ in a["top"]] == [c for c, _ in b["top"]]
        assert np.allclose([p for _, p in a["top"]], [p for _, p in b["top"]], atol=1e-4)
    # and not the uncalibrated ones: the temperature is inside the graph
    logits = load_bundle(bundle).logits(np.stack([np.asarray(_png(f))[None] for f in files[:4]]))
    predictor = visiontrain.load(smoothed_run.path)
    predictor.tta = False  # one view, as load_bundle(...).logits
    raw = predictor.logits(torch.from_numpy(np.stack([np.asarray(_png(f))[None] for f in files[:4]])),
                           calibrated=False)
    assert np.allclose(logits * temperature, raw.numpy(), atol=1e-3)
    assert not np.allclose(logits, raw.numpy(), atol=1e-2)


def _png(path):
    from PIL import Image

    with Image.open(path) as image:
        return image.convert("L").copy()


def test_an_edited_temperature_in_model_json_is_refused(smoothed_run, tmp_path):
    from visiontrain.export import BundleError, export_run, load_bundle

    bundle = export_run(smoothed_run.path, "onnx", tmp_path / "bundle")
    meta = json.loads((bundle / "model.json").read_text())
    (bundle / "model.json").write_text(json.dumps(meta | {"temperature": -1}))
    with pytest.raises(BundleError, match="'temperature' must be a positive number"):
        load_bundle(bundle)


@pytest.mark.parametrize(("fields", "why"), [({"val_fraction": 0.0}, "no validation split"),
                                             ({"calibrate": False}, "turned off")])
def test_without_a_validation_split_or_when_turned_off_the_temperature_is_1_and_says_why(digit_folder, tmp_path,
                                                                                        fields, why):
    run = visiontrain.train(dataset=str(digit_folder), model="mlp", epochs=1, batch_size=64, progress="none",
                            report=False, runs_dir=str(tmp_path), **fields)
    calibration = run.summary["calibration"]
    assert calibration["temperature"] == 1.0 and why in calibration["note"]
    assert load_checkpoint(kept_checkpoint(RunDir.open(run.path)))["temperature"] == 1.0
    rows = _csv_rows(run.path / "eval" / "test" / "predictions.csv")
    assert "confidence_uncalibrated" not in rows[0]  # nothing to compare


def test_the_flag_is_documented_with_its_default():
    result = run_cli("train", "--help")
    assert "--calibrate" in result.stdout and "--no-calibrate" in result.stdout


# -- inputs unlike the training images -----------------------------------------------------------------------------
def test_few_real_test_images_are_flagged_and_inverted_ones_all_are():
    """Ranges learnt from Fashion-MNIST's training split: its test split (10,000 images never seen) is hardly
    flagged, the same images inverted (dark on light) always are."""
    train_x, _, test_x, _ = fashion_arrays()
    ranges = fit_ranges(train_x[:, None])
    assert ranges["flagged_in_training"] <= 0.01
    flagged = np.mean([bool(note) for note in unfamiliar_notes(test_x[:, None], ranges)])
    assert flagged <= 0.01, flagged
    inverted = unfamiliar_notes(255 - test_x[:2000, None], ranges)
    assert all(inverted)
    assert "border brightness" in inverted[0] and "training" in inverted[0]


def test_predict_notes_an_inverted_digit_and_not_the_ordinary_ones(smoothed_run, digit_folder, tmp_path):
    from PIL import Image, ImageOps

    test_x = digits_slice(1, 300)[2]
    for index in range(5):  # dark digits on a light background, as drawn with a pen on paper
        ImageOps.invert(Image.fromarray(test_x[index])).save(tmp_path / f"inverted-{index}.png")
    result = run_cli("predict", smoothed_run.path, tmp_path, digit_folder / "test", "--format", "csv")
    assert result.returncode == 0, result.stderr
    rows = list(csv.DictReader(result.stdout.splitlines()))
    inverted = [r for r in rows if "inverted-" in r["path"]]
    ordinary = [r for r in rows if "inverted-" not in r["path"]]
    assert len(inverted) == 5 and len(ordinary) == 300
    assert all("unlike the training images" in r["note"] for r in inverted)
    false_positives = sum("unlike the training images" in r["note"] for r in ordinary)
    assert false_positives <= 3, false_positives  # at most 1% of real test digits
    assert "5 of 305 image(s) are unlike the training images" in result.stderr
    table = run_cli("predict", smoothed_run.path, tmp_path / "inverted-0.png")
    assert "unlike the training images (border brightness" in table.stdout  # the CLI table shows the note


@pytest.mark.parametrize("shape", [(5, 1, 28, 28), (7, 3, 32, 32), (4, 3, 30, 17), (3, 3, 2, 2), (2, 1, 1, 5)])
def test_the_input_statistics_are_their_float64_definition(shape):
    """statistics() works from integer sums in chunks (fast on 224 px photos); the same numbers as the plain
    definition: per-channel mean and std over float64 pixels, and the mean of the border frame."""
    images = np.random.default_rng(sum(shape)).integers(0, 256, shape, dtype=np.uint8)
    pixels = images.astype(np.float64)
    border = max(1, round(min(shape[2:]) / 14))
    frame = np.ones(shape[2:], dtype=bool)
    frame[border:shape[2] - border, border:shape[3] - border] = False
    expected = np.concatenate([pixels.mean((2, 3)), pixels.std((2, 3)), pixels[:, :, frame].mean((1, 2))[:, None]], 1)
    np.testing.assert_allclose(statistics(images, chunk=300), expected, rtol=0, atol=1e-9)
