"""End to end on real pixels: train, the run folder, load(), repeatability, and the user's view of it."""
from __future__ import annotations

import csv
import json
import subprocess
import sys

import pytest
import torch

import visiontrain
from realdata import FASHION_CLASSES
from visiontrain.data.augment import AugmentSpec, make_params, step_generator

TINY = dict(model="simple-cnn", epochs=3, batch_size=32, optimizer="adam", lr=2e-3, augment="none", threads=1,
            progress="none")


@pytest.fixture(scope="module")
def tiny_run(fashion_folder, tmp_path_factory):
    """One 3-epoch run shared by the module's tests, which only read it (its own cache: the autouse isolated_home
    is per test, this fixture is not)."""
    root = tmp_path_factory.mktemp("tiny-run")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("VISIONTRAIN_HOME", str(root / "home"))
        return visiontrain.train(dataset=str(fashion_folder), runs_dir=str(root / "runs"), name="tiny", **TINY)


def test_training_learns_and_writes_the_run_folder(tiny_run):
    assert tiny_run.test_acc > 0.75  # 3 epochs of 1,800 Fashion-MNIST images: measured 0.81-0.83 over seeds 0-2
    folder = tiny_run.path
    for name in ("config.yaml", "metrics.csv", "summary.json", "checkpoints/last.pt", "checkpoints/best.pt",
                 "eval/test/metrics.json", "eval/test/per_class.csv", "eval/test/confusion_matrix.csv",
                 "eval/test/predictions.csv"):
        assert (folder / name).is_file(), name
    rows = list(csv.DictReader(open(folder / "metrics.csv")))
    assert [r["epoch"] for r in rows] == ["1", "2", "3"]
    assert list(rows[0]) == ["epoch", "seconds", "lr", "train_loss", "train_acc", "val_loss", "val_acc"]
    summary = json.loads((folder / "summary.json").read_text())
    for key in ("test_acc", "test_loss", "wall_seconds", "images_per_second"):
        assert summary[key] is not None, key
    val_acc = [float(r["val_acc"]) for r in rows]  # the best epoch is the first with the best val accuracy
    assert summary["best_epoch"] == 1 + val_acc.index(max(val_acc))
    assert summary["best_val_acc"] == pytest.approx(max(val_acc), abs=5e-7)  # metrics.csv keeps 6 digits
    assert summary["versions"]["torch"] == torch.__version__ and summary["dataset"]["train"] + summary["dataset"]["val"] == 2000
    assert summary["dataset"]["val_source"] == "train" and summary["dataset"]["fingerprint"]


def test_checkpoint_loads_with_plain_torch_in_a_process_without_visiontrain(tiny_run):
    code = (
        "import sys, torch\n"
        "for path in sys.argv[1:]:\n"
        "    c = torch.load(path, weights_only=True)\n"
        "    assert 'visiontrain' not in sys.modules\n"
        "    assert isinstance(c['format_version'], int) and isinstance(c['torch_version'], str)\n"
        f"    assert c['classes'] == {sorted(FASHION_CLASSES)} and len(c['mean']) == 1 and len(c['std']) == 1\n"
        "    assert isinstance(c['config'], dict) and c['config']['model'] == 'simple-cnn'\n"
        "    assert all(isinstance(v, torch.Tensor) for v in c['model'].values()); print('ok', path)\n"
    )
    paths = [str(tiny_run.path / "checkpoints" / name) for name in ("last.pt", "best.pt")]
    result = subprocess.run([sys.executable, "-I", "-c", code, *paths], capture_output=True, text=True)  # one torch import
    assert result.stdout.splitlines() == [f"ok {path}" for path in paths], result.stderr


def test_load_reproduces_the_evaluation_accuracy(tiny_run, fashion_folder):
    from visiontrain.data import load_dataset

    predictor = visiontrain.load(tiny_run.path)
    data = load_dataset(str(fashion_folder))
    accuracy = (predictor.logits(data.test.images).argmax(1) == data.test.labels).double().mean().item()
    assert accuracy == pytest.approx(tiny_run.test_acc, abs=1e-12)
    files = data.test.sources[:3]
    predictions = predictor.predict(files)
    assert [p["top"][0][0] for p in predictions] == [predictor.classes[i] for i in predictor.logits(data.test.images[:3]).argmax(1)]
    assert visiontrain.evaluate(tiny_run.path)["accuracy"] == pytest.approx(tiny_run.test_acc)


def test_same_seed_is_bit_identical_and_another_seed_differs(digits_small, tmp_path):
    runs = [visiontrain.train(dataset=str(digits_small), runs_dir=str(tmp_path), seed=seed, **TINY | {"epochs": 1})
            for seed in (0, 0, 1)]
    states = [torch.load(r.path / "checkpoints" / "last.pt", weights_only=True)["model"] for r in runs]
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])
    assert not all(torch.equal(states[0][k], states[2][k]) for k in states[0])
    strip = lambda rows: [{k: v for k, v in r.items() if k != "seconds"} for r in rows]  # noqa: E731
    assert strip(runs[0].metrics) == strip(runs[1].metrics)


def test_augmentation_parameters_differ_between_samples_and_epochs():
    spec = AugmentSpec(crop_padding=2, flip=True, rotation=10)
    epoch1 = make_params(spec, 256, step_generator(0, 0, 0))
    epoch2 = make_params(spec, 256, step_generator(0, 1, 0))
    again = make_params(spec, 256, step_generator(0, 0, 0))
    for key in ("shift", "flip", "angle"):
        assert epoch1[key].float().var() > 0  # per sample, not one draw per batch
        assert not torch.equal(epoch1[key], epoch2[key])
        assert torch.equal(epoch1[key], again[key])  # replayable: resume draws the same parameters


def test_translate_moves_pixels_by_the_drawn_shift():
    from visiontrain.data.augment import translate

    images = torch.zeros(2, 1, 5, 5)
    images[:, 0, 2, 2] = 1.0
    shifted = translate(images, torch.tensor([[1, 0], [0, -1]]), 1, "constant")
    assert shifted[0, 0, 1, 2] == 1.0 and shifted[1, 0, 2, 3] == 1.0  # crop window moved down / left


@pytest.mark.slow
def test_acceptance_fashion_mnist_simple_cnn_one_epoch_reaches_82_percent(fashion_dir, tmp_path):
    run = visiontrain.train(dataset="fashion-mnist", data_dir=str(fashion_dir), model="simple-cnn", epochs=1,
                            runs_dir=str(tmp_path), progress="none")
    assert run.test_acc >= 0.82  # measured 0.839-0.844 over seeds 0-2 (10,000 test images)
    assert run.summary["dataset"]["test"] == 10_000
