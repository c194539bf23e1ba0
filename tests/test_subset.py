"""--fraction (a share of the training split, as Ultralytics' fraction=) and --limit (a quick try: at most N images of
each split), both drawn per class with the seed, recorded in config.yaml and summary.json, and fixed on resume."""
from __future__ import annotations

import json

import pytest
import torch
import yaml

from conftest import run_cli, run_main
from visiontrain.data.tensors import stratified_sample

QUICK = ["--model", "lenet", "--epochs", "1", "--batch-size", "32", "--threads", "1", "--progress", "none",
         "--no-report"]


def test_the_sample_keeps_each_class_share_is_seeded_and_nested():
    labels = torch.tensor([0] * 500 + [1] * 300 + [2] * 5)
    tenth = stratified_sample(labels, fraction=0.1, seed=0)
    assert torch.bincount(labels[tenth]).tolist() == [50, 30, 1]  # per class, the rare one kept
    assert torch.equal(tenth, stratified_sample(labels, fraction=0.1, seed=0))
    assert not torch.equal(tenth, stratified_sample(labels, fraction=0.1, seed=1))
    fifth = stratified_sample(labels, fraction=0.2, seed=0)
    assert set(tenth.tolist()) <= set(fifth.tolist())  # a learning curve adds images, never swaps them
    hundred = stratified_sample(labels, limit=100, seed=0)
    assert len(hundred) == 100 and torch.bincount(labels[hundred]).tolist() == [62, 37, 1]
    assert torch.bincount(labels[stratified_sample(labels, limit=3, seed=0)]).tolist() == [1, 1, 1]
    assert len(stratified_sample(labels, limit=10_000, seed=0)) == len(labels)


def test_fraction_trains_on_a_share_of_train_and_resume_keeps_it(tmp_path, capsys, digits_small):
    result = run_main(capsys, "train", "--dataset", digits_small, *QUICK, "--fraction", "0.25", "--runs-dir", tmp_path,
                      "--name", "quarter")
    assert result.returncode == 0, result.stderr
    # 400 train images: 40 held out for validation first (as without --fraction), then a quarter of each digit left
    from visiontrain.data import load_dataset

    left = torch.bincount(load_dataset(str(digits_small), verbose=False).train.labels).tolist()
    assert sum(left) == 360
    quarter = sum(round(count / 4) for count in left)
    assert f"training on {quarter} of 360 images (--fraction 0.25: drawn per class with seed 0)" in result.stderr
    run = tmp_path / "quarter"
    data = json.loads((run / "summary.json").read_text())["dataset"]
    assert (data["train"], data["val"], data["test"]) == (quarter, 40, 100)
    assert data["subset"] == {"fraction": 0.25, "limit": None, "seed": 0, "stratified": True,
                              "train": {"kept": quarter, "of": 360}, "val": {"kept": 40, "of": 40},
                              "test": {"kept": 100, "of": 100}}
    assert yaml.safe_load((run / "config.yaml").read_text())["fraction"] == 0.25
    refused = run_main(capsys, "train", "--resume", run, "--fraction", "0.5")
    assert refused.returncode == 2 and "cannot resume" in refused.stderr and "fraction" in refused.stderr


def test_limit_is_a_quick_try_of_every_split_and_eval_repeats_it(tmp_path, digits_small):
    result = run_cli("train", "--dataset", digits_small, *QUICK, "--limit", "50", "--runs-dir", tmp_path, "--name",
                     "quick")
    assert result.returncode == 0, result.stderr
    summary = json.loads((tmp_path / "quick" / "summary.json").read_text())
    assert (summary["dataset"]["train"], summary["dataset"]["val"], summary["dataset"]["test"]) == (50, 40, 50)
    assert "on 50 of 100 test images (--limit: a quick try, not a result)" in result.stdout
    evaluated = run_cli("eval", tmp_path / "quick")
    assert evaluated.returncode == 0, evaluated.stderr
    metrics = json.loads((tmp_path / "quick" / "eval" / "test" / "metrics.json").read_text())
    assert metrics["n"] == 50 and metrics["accuracy"] == pytest.approx(summary["test_acc"])


@pytest.mark.parametrize("flag, value, message", [
    ("--fraction", "0", "fraction: 0.0 is out of range; use a fraction above 0 and at most 1, e.g. 0.1"),
    ("--fraction", "1.5", "fraction: 1.5 is out of range"),
    ("--limit", "0", "limit: 0 is out of range; use a whole number of images >= 1"),
])
def test_a_bad_sample_size_is_one_sentence(capsys, digits_small, flag, value, message):
    result = run_main(capsys, "train", "--dataset", digits_small, *QUICK, flag, value)
    assert result.returncode == 2 and message in result.stderr
