"""Class imbalance: detection, --class-weights auto, --sampler balanced, and the metric that keeps the best epoch."""
from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import visiontrain
from conftest import REPO, run_main
from realdata import FASHION_CLASSES, fashion_arrays
from helpers import DRIVERS, assert_bit_identical, tiny_args
from visiontrain.config import RESUME_UNSAFE_FIELDS, ConfigError, build_config, load_yaml, to_yaml
from visiontrain.data import load_dataset
from visiontrain.data.loader import TensorLoader
from visiontrain.engine.imbalance import inverse_frequency, sample_weights

# Fashion-MNIST shirts and T-shirts/tops: alike enough that a plain loss can ignore the small class. Measured minority
# recall on the balanced folder (seeds 0/1/2): plain 0.00/0.00/0.00, class weights 0.80/0.67/0.75, balanced sampler
# 0.88/0.74/0.70 (the tests use seed 0).
MAJOR, MINOR = "shirt", "t-shirt"
LABELS = {MAJOR: FASHION_CLASSES.index("shirt"), MINOR: FASHION_CLASSES.index("t-shirt-top")}


def write_images(root: Path, images: np.ndarray, labels: np.ndarray, counts: dict[str, int]) -> Path:
    for name, count in counts.items():
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        for index in np.nonzero(labels == LABELS[name])[0][:count]:
            Image.fromarray(images[index]).save(folder / f"{index:05d}.png")
    return root


@pytest.fixture(scope="module")
def folders(tmp_path_factory, fashion_dir) -> tuple[Path, Path]:
    """(imbalanced: 200 shirts + 20 T-shirts, one folder of classes; balanced: 100 + 100 of Fashion-MNIST's test
    images to measure on)."""
    train_x, train_y, test_x, test_y = fashion_arrays()
    base = tmp_path_factory.mktemp("imbalance")
    imbalanced = write_images(base / "imbalanced", train_x, train_y, {MAJOR: 200, MINOR: 20})
    balanced = write_images(base / "balanced", test_x, test_y, {MAJOR: 100, MINOR: 100})
    return imbalanced, balanced


def minority_recall(run: Path, balanced: Path) -> float:
    model = visiontrain.load(run)
    data = load_dataset(str(balanced), val_fraction=0, verbose=False)
    assert data.classes == model.classes == [MAJOR, MINOR]  # matched by name
    predicted = model.logits(data.train.images).argmax(1)
    minor = data.train.labels == 1
    return (predicted[minor] == 1).double().mean().item()


def train(folder: Path, runs: Path, name: str, **fields):
    values = dict(dataset=str(folder), model="simple-cnn", epochs=3, batch_size=32, threads=1, seed=0, progress="none",
                  report=False, runs_dir=str(runs), name=name)
    return visiontrain.train(**values | fields)



def read_metrics(run: Path) -> list[dict]:
    with open(run / "metrics.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def test_balanced_sampler_draws_classes_roughly_equally_seeded_per_epoch():
    labels = torch.tensor([0] * 200 + [1] * 20)
    weights = inverse_frequency(labels, 2)
    assert weights.mean().item() == pytest.approx(1.0) and weights[1] / weights[0] == pytest.approx(10.0)
    loader = TensorLoader(len(labels), 20, seed=5, weights=sample_weights(labels, 2))
    for epoch in range(3):
        drawn = torch.cat([indices for _, indices in loader.batches(epoch)])
        assert len(drawn) == loader.steps_per_epoch * 20 == 220  # the epoch keeps its length
        share = (labels[drawn] == 1).double().mean().item()
        assert 0.4 < share < 0.6, share  # 9% of the images, about half of the draws
        again = TensorLoader(len(labels), 20, seed=5, weights=sample_weights(labels, 2))
        assert torch.equal(again.permutation(epoch), loader.permutation(epoch))  # a pure function of (seed, epoch)
    assert not torch.equal(loader.permutation(0), loader.permutation(1))
    shuffled = TensorLoader(len(labels), 20, seed=5)
    assert (labels[shuffled.permutation(0)] == 1).sum() == 20  # the default stays a permutation
    ranks = [TensorLoader(len(labels), 10, seed=5, rank=r, world_size=2, weights=sample_weights(labels, 2))
             for r in (0, 1)]
    order = loader.permutation(0)  # each rank takes every 2nd draw: disjoint shards that together make the epoch
    assert torch.equal(ranks[0].shard(0), order[0::2]) and torch.equal(ranks[1].shard(0), order[1::2])
    with pytest.raises(ValueError, match="sampling weights"):
        TensorLoader(3, 1, weights=torch.zeros(3))


def test_class_weights_auto_improve_minority_recall_and_selection_is_recorded(folders, tmp_path):
    imbalanced, balanced = folders
    plain = train(imbalanced, tmp_path, "plain")
    weighted = train(imbalanced, tmp_path, "weighted", class_weights="auto")
    sampled = train(imbalanced, tmp_path, "sampled", sampler="balanced")
    recalls = {run.path.name: minority_recall(run.path, balanced) for run in (plain, weighted, sampled)}
    assert recalls["weighted"] > recalls["plain"] and recalls["sampled"] > recalls["plain"], recalls

    for run in (plain, weighted, sampled):
        summary = json.loads((run.path / "summary.json").read_text())
        assert summary["selection_metric"] == "balanced_accuracy"
        assert "10.00" in summary["selection_reason"] and "imbalance_threshold 3" in summary["selection_reason"]
        assert summary["imbalance"]["train_ratio"] == pytest.approx(10.0)
        assert summary["model_kept"] == "best (by validation balanced accuracy)"
        rows = read_metrics(run.path)
        scores = [float(row["val_balanced_acc"]) for row in rows]
        assert summary["best_epoch"] == 1 + scores.index(max(scores))  # the first epoch with the best balanced accuracy
        assert summary["best_val_balanced_acc"] == pytest.approx(max(scores), abs=1e-5)
        assert summary["best_val_acc"] == pytest.approx(float(rows[summary["best_epoch"] - 1]["val_acc"]), abs=1e-5)
    assert weighted.summary["imbalance"]["class_weights"] == "auto"
    assert sampled.summary["imbalance"]["sampler"] == "balanced"

    with pytest.raises(ConfigError, match="sampler"):  # resume-unsafe: it would change the rest of the data order
        visiontrain.train(resume=plain.path, sampler="balanced")


def test_below_the_threshold_accuracy_keeps_the_best_epoch_and_no_extra_column(folders, tmp_path):
    imbalanced, _ = folders
    run = train(imbalanced, tmp_path, "lenient", epochs=1, imbalance_threshold=20)
    assert run.summary["selection_metric"] == "accuracy" and "not above" in run.summary["selection_reason"]
    assert "best_val_balanced_acc" not in run.summary
    header = (run.path / "metrics.csv").read_text().splitlines()[0]
    assert header == "epoch,seconds,lr,train_loss,train_acc,val_loss,val_acc"


@pytest.mark.slow
def test_a_balanced_sampler_run_resumes_bit_identical(folders, tmp_path, capsys):
    imbalanced, _ = folders
    extra = ["--sampler", "balanced", "--class-weights", "auto", "--no-report"]
    reference = run_main(capsys, *tiny_args(imbalanced, tmp_path, "reference", extra=extra))
    assert reference.returncode == 0, reference.stderr
    env = os.environ | {"PYTHONPATH": str(REPO)}
    # killed (like kill -9) while writing its 4th checkpoint: the one before is a step checkpoint inside epoch 2
    killed = subprocess.run([sys.executable, DRIVERS / "fail_checkpoint_write.py", "half", "4", "--",
                             *tiny_args(imbalanced, tmp_path, "x", extra=extra)], capture_output=True, text=True,
                            cwd=REPO, env=env)
    assert killed.returncode == 137, killed.stderr
    state = torch.load(tmp_path / "x" / "checkpoints" / "last.pt", weights_only=True)["state"]
    assert state["epoch"] == 1 and state["step_in_epoch"] > 0  # resumed mid-epoch, in the middle of a weighted draw
    resumed = run_main(capsys, "train", "--resume", tmp_path / "x", "--no-report")

    assert resumed.returncode == 0, resumed.stderr
    assert_bit_identical(tmp_path / "x", tmp_path / "reference")
    assert "val_balanced_acc" in (tmp_path / "x" / "metrics.csv").read_text().splitlines()[0]


@pytest.mark.parametrize("values, words", [
    ({"class_weights": "balanced"}, ["class_weights", "none, auto"]),
    ({"sampler": "weighted"}, ["sampler", "shuffle, balanced"]),
    ({"imbalance_threshold": 0.5}, ["imbalance_threshold", "out of range"]),
    ({"imbalance_threshold": "high"}, ["imbalance_threshold", "not a number"]),
])
def test_imbalance_fields_are_validated(values, words):
    with pytest.raises(ConfigError) as error:
        build_config({"dataset": "mnist", "model": "lenet"} | values)
    assert all(word in str(error.value) for word in words)


def test_imbalance_fields_round_trip_and_are_resume_unsafe(tmp_path):
    config = build_config({"dataset": "mnist", "model": "lenet", "class_weights": "auto", "sampler": "balanced",
                           "imbalance_threshold": 5})
    (tmp_path / "config.yaml").write_text(to_yaml(config))
    assert build_config(load_yaml(tmp_path / "config.yaml"), apply_preset=False) == config
    assert {"class_weights", "sampler", "imbalance_threshold"} <= set(RESUME_UNSAFE_FIELDS)
