"""Schedules, parameter groups, accumulation, clipping and early stopping behave as a user expects."""
from __future__ import annotations

import pytest
import torch

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


def test_early_stopping_ends_the_run_after_the_given_stale_epochs(digits_small, tmp_path):
    run = visiontrain.train(dataset=str(digits_small), model="lenet", epochs=6, batch_size=16, accumulate=2,
                            clip_grad=1.0, early_stop=1, optimizer="sgd", lr=1e-6, schedule="constant",
                            runs_dir=str(tmp_path), progress="none", threads=1)
    # with a learning rate this small nothing improves, so early stopping ends the run after 1 stale epoch
    assert run.summary["epochs_completed"] < 6
    assert len(run.metrics) == run.summary["epochs_completed"]
    # the rule recomputed from metrics.csv: the run ends at the first epoch whose val_acc is no better than the best
    best, expected_end = -1.0, None
    for epoch, row in enumerate(run.metrics, start=1):
        if float(row["val_acc"]) > best:
            best = float(row["val_acc"])
        elif expected_end is None:
            expected_end = epoch
    assert run.summary["epochs_completed"] == expected_end


# -- accumulation and clipping, on the real training loop ---------------------------------------------------------
class FixedBatches:
    """A loader whose one epoch is the given steps of training indices, in order (the Trainer asks only this)."""

    def __init__(self, *steps: torch.Tensor):
        self.steps = steps
        self.steps_per_epoch = len(steps)

    def batches(self, epoch: int, start_step: int = 0, stop_step: int | None = None):
        return enumerate(self.steps[start_step:stop_step], start=start_step)


def lenet_setup(digits_small, **fields):
    """build(config) of lenet (no BatchNorm: a batch of 8 and one of 16 see the same function), no augmentation,
    fp32, plain SGD at a constant rate."""
    from visiontrain.engine.build import build

    config = build_config({"dataset": str(digits_small), "model": "lenet", "augment": "none", "precision": "fp32",
                           "optimizer": "sgd", "momentum": 0.0, "weight_decay": 0.0, "lr": 0.5,
                           "schedule": "constant", "threads": 1, "progress": "none", **fields}, apply_preset=False)
    return build(config)


def weights(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def record_gradients_at_step(optimizer) -> list[list[torch.Tensor]]:
    """The gradients as the optimiser sees them when it steps (after accumulation and clipping), one list a step."""
    seen = []
    optimizer.register_step_pre_hook(lambda opt, args, kwargs: seen.append(
        [p.grad.detach().clone() for group in opt.param_groups for p in group["params"] if p.grad is not None]))
    return seen


def total_norm(gradients: list[torch.Tensor]) -> float:
    return float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in gradients])))


def test_accumulating_two_steps_of_8_updates_the_weights_as_one_step_of_16(digits_small):
    from visiontrain.engine.loop import TrainState

    whole, accumulated = (lenet_setup(digits_small, batch_size=size, accumulate=steps)
                          for size, steps in ((16, 1), (8, 2)))
    start = weights(whole.model)
    assert all(torch.equal(start[k], v) for k, v in weights(accumulated.model).items())  # the same seeded start
    indices = torch.arange(16)
    whole.trainer.loader = FixedBatches(indices)
    accumulated.trainer.loader = FixedBatches(indices[:8], indices[8:])
    whole_steps, accumulated_steps = (record_gradients_at_step(s.optimizer) for s in (whole, accumulated))
    for setup in (whole, accumulated):
        setup.trainer.train_one_epoch(TrainState(), 0)
    assert len(whole_steps) == len(accumulated_steps) == 1  # one optimiser step each: after the 2nd batch of 8
    for mine, theirs in zip(accumulated_steps[0], whole_steps[0]):
        assert torch.allclose(mine, theirs, rtol=1e-4, atol=1e-6)
    after, reference = weights(accumulated.model), weights(whole.model)
    moved = max(float((reference[k] - start[k]).abs().max()) for k in start)
    assert moved > 1e-3  # the step changed the weights by far more than the tolerance below
    for k in start:
        assert torch.allclose(after[k], reference[k], rtol=1e-4, atol=1e-6), k


def test_clipping_hands_the_optimiser_gradients_of_at_most_the_limit_in_the_same_direction(digits_small):
    from visiontrain.engine.loop import TrainState

    limit = 0.05
    plain, clipped = (lenet_setup(digits_small, batch_size=16, clip_grad=clip) for clip in (None, limit))
    recorded = []
    for setup in (plain, clipped):
        setup.trainer.loader = FixedBatches(torch.arange(16), torch.arange(16, 32))
        recorded.append(record_gradients_at_step(setup.optimizer))
        setup.trainer.train_one_epoch(TrainState(), 0)
    unclipped, seen = recorded
    assert len(seen) == 2
    assert total_norm(unclipped[0]) > 10 * limit  # so clipping has work to do
    for gradients in seen:
        assert total_norm(gradients) <= limit * (1 + 1e-5)
    # the first step's gradient is the unclipped one scaled down to the limit: same direction, norm = limit
    scale = limit / total_norm(unclipped[0])
    for mine, full in zip(seen[0], unclipped[0]):
        assert torch.allclose(mine, full * scale, rtol=1e-4, atol=1e-8)
