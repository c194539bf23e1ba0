"""Experiment loggers read back with TensorBoard's and MLflow's own readers (also across a kill and a resume), and
callbacks that stop a run (docs/ecosystem.md)."""
from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess

import numpy as np
import pytest
import torch

import visiontrain
from conftest import REPO, VISIONTRAIN, run_main
from helpers import run_status as status, tiny_args, wait_for
from visiontrain.errors import ConfigError

def MlflowClient(uri):  # noqa: N802 - the real class, imported when a test needs it (an optional extra)
    from mlflow.tracking import MlflowClient

    return MlflowClient(uri)


def EventAccumulator(*args, **kwargs):  # noqa: N802 - TensorBoard's own reader of event files
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    return EventAccumulator(*args, **kwargs)


@pytest.fixture(scope="module")
def empty_mlflow_db(tmp_path_factory):
    """An MLflow SQLite store with its tables created. Creating them runs MLflow's ~30 migrations (10-20 s on a busy
    disk), once per runs folder for a user; the tests copy this one into each runs folder instead. Skips the logger
    tests where the extras are not installed (pip install 'visiontrain[tensorboard,mlflow]')."""
    pytest.importorskip("tensorboard", reason="pip install 'visiontrain[tensorboard]'")
    pytest.importorskip("mlflow", reason="pip install 'visiontrain[mlflow]'")
    path = tmp_path_factory.mktemp("mlflow") / "mlflow.db"
    MlflowClient(f"sqlite:///{path}").search_experiments()
    return path


def runs_with_mlflow(folder, empty_db):
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(empty_db, folder / "mlflow.db")  # where the mlflow logger's default store is: RUNS_DIR/mlflow.db
    return folder


def tensorboard_scalars(run) -> dict[str, list[tuple[int, float]]]:
    events = EventAccumulator(str(run / "tensorboard"), size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    events.Reload()
    return {tag: [(event.step, event.value) for event in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def mlflow_run(runs, run):
    client = MlflowClient(f"sqlite:///{runs / 'mlflow.db'}")
    return client, client.get_run(json.loads((run / "mlflow.json").read_text())["run_id"])


def history(client, run_id, key) -> list[tuple[int, float]]:
    return sorted((point.step, point.value) for point in client.get_metric_history(run_id, key))


def steps_csv(run) -> list[dict[str, str]]:
    with open(run / "steps.csv", newline="") as handle:
        return list(csv.DictReader(handle))


# -- loggers ----------------------------------------------------------------------------------------------------------
def test_tensorboard_and_mlflow_read_back(digits_small, tmp_path, empty_mlflow_db):
    runs = runs_with_mlflow(tmp_path / "runs", empty_mlflow_db)
    result = visiontrain.train(dataset=str(digits_small), model="lenet", epochs=2, batch_size=32, log_every=3,
                               logger="tensorboard,mlflow", runs_dir=str(runs), progress="none", threads=1)
    run, steps_per_epoch = result.path, 11  # 360 training images (10% of 400 held out), 32 a batch, last one dropped
    logged = list(range(3, 2 * steps_per_epoch + 1, 3))
    metrics = result.metrics

    scalars = tensorboard_scalars(run)
    assert [step for step, _ in scalars["train/loss"]] == logged
    assert {"train/lr", "train/images_per_second", "epoch/train_loss", "epoch/val_acc", "test/acc"} <= set(scalars)
    assert scalars["epoch/val_acc"] == [(steps_per_epoch * (i + 1), pytest.approx(float(row["val_acc"]), abs=1e-6))
                                        for i, row in enumerate(metrics)]
    assert scalars["test/acc"][0][1] == pytest.approx(result.test_acc, abs=1e-6)
    events = EventAccumulator(str(run / "tensorboard"), size_guidance={"images": 0, "tensors": 0})
    events.Reload()
    assert {"plots/confusion_matrix", "plots/curves"} <= set(events.Tags()["images"])
    assert events.Images("plots/curves")[0].encoded_image_string[:4] == b"\x89PNG"
    config_text = events.Tensors("config/text_summary")[0].tensor_proto.string_val[0].decode()
    assert "lr: 0.002" in config_text and "model: lenet" in config_text
    assert "_hparams_/experiment" in events.PluginTagToContent("hparams")  # TensorBoard's HParams dashboard

    rows = steps_csv(run)
    assert [int(row["global_step"]) for row in rows] == logged
    assert [float(row["loss"]) for row in rows] == pytest.approx([v for _, v in scalars["train/loss"]], rel=1e-5)

    client, found = mlflow_run(runs, run)
    assert found.info.status == "FINISHED" and found.info.run_name == run.name
    assert found.data.params["lr"] == "0.002" and found.data.params["model"] == "lenet"
    assert [step for step, _ in history(client, found.info.run_id, "train/loss")] == logged
    val_acc = history(client, found.info.run_id, "epoch/val_acc")
    assert [step for step, _ in val_acc] == [step for step, _ in scalars["epoch/val_acc"]]
    assert [value for _, value in val_acc] == pytest.approx([value for _, value in scalars["epoch/val_acc"]], abs=1e-6)
    assert found.data.metrics["test/acc"] == pytest.approx(result.test_acc)
    artifacts = {item.path for item in client.list_artifacts(found.info.run_id, "plots")}
    assert {"plots/confusion_matrix.png", "plots/curves.png"} <= artifacts
    assert (runs / "mlartifacts").is_dir()  # artifacts beside the store, not in the current folder


@pytest.mark.slow
def test_a_killed_and_resumed_run_continues_the_same_curves(fashion_folder, tmp_path, empty_mlflow_db, capsys):
    """As tests/test_reliability.py kills a run: SIGKILL mid-epoch (after a step checkpoint, with steps logged past
    it), then `train --resume`. Every logger then holds each step once, with the values of an uninterrupted run."""
    extra = ["--logger", "tensorboard,mlflow", "--log-every", "5"]
    reference_runs = runs_with_mlflow(tmp_path / "reference", empty_mlflow_db)
    assert run_main(capsys, *tiny_args(fashion_folder, reference_runs, "ref", extra=extra)).returncode == 0
    runs = runs_with_mlflow(tmp_path / "killed", empty_mlflow_db)
    run = runs / "x"
    process = subprocess.Popen([*VISIONTRAIN, *tiny_args(fashion_folder, runs, "x", extra=extra)], cwd=REPO,
                               env=os.environ | {"PYTHONPATH": str(REPO)}, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE)
    assert wait_for(lambda: status(run).get("epoch") == 1 and status(run).get("step_in_epoch", 0) >= 30, process), \
        process.communicate()[1].decode()[-2000:]
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=30)
    checkpoint_step = torch.load(run / "checkpoints" / "last.pt", weights_only=True)["state"]["global_step"]
    assert int(steps_csv(run)[-1]["global_step"]) <= checkpoint_step  # steps.csv is written at checkpoints
    # As if the killed process had flushed points past its checkpoint (TensorBoard's writer flushes every 30 s):
    # the resumed run logs those steps again, so these must not show
    orphan = (checkpoint_step // 5 + 1) * 5
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(str(run / "tensorboard"))
    writer.add_scalar("train/loss", 99.0, orphan)
    writer.close()
    with open(run / "steps.csv", "a") as handle:
        handle.write(f"{orphan},2,1,99,0.001,1.0\n")
    resumed = run_main(capsys, "train", "--resume", run)
    assert resumed.returncode == 0 and "resuming" in resumed.stderr, resumed.stderr

    expected, got = tensorboard_scalars(reference_runs / "ref"), tensorboard_scalars(run)
    assert len(list((run / "tensorboard").glob("events.out.tfevents.*"))) == 3  # killed, orphan, resumed
    assert (orphan, 99.0) not in got["train/loss"] and orphan in [step for step, _ in got["train/loss"]]
    for tag in ("train/loss", "train/lr", "epoch/val_acc", "epoch/train_loss"):
        steps = [step for step, _ in got[tag]]
        assert len(steps) == len(set(steps)) and steps == sorted(steps), tag  # each step once, in order
        assert got[tag] == expected[tag], tag  # and the curve the uninterrupted run drew
    assert [(r["global_step"], r["loss"]) for r in steps_csv(run)] == \
        [(r["global_step"], r["loss"]) for r in steps_csv(reference_runs / "ref")]

    client, found = mlflow_run(runs, run)
    reference_client, reference = mlflow_run(reference_runs, reference_runs / "ref")
    assert found.info.status == "FINISHED" and len(client.search_runs([found.info.experiment_id])) == 1
    for key in ("train/loss", "epoch/val_acc", "epoch/epoch"):
        points = history(client, found.info.run_id, key)
        assert len({step for step, _ in points}) == len(points), key
        assert points == history(reference_client, reference.info.run_id, key), key


def test_a_sweep_logs_every_run_to_the_loggers_given(digits_small):
    from visiontrain.sweep import plan

    sweep = plan({"dataset": str(digits_small), "model": "lenet", "lr": "0.01,0.001", "logger": "tensorboard,mlflow"})
    assert list(sweep.axes) == ["lr"] and {p.config.logger for p in sweep.points} == {"tensorboard,mlflow"}


def test_missing_logger_package_is_one_sentence(digits_small, tmp_path, monkeypatch, capsys):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "tensorboard" else real(name, *a))
    result = run_main(capsys, "train", "--dataset", digits_small, "--model", "lenet", "--logger", "tensorboard",
                      "--runs-dir", tmp_path / "runs")
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
    assert "pip install tensorboard" in result.stderr
    assert not (tmp_path / "runs").exists()  # refused before any data was read or any folder made


# -- callbacks --------------------------------------------------------------------------------------------------------
class Pruned(Exception):
    """Like optuna.TrialPruned: an exception of the caller's that abandons the run."""


class Recorder(visiontrain.Callback):
    def __init__(self, stop_after=None, raise_after=None):
        self.calls, self.losses, self.stop_after, self.raise_after = [], [], stop_after, raise_after

    def on_run_start(self, run):
        self.calls.append(("start", run.resumed_step))

    def on_step_end(self, run, step):
        self.calls.append(("step", step.global_step))
        self.losses.append(step.loss)

    def on_epoch_end(self, run, row):
        self.calls.append(("epoch", row["epoch"]))
        if row["epoch"] == self.stop_after:
            run.stop("pruned by the test")
        if row["epoch"] == self.raise_after:
            raise Pruned("abandoned by the test")  # as optuna.TrialPruned leaves train()

    def on_run_end(self, run, summary):
        self.calls.append(("end", summary["status"]))


def test_a_callback_stops_the_run_after_epoch_1(digits_small, tmp_path):
    recorder = Recorder(stop_after=1)
    result = visiontrain.train(dataset=str(digits_small), model="lenet", epochs=3, batch_size=32, progress="none",
                               runs_dir=str(tmp_path), callbacks=[recorder], report=False, threads=1)
    assert recorder.calls == [("start", 0)] + [("step", s) for s in range(1, 12)] + [("epoch", 1), ("end", "complete")]
    assert all(np.isfinite(recorder.losses))
    summary = json.loads((result.path / "summary.json").read_text())
    assert summary["status"] == "complete" and summary["stopped_by"] == "pruned by the test"
    assert summary["epochs_completed"] == 1 and len(result.metrics) == 1 and summary["test_acc"] is not None
    assert json.loads((result.path / "status.json").read_text())["complete"] is True


def test_an_exception_in_a_callback_leaves_a_resumable_run(digits_small, tmp_path, capsys):
    recorder = Recorder(raise_after=1)
    with pytest.raises(Pruned, match="abandoned by the test"):
        visiontrain.train(dataset=str(digits_small), model="lenet", epochs=2, batch_size=32, progress="none",
                          runs_dir=str(tmp_path), name="r", callbacks=[recorder], report=False, threads=1)
    run = tmp_path / "r"
    assert recorder.calls[-1] == ("end", "stopped") and status(run)["complete"] is False
    assert not (run / "summary.json").exists()
    later = Recorder()
    result = visiontrain.train(resume=run, callbacks=[later])
    assert later.calls[0] == ("start", 11) and later.calls[-1] == ("end", "complete")
    assert result.summary["epochs_completed"] == 2


def test_callbacks_are_checked():
    with pytest.raises(ConfigError, match=r"Recorder is a class; pass an instance, Recorder\(\)"):
        visiontrain.train(dataset="mnist", callbacks=[Recorder])
