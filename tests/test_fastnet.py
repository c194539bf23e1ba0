"""fastnet's airbench-style recipe: the parts whose bugs would only show up as a few points of lost accuracy."""
import os
import subprocess
import sys

import pytest
import torch

from conftest import REPO, run_main
from helpers import DRIVERS, assert_bit_identical, tiny_args
from visiontrain.models.fast import Whitening

AIRBENCH = ["--model", "fastnet-s1", "--width", "0.25", "--optimizer", "sgd", "--lr", "0.2", "--bias-lr-scale", "64",
            "--lookahead", "--augment", "crop+flip", "--flip-mode", "alternate", "--no-report"]


def test_whitening_decorrelates_colour_patches():
    # Colour images are where the filter layout matters: a 1-channel test cannot tell (c, h, w) from (h, c, w).
    torch.manual_seed(0)
    smooth = torch.nn.functional.avg_pool2d(torch.randn(1000, 3, 18, 18), 3, 1)  # neighbouring pixels correlate
    mix = torch.tensor([[1.0, 0.8, 0.6], [0.2, 1.0, 0.5], [0.1, 0.3, 1.0]])  # and so do the channels
    images = torch.einsum("ij,njhw->nihw", mix, smooth)
    layer = Whitening(3)
    layer.fit(images)
    with torch.no_grad():
        out = torch.nn.functional.conv2d(images, layer.weight[:12])
    covariance = torch.cov(out.permute(1, 0, 2, 3).reshape(12, -1))
    assert torch.allclose(covariance, torch.eye(12), atol=0.2)  # eps damps the smallest eigenvalues a little


def test_batchnorm_biases_get_their_own_scaled_lr_and_the_same_decay_per_step():
    from visiontrain.config import build_config
    from visiontrain.engine.optim import build_optimizer
    from visiontrain.models import create_model

    model = create_model("fastnet-s1", num_classes=10, in_channels=1, image_size=28, width=0.25)
    norm_biases = {id(m.bias) for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)}
    config = build_config({"model": "fastnet-s1", "optimizer": "sgd", "lr": 0.5, "weight_decay": 5e-4,
                           "bias_lr_scale": 64}, apply_preset=False)
    groups = build_optimizer(model, config).param_groups
    scaled = [g for g in groups if {id(p) for p in g["params"]} == norm_biases]
    assert len(scaled) == 1 and scaled[0]["lr"] == 32.0
    assert scaled[0]["lr"] * scaled[0]["weight_decay"] == pytest.approx(0.5 * 5e-4)  # shrinks like the weights
    weights = [g for g in groups if g["weight_decay"] == 5e-4]
    assert weights and all(g["lr"] == 0.5 for g in weights)
    # the default leaves every bias in the plain no-decay group
    plain = build_optimizer(model, config.replace(bias_lr_scale=1.0)).param_groups
    assert {g["lr"] for g in plain} == {0.5} and all(g["weight_decay"] in (0.0, 5e-4) for g in plain)


def test_lookahead_pulls_the_weights_to_a_slow_average_and_ends_on_it():
    from visiontrain.engine.ema import Lookahead

    model = torch.nn.Linear(2, 1, bias=False)
    torch.nn.init.zeros_(model.weight)
    lookahead = Lookahead(model, total_steps=10)
    with torch.no_grad():
        model.weight.fill_(1.0)  # what five optimiser steps moved the weights to
    lookahead.step(model, 4)
    assert model.weight[0, 0].item() == 1.0  # only every 5th step
    lookahead.step(model, 5)
    decay = 0.95 ** 5 * 0.5 ** 3  # small early in the run: the slow weights follow the fast ones closely
    assert model.weight[0, 0].item() == pytest.approx(1 - decay)
    with torch.no_grad():
        model.weight.fill_(5.0)
    lookahead.step(model, 10)  # the last step: the model keeps the slow weights, not the last fast ones
    assert model.weight[0, 0].item() == pytest.approx(1 - decay)


def test_alternating_flip_mirrors_each_image_on_every_other_epoch(fashion_folder, tmp_path):
    from visiontrain.config import build_config
    from visiontrain.engine.build import build

    config = build_config({"dataset": str(fashion_folder), "model": "fastnet-s1", "width": 0.25, "epochs": 2,
                           "augment": "flip", "flip_mode": "alternate", "runs_dir": str(tmp_path), "threads": 1,
                           "progress": "none", "report": False}, apply_preset=False)
    trainer = build(config).trainer
    indices = torch.arange(64)
    (even, _), (odd, _), (again, _) = (trainer.batch(indices, epoch, 0) for epoch in (0, 1, 2))
    assert torch.equal(odd, even.flip(3)) and torch.equal(again, even)  # each image, both ways, within two epochs
    mirrored = (even != trainer.normalize(trainer.images[indices].float())).flatten(1).any(1)
    assert 10 < int(mirrored.sum()) < 54  # and about half the images start mirrored


@pytest.mark.slow
def test_the_airbench_recipe_resumes_bit_identical(fashion_folder, tmp_path, capsys):
    # lookahead's slow weights, the bias group and the per-image flips are all state a resume must restore
    reference = run_main(capsys, *tiny_args(fashion_folder, tmp_path, "reference", extra=AIRBENCH))  # in this process
    assert reference.returncode == 0, reference.stderr
    killed = subprocess.run([sys.executable, DRIVERS / "fail_checkpoint_write.py", "half", "4", "--",
                             *tiny_args(fashion_folder, tmp_path, "x", extra=AIRBENCH)], capture_output=True, text=True,
                            cwd=REPO, env=os.environ | {"PYTHONPATH": str(REPO)})
    assert killed.returncode == 137, killed.stderr
    state = torch.load(tmp_path / "x" / "checkpoints" / "last.pt", weights_only=True)
    assert state["state"]["step_in_epoch"] > 0 and state["lookahead"]  # stopped mid-epoch, with a slow state
    resumed = run_main(capsys, "train", "--resume", tmp_path / "x", "--no-report")
    assert resumed.returncode == 0, resumed.stderr
    assert_bit_identical(tmp_path / "x", tmp_path / "reference")
    first, second = (torch.load(tmp_path / r / "checkpoints" / "last.pt", weights_only=True)["lookahead"]
                     for r in ("x", "reference"))
    assert all(torch.equal(first[k], second[k]) for k in first)


def test_the_global_max_pool_sends_the_gradient_where_adaptive_max_pool_does_even_with_ties():
    """fastnet's pool is not AdaptiveMaxPool2d (no deterministic CUDA backward); it must still train the same: a
    tie (a flat black background) gives the whole gradient to one position, not a share to each."""
    from visiontrain.models.fast import GlobalMaxPool

    x = torch.zeros(2, 3, 3, 3)
    x[1, :, 1, 2] = 1.0  # one clear maximum in the second image; the first is all ties
    x = x.contiguous(memory_format=torch.channels_last)
    grads = []
    for pool in (GlobalMaxPool(), torch.nn.AdaptiveMaxPool2d(1)):
        leaf = x.clone().requires_grad_()
        (pool(leaf).flatten() * torch.arange(1.0, 7.0)).sum().backward()
        grads.append(leaf.grad)
    assert torch.equal(grads[0], grads[1]) and grads[0][0].count_nonzero() == 3  # one position per channel
