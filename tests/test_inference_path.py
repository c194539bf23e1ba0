"""One numeric path for inference: what `train` reports on its test split (summary.json, eval/test/predictions.csv)
is what `visiontrain predict` and `visiontrain eval` give for the same files, whatever precision trained the model.

bf16 is forced on tiny data, so both code paths run on every CPU: natively where the CPU has AVX512_BF16/AMX,
emulated (slowly) elsewhere.
"""
from __future__ import annotations

import csv
import json

import pytest

import visiontrain
from conftest import run_cli
from realdata import write_digits_folder


@pytest.fixture(scope="module")
def digit_folder(tmp_path_factory):
    return write_digits_folder(tmp_path_factory.mktemp("digits"), 240, 60)


@pytest.mark.parametrize("precision", ["bf16", "fp32"])
def test_reported_test_predictions_are_what_predict_gives(digit_folder, tmp_path, precision):
    run = visiontrain.train(dataset=str(digit_folder), model="lenet", epochs=2, batch_size=32, precision=precision,
                            progress="none", report=False, runs_dir=str(tmp_path / "runs"), val_fraction=0.1)
    assert run.summary["hardware"]["precision"] == precision
    assert run.summary["hardware"]["inference_precision"] == "fp32"
    with open(run.path / "eval" / "test" / "predictions.csv", newline="") as handle:
        reported = {row["image"]: row for row in csv.DictReader(handle)}
    assert len(reported) == 60

    result = run_cli("predict", run.path, digit_folder / "test", "--format", "json", "--top-k", "1")
    assert result.returncode == 0, result.stderr
    predicted = {row["path"]: row for row in json.loads(result.stdout)}
    assert len(predicted) == 60
    for image, row in reported.items():
        match = next(p for path, p in predicted.items() if path.endswith(image))
        assert match["predicted"] == row["predicted"], image
        assert abs(match["probability"] - float(row["confidence"])) <= 1e-4 + 5e-5, image  # the CSV keeps 4 decimals
    correct = sum(row["predicted"] == row["true"] for row in reported.values())
    assert run.summary["test_acc"] == pytest.approx(correct / 60)
    again = visiontrain.evaluate(run.path)  # `visiontrain eval`: the same accuracy from the same path
    assert again["accuracy"] == run.summary["test_acc"]


def test_inference_precision_is_a_choice_recorded_in_the_run(digit_folder, tmp_path):
    run = visiontrain.train(dataset=str(digit_folder), model="mlp", epochs=1, batch_size=32, precision="fp32",
                            inference_precision="bf16", progress="none", report=False, runs_dir=str(tmp_path))
    assert run.summary["hardware"]["inference_precision"] == "bf16"
    assert visiontrain.load(run.path).precision == "bf16"
    assert visiontrain.load(run.path, precision="fp32").normalize.precision.autocast_dtype is None


def test_fp16_inference_on_the_cpu_is_refused_in_one_sentence(digit_folder, tmp_path):
    result = run_cli("train", "--dataset", digit_folder, "--model", "mlp", "--epochs", "1", "--precision", "fp16",
                     "--device", "cpu", "--runs-dir", tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip() == ("visiontrain: error: precision: fp16 is not supported on the CPU; use bf16 or "
                                     "fp32")


@pytest.fixture(scope="module")
def mixed_photos(tmp_path_factory):
    """Crops of scikit-learn's two sample photos (real JPEGs), of many sizes and aspect ratios, in two classes."""
    import numpy as np
    from PIL import Image
    from sklearn.datasets import load_sample_images

    china, flower = load_sample_images().images  # (427, 640, 3) uint8 each
    rng = np.random.default_rng(0)
    root = tmp_path_factory.mktemp("mixed")
    for split, count in (("train", 30), ("test", 12)):
        for name, photo in (("china", china), ("flower", flower)):
            folder = root / split / name
            folder.mkdir(parents=True)
            for index in range(count):
                height, width = rng.integers(24, 200, 2)
                top, left = rng.integers(0, 427 - height), rng.integers(0, 640 - width)
                Image.fromarray(photo[top:top + height, left:left + width]).save(folder / f"{index}.jpg", quality=90)
    return root


def test_a_folder_of_mixed_sizes_caches_the_pixels_that_predict_decodes(mixed_photos, tmp_path):
    """Each file is decoded straight to the folder's side by the call predict makes for one file: the cached
    pixels are exactly those, and so the reported predictions are predict's."""
    import torch

    from visiontrain.data import load_dataset
    from visiontrain.data.decode import DecodePolicy, decode_image, to_channels

    data = load_dataset(str(mixed_photos), val_fraction=0.0, verbose=False)
    assert data.image_size < 200  # the median short side: most files were resized
    for split in (data.train, data.test):
        for index, source in enumerate(split.sources):
            expected = to_channels(decode_image(source, DecodePolicy(), size=data.image_size), data.in_channels)
            assert torch.equal(split.images[index], torch.from_numpy(expected)), source

    run = visiontrain.train(dataset=str(mixed_photos), model="simple-cnn", epochs=1, batch_size=16, progress="none",
                            report=False, runs_dir=str(tmp_path))
    with open(run.path / "eval" / "test" / "predictions.csv", newline="") as handle:
        reported = {row["image"]: float(row["confidence"]) for row in csv.DictReader(handle)}
    result = run_cli("predict", run.path, mixed_photos / "test", "--format", "json", "--top-k", "1")
    assert result.returncode == 0, result.stderr
    predicted = {row["path"]: row["probability"] for row in json.loads(result.stdout)}
    assert len(predicted) == len(reported) == 24
    for image, confidence in reported.items():
        match = next(p for path, p in predicted.items() if path.endswith(image))
        assert abs(match - confidence) <= 1e-4 + 5e-5, image
