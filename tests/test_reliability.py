"""The reliability contract (docs/reliability.md), with faults injected from outside the product code."""
from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

import visiontrain
from conftest import REPO, VISIONTRAIN, run_cli, run_main
from helpers import DRIVERS, assert_bit_identical, final_state, run_status, tiny_args, wait_for
from visiontrain.errors import CheckpointError


@pytest.fixture(scope="module")
def reference_run(fashion_folder, tmp_path_factory):
    runs = tmp_path_factory.mktemp("reference")
    result = run_cli(*tiny_args(fashion_folder, runs, "ref"))
    assert result.returncode == 0, result.stderr
    return runs / "ref"


@pytest.mark.slow
@pytest.mark.parametrize("where", ["mid-epoch", "epoch-boundary"])
@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGTERM])
def test_killed_run_resumes_bit_identical(fashion_folder, tmp_path, reference_run, where, how, capsys):
    run = tmp_path / "x"
    process = subprocess.Popen([*VISIONTRAIN, *tiny_args(fashion_folder, tmp_path, "x")], cwd=REPO,
                               env=os.environ | {"PYTHONPATH": str(REPO)}, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if where == "mid-epoch":
        marker = lambda: run_status(run).get("epoch") == 1 and run_status(run).get("step_in_epoch", 0) >= 14  # noqa: E731
    else:
        marker = lambda: (run / "metrics.csv").is_file() and len((run / "metrics.csv").read_text().splitlines()) >= 2  # noqa: E731
    assert wait_for(marker, process), process.communicate()[1].decode()[-2000:]
    started = time.monotonic()
    process.send_signal(how)
    _, stderr = process.communicate(timeout=30)
    if how == signal.SIGTERM:
        assert time.monotonic() - started < 10 and process.returncode == 128 + signal.SIGTERM
        assert b"--resume" in stderr and b"Traceback" not in stderr
    assert torch.load(run / "checkpoints" / "last.pt", weights_only=True)  # loadable after the kill
    resumed = run_main(capsys, "train", "--resume", run)  # in this process: the killed run was a real one
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming" in resumed.stderr
    assert_bit_identical(run, reference_run)


@pytest.mark.slow
def test_kill_while_writing_a_checkpoint_leaves_the_previous_one(fashion_folder, tmp_path, reference_run, capsys):
    run = tmp_path / "x"
    result = subprocess.run([sys.executable, DRIVERS / "fail_checkpoint_write.py", "half", "4", "--",
                             *tiny_args(fashion_folder, tmp_path, "x")], capture_output=True, text=True, cwd=REPO,
                            env=os.environ | {"PYTHONPATH": str(REPO)})
    assert result.returncode == 137
    assert list((run / "checkpoints").glob("*.tmp"))  # the half-written temp file is there...
    state = torch.load(run / "checkpoints" / "last.pt", weights_only=True)  # ...and last.pt is the previous, whole
    assert state["state"]["global_step"] > 0
    resumed = run_main(capsys, "train", "--resume", run)
    assert resumed.returncode == 0, resumed.stderr
    assert not list((run / "checkpoints").glob("*.tmp"))  # removed on the next start
    assert_bit_identical(run, reference_run)


def test_disk_full_names_the_checkpoint_and_keeps_the_previous(fashion_folder, tmp_path):
    run = tmp_path / "x"
    result = subprocess.run([sys.executable, DRIVERS / "fail_checkpoint_write.py", "enospc", "3", "--",
                             *tiny_args(fashion_folder, tmp_path, "x", epochs=1)], capture_output=True, text=True,
                            cwd=REPO, env=os.environ | {"PYTHONPATH": str(REPO)})
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "No space left" in result.stderr and "checkpoints" in result.stderr and "disk full" in result.stderr
    before = hashlib.sha256((run / "checkpoints" / "last.pt").read_bytes()).hexdigest()
    assert torch.load(run / "checkpoints" / "last.pt", weights_only=True)["state"]["global_step"] == 14
    assert hashlib.sha256((run / "checkpoints" / "last.pt").read_bytes()).hexdigest() == before


def test_nan_stops_at_the_step_and_writes_no_nan(fashion_folder, tmp_path, capsys):
    result = run_main(capsys, *tiny_args(fashion_folder, tmp_path, "nan", epochs=2, extra=["--lr", "99", "--optimizer", "sgd", "--momentum", "0.99"]))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "loss is" in result.stderr and "epoch 1, step" in result.stderr and "learning rate" in result.stderr
    for path in (tmp_path / "nan" / "checkpoints").glob("*.pt"):
        checkpoint = torch.load(path, weights_only=True)
        assert all(torch.isfinite(t).all() for t in checkpoint["model"].values() if t.is_floating_point())


class Evil:
    def __reduce__(self):
        return (os.system, ("touch PWNED",))


@pytest.mark.parametrize("force_unsafe_env", [False, True])
def test_malicious_checkpoint_is_refused_everywhere(tmp_path, monkeypatch, digits_small, force_unsafe_env):
    monkeypatch.chdir(tmp_path)
    if force_unsafe_env:
        monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    evil = tmp_path / "evil.pt"
    torch.save({"kind": "visiontrain-checkpoint", "payload": Evil()}, evil)
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.yaml").write_text(f"dataset: {digits_small}\nmodel: lenet\n")
    (run / "checkpoints" / "last.pt").write_bytes(evil.read_bytes())
    with pytest.raises(CheckpointError, match="not a safe visiontrain checkpoint"):
        visiontrain.load(evil)
    with pytest.raises(CheckpointError, match="not a safe visiontrain checkpoint"):
        visiontrain.load(run)
    resume = run_cli("train", "--resume", run, env={"TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1"} if force_unsafe_env else None)
    assert resume.returncode == 2 and "not a safe visiontrain checkpoint" in resume.stderr
    weights = run_cli("train", "--dataset", digits_small, "--model", "lenet", "--weights", evil, "--epochs", "1",
                      "--runs-dir", tmp_path / "runs", cwd=tmp_path)
    assert weights.returncode == 2 and "not a safe weights file" in weights.stderr
    assert not (tmp_path / "PWNED").exists() and not (REPO / "PWNED").exists()


def test_corrupt_checkpoint_is_named_and_resume_falls_back_to_the_newest_valid(reference_run, tmp_path):
    import shutil

    run = tmp_path / "copy"
    shutil.copytree(reference_run, run)
    last = run / "checkpoints" / "last.pt"
    last.write_bytes(last.read_bytes()[: last.stat().st_size // 2])
    with pytest.raises(CheckpointError, match=f"{last}.*truncated or corrupt"):
        visiontrain.load(last)
    from visiontrain.engine.checkpoint import newest_valid_checkpoint
    from visiontrain.run import RunDir

    checkpoint, skipped = newest_valid_checkpoint(RunDir(run).last, RunDir(run).best)
    assert skipped and skipped[0][0] == last and checkpoint["state"]["epoch"] >= 1


def test_resume_with_a_changed_model_is_refused_listing_the_field(reference_run, capsys):
    result = run_main(capsys, "train", "--resume", reference_run, "--model", "lenet", "--batch-size", "8")
    assert result.returncode == 2 and "model" in result.stderr and "batch_size" in result.stderr


def test_checkpoint_from_a_newer_format_is_refused(reference_run, tmp_path):
    checkpoint = torch.load(reference_run / "checkpoints" / "best.pt", weights_only=True)
    checkpoint["format_version"] = 99
    torch.save(checkpoint, tmp_path / "future.pt")
    with pytest.raises(CheckpointError, match="newer than this visiontrain"):
        visiontrain.load(tmp_path / "future.pt")


def test_raising_epochs_on_resume_extends_the_run(reference_run, tmp_path, capsys):
    import shutil

    run = tmp_path / "more"
    shutil.copytree(reference_run, run)
    result = run_main(capsys, "train", "--resume", run, "--epochs", "4")
    assert result.returncode == 0, result.stderr
    assert len((run / "metrics.csv").read_text().splitlines()) == 1 + 4
    assert "epochs: 4" in (run / "config.yaml").read_text()


def test_a_stop_at_an_epochs_last_step_saves_that_epoch_and_resumes_exactly(fashion_folder, tmp_path, monkeypatch,
                                                                            reference_run, capsys):
    """SIGTERM during the last step of epoch 1: epoch 1 is finished and saved (not lost), then the run stops."""
    from visiontrain import fit as fit_module
    from visiontrain.errors import TrainingStopped

    original = fit_module.Fit.after_step

    def after_step(self, state, epoch, step):
        if epoch == 0 and step + 1 == self.built.loader.steps_per_epoch:
            self.stop_signal = signal.SIGTERM  # as the handler would set it
        original(self, state, epoch, step)

    monkeypatch.setattr(fit_module.Fit, "after_step", after_step)
    args = dict(dataset=str(fashion_folder), model="simple-cnn", epochs=3, batch_size=32, optimizer="adam", lr=0.002,
                threads=1, runs_dir=str(tmp_path), name="x", checkpoint_every=7, progress="none", augment="crop",
                ema=0.9)
    with pytest.raises(TrainingStopped, match="at the end of epoch 1; checkpoint saved") as stopped:
        visiontrain.train(**args)
    assert stopped.value.exit_code == 128 + signal.SIGTERM
    state = final_state(tmp_path / "x")["state"]
    assert (state["epoch"], state["step_in_epoch"]) == (1, 0)  # the whole epoch, its metrics row included
    assert len((tmp_path / "x" / "metrics.csv").read_text().splitlines()) == 2
    monkeypatch.setattr(fit_module.Fit, "after_step", original)
    resumed = run_main(capsys, "train", "--resume", tmp_path / "x")
    assert resumed.returncode == 0, resumed.stderr
    assert_bit_identical(tmp_path / "x", reference_run)
