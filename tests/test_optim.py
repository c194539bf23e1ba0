"""Schedules, parameter groups, accumulation, clipping and early stopping behave as a user expects."""
from __future__ import annotations

import pytest

import visiontrain
from visiontrain.config import build_config
from visiontrain.engine.optim import build_optimizer, lr_factor


def factors(schedule, epochs=10, steps=100, **extra):
    config = build_config({"schedule": schedule, "epochs": epochs, "model": "lenet", **extra}, apply_preset=False)
    return [lr_factor(s, total_steps=epochs * steps, steps_per_epoch=steps, config=config) for s in range(epochs * steps)]


def test_step_schedule_is_steplr_per_epoch():
    f = factors("step", step_size=3, gamma=0.1)
    assert f[0] == f[299] == 1.0 and f[300] == pytest.approx(0.1) and f[600] == pytest.approx(0.01)


def test_onecycle_warms_up_then_anneals_to_near_zero():
    f = factors("onecycle")
    peak = max(range(len(f)), key=f.__getitem__)
    assert f[0] == pytest.approx(1 / 25) and f[peak] == pytest.approx(1.0) and 200 <= peak <= 300 and f[-1] < 1e-3


def test_warmup_then_cosine_and_linear():
    for schedule in ("cosine", "linear"):
        f = factors(schedule, warmup_epochs=1)
        assert f[0] == pytest.approx(0.01) and f[99] == pytest.approx(1.0) and f[-1] < 0.01
        assert all(a >= b for a, b in zip(f[100:], f[101:]))


def test_no_weight_decay_on_biases_and_norms():
    from visiontrain.models import create_model

    model = create_model("vgg-cifar", num_classes=10, in_channels=3, image_size=32)
    config = build_config({"model": "vgg-cifar", "weight_decay": 0.01, "optimizer": "adamw"}, apply_preset=False)
    optimizer = build_optimizer(model, config, backbone_lr=0.1)
    groups = optimizer.param_groups
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))
    for group in groups:
        decays = group["weight_decay"] == 0.01
        assert all((p.ndim > 1) == decays for p in group["params"])
        is_head = any(p is model.fc.weight or p is model.fc.bias for p in group["params"])
        assert group["lr"] == pytest.approx(config.lr * (1.0 if is_head else 0.1))  # discriminative lr


def test_accumulation_clipping_and_early_stopping_run(digits_small, tmp_path):
    run = visiontrain.train(dataset=str(digits_small), model="lenet", epochs=6, batch_size=16, accumulate=2,
                            clip_grad=1.0, early_stop=1, optimizer="sgd", lr=1e-6, schedule="constant",
                            runs_dir=str(tmp_path), progress="none", threads=1)
    # with a learning rate this small nothing improves, so early stopping ends the run after 1 stale epoch
    assert run.summary["epochs_completed"] < 6
    assert len(run.metrics) == run.summary["epochs_completed"]
