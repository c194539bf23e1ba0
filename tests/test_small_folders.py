"""A small folder trains with the defaults: a batch larger than the split shrinks to it, with one line saying so."""
from __future__ import annotations

import pytest

from conftest import run_cli, run_main
from realdata import write_digits_folder
from visiontrain.data.loader import fit_batch_to_split


@pytest.fixture(scope="module")
def two_per_class(tmp_path_factory):
    """Real digits, 2 training images and 1 test image of each of 10 classes."""
    digits = write_digits_folder(tmp_path_factory.mktemp("all"), 300, 100)
    root = tmp_path_factory.mktemp("two-per-class")
    for split, keep in (("train", 2), ("test", 1)):
        for folder in sorted((digits / split).iterdir()):
            (root / split / folder.name).mkdir(parents=True)
            for image in sorted(folder.iterdir())[:keep]:
                image.rename(root / split / folder.name / image.name)
    return root


def test_a_folder_with_two_images_per_class_trains_end_to_end_with_the_defaults(two_per_class, tmp_path):
    result = run_cli("train", "--dataset", two_per_class, "--runs-dir", tmp_path, "--epochs", "2", "--name", "tiny")
    assert result.returncode == 0, result.stderr
    # each class keeps 1 of its 2 images for validation: 10 left to train on
    assert "visiontrain: batch_size 128 is larger than the 10 training images; using 10" in result.stderr.splitlines()
    assert "test accuracy" in result.stdout
    assert "batch_size: 10" in (tmp_path / "tiny" / "config.yaml").read_text()  # what it trained with, to repeat it


def test_lr_find_and_sweep_fit_the_batch_to_a_small_split(two_per_class, tmp_path, capsys):
    found = run_main(capsys, "lr-find", "--dataset", two_per_class, "--model", "mlp", "--steps", "10",
                     "-o", tmp_path / "lr")
    assert found.returncode == 0, found.stderr
    assert "batch_size 128 is larger than the 10 training images; using 10" in found.stderr
    swept = run_main(capsys, "sweep", "--dataset", two_per_class, "--model", "mlp", "--epochs", "1", "--lr",
                     "0.01,0.001", "--runs-dir", tmp_path / "runs", "--progress", "none", "--no-report")
    assert swept.returncode == 0, swept.stderr
    assert swept.stderr.count("batch_size 128 is larger than the 10 training images; using 10") == 2


def test_accumulation_shrinks_to_the_batches_an_epoch_has(two_per_class, tmp_path):
    result = run_cli("train", "--dataset", two_per_class, "--model", "mlp", "--batch-size", "4", "--accumulate",
                     "8", "--epochs", "1", "--runs-dir", tmp_path, "--no-report")
    assert result.returncode == 0, result.stderr
    assert ("visiontrain: accumulate 8 needs 8 batches per optimiser step but an epoch has 2; using 2"
            in result.stderr.splitlines())


@pytest.mark.parametrize("batch, accumulate, images, world, expected", [
    (128, 1, 87, 1, (87, 1, ["batch_size 128 is larger than the 87 training images; using 87"])),
    (64, 1, 100, 2, (50, 1, ["batch_size 64 is larger than the 50 training images per process (2 processes); "
                             "using 50"])),
    (32, 1, 1000, 4, (32, 1, [])),
    (10, 4, 25, 1, (10, 2, ["accumulate 4 needs 4 batches per optimiser step but an epoch has 2; using 2"])),
])
def test_the_batch_fits_the_split_per_process(batch, accumulate, images, world, expected):
    assert fit_batch_to_split(batch, accumulate, images, world) == expected


def test_fewer_images_than_processes_is_one_sentence():
    with pytest.raises(ValueError, match=r"^the training split has 1 image\(s\), fewer than one per process \(2 "
                                         r"processes\); add images or run fewer processes$"):
        fit_batch_to_split(8, 1, 1, 2)


@pytest.mark.slow
def test_under_torchrun_the_batch_fits_each_process_share(two_per_class, tmp_path):
    import os
    import subprocess
    import sys

    from conftest import REPO

    env = os.environ | {"PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                             "-m", "visiontrain", "train", "--dataset", str(two_per_class), "--model", "mlp",
                             "--epochs", "1", "--runs-dir", str(tmp_path), "--name", "ddp", "--no-report",
                             "--progress", "none"], capture_output=True, text=True, env=env, cwd=REPO, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    note = "visiontrain: batch_size 128 is larger than the 5 training images per process (2 processes); using 5"
    assert result.stderr.count(note) == 1  # rank 0 says it, for both
    assert "batch_size: 5" in (tmp_path / "ddp" / "config.yaml").read_text()
