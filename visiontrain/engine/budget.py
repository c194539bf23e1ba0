"""--time: size a run to a wall-clock budget, so that its schedule ends at the budget rather than being cut.

Ultralytics' `time=` recomputes the number of epochs and stops training when the time is up, so its schedule is cut
short. Here the run is planned once, before its first real step: the training step is timed on the run's own
trainer (a few steps, after which the model, optimiser, schedule, EMA and RNG are put back exactly as they were, so
the run is the one that `--epochs E --max-steps S` gives), the per-epoch validation and the final evaluation are timed
on slices of their splits, and epochs and max_steps are chosen so that everything (start-up and data loading
already spent, training, validation, the test evaluation, checkpoints and the report) fits. The one-cycle (or any)
schedule is then built for exactly those steps, so it anneals to its end inside the budget. At each epoch's end the
plan is revised from what that epoch took (resize_plan): the first timing covers a second of steps, and a shared
machine can get slower for minutes (a 180 s Fashion-MNIST budget ran 12% over without this).
"""
from __future__ import annotations

import copy
import dataclasses
import math
import sys
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable

import torch

from ..config import Config
from ..errors import ConfigError
from ..presets import LONG_BUDGET
from ..metrics.input_check import ranges_sample, statistics
from .build import Setup, probe_epochs
from .distributed import any_rank, broadcast_string
from .loop import Normalizer, TrainState, predict_logits, tta_passes
from .probe import PROBE_MAX_IMAGES

REPORT_SECONDS = 2.5  # plots, the Grad-CAM gallery and report.html at the end, and the process's exit (measured
# 1.9 s on Fashion-MNIST, 3.2 s on CIFAR-10, 2 cores with native bf16; SAFETY covers the difference: docs/benchmarks.md)
CHECKPOINT_SECONDS = 0.1  # per epoch: last.pt and best.pt of a small network, atomically
SAFETY = 0.03  # of the budget, for what the timings miss (a busy machine, the last epoch's summary)
PROBE_SECONDS = 1.0  # how long the training step is timed, after two warm-up steps (at most ...
PROBE_SHARE = 0.02  # ... this share of the budget: 0.26 s of a 13 s one; at least 3 steps, or 1 of a slow step)
LINEAR_FIT_SECONDS = 3.0  # --finetune probe: the L-BFGS fits of the head on cached features (measured 0.5-2 s)
TTA_SHARE = 0.10  # test-time augmentation runs the evaluation's forward passes 3-4 times (loop.tta_passes); when
# the passes it adds would take above this share of the budget, the steps they would cost are worth more than its
# ~0.1-0.3 points (a 15 s Fashion-MNIST budget: 2.8 s of TTA, or ~100 more steps, measured: docs/benchmarks.md), so
# the plan turns it off and says so


@dataclass
class Plan:
    budget: float  # seconds
    elapsed: float  # seconds already spent when the plan was made (start-up, data, model, the timing itself)
    step_seconds: float  # one training step
    linear_probe_seconds: float  # --finetune probe's first epoch: the features of the training split and the fit
    epoch_validation_seconds: float
    evaluation_seconds: float  # the test evaluation at the end
    fixed_seconds: float  # the report and checkpoints
    epochs: int
    steps: int
    tta: bool = False  # test-time augmentation kept (False also when the config had none)
    tta_seconds: float = 0.0  # what its added passes cost (in evaluation_seconds when kept), or would have cost
    resized: list = dataclasses.field(default_factory=list)  # [{after_epoch, step_seconds, steps}]: resize_plan
    last_epoch_end: tuple | None = dataclasses.field(default=None, repr=False)  # (elapsed, train s, steps): resize_plan

    def describe(self) -> dict[str, Any]:
        return {key: round(value, 3) if isinstance(value, float) else value for key, value in asdict(self).items()
                if key != "last_epoch_end"}


def plan_run(built: Setup, budget: float, elapsed: Callable[[], float],
             rebuild: Callable[[Config], Setup] | None = None) -> tuple[Setup, Plan]:
    """plan(), said in one line, and applied: `built` is re-planned for the chosen epochs and steps (its config then
    records them, so repeating the config repeats the run while the plan holds). Under torchrun every process trains
    rank 0's plan (their own timings may differ by a step, and the collectives need one number of steps).
    rebuild(config): the same data with another network, for a preset's network for long budgets (LONG_BUDGET);
    the Setup that trains comes back with the plan."""
    chosen, env = plan(built, budget, elapsed), built.env
    built, chosen = _long_budget_network(built, chosen, budget, elapsed, rebuild)
    if env.enabled:
        agreed = broadcast_string(f"{chosen.epochs} {chosen.steps}" if env.is_main else None, env)
        chosen.epochs, chosen.steps = map(int, agreed.split())
    dropped_tta = built.config.tta and not chosen.tta
    built.replan(built.config.replace(epochs=chosen.epochs, max_steps=chosen.steps, time=None, tta=chosen.tta))
    if env.is_main:
        print(f"visiontrain: a budget of {budget:g} s: {chosen.step_seconds * 1000:.0f} ms a step, so {chosen.steps} "
              f"steps ({chosen.epochs} epochs, the schedule sized to them), then the evaluation and report"
              + ("; test-time augmentation off (it would take more than "
                 f"{TTA_SHARE:.0%} of the budget)" if dropped_tta else ""), file=sys.stderr)
    return built, chosen


LONG_BUDGET_STEP = 2.0  # a long-budget network's step is at least this many of its preset's (2.8-3.3x measured): a
# plan with fewer than this many times its epochs cannot fit them, and its step is not timed


def _long_budget_network(built: Setup, chosen: Plan, budget: float, elapsed: Callable[[], float],
                         rebuild: Callable[[Config], Setup] | None) -> tuple[Setup, Plan]:
    """The preset's network for long budgets (presets.LONG_BUDGET) and its plan, when the budget trains enough epochs
    of it; else `built` and `chosen` as they are. Not under torchrun (every process would have to time it alike)."""
    config = built.config
    if rebuild is None or built.env.enabled or config.preset not in LONG_BUDGET or not config.long_budget_network:
        return built, chosen  # (the field is off when --model or --width was named: config.build_config)
    epochs, network = LONG_BUDGET[config.preset]
    if chosen.epochs < LONG_BUDGET_STEP * epochs:
        return built, chosen
    other = rebuild(config.replace(**network))
    try:
        theirs = plan(other, budget, elapsed)
    except ConfigError:  # not one step of it fits what is left
        return built, chosen
    if theirs.epochs < epochs:
        return built, chosen
    print(f"visiontrain: the budget trains {theirs.epochs} epochs of {other.config.model} (width "
          f"{other.config.width:g}), the {config.preset} preset's network for budgets of {epochs} epochs or more of "
          f"it, instead of {chosen.epochs} of {config.model} (width {config.width:g})", file=sys.stderr)
    return other, theirs


def plan(built: Setup, budget: float, elapsed: Callable[[], float]) -> Plan:
    """The epochs and steps of `built` that fit `budget` seconds of wall time; elapsed() gives the seconds spent so
    far (read after the timings, which cost time too)."""
    config, data = built.config, built.dataset
    step_seconds = time_training_step(built, min(PROBE_SECONDS, PROBE_SHARE * budget))
    per_image_val = _inference_seconds(built, data.val.images, built.normalize) if data.val is not None \
        else 0.0
    fp32 = Normalizer(built.mean, built.std, dataclasses.replace(built.precision, autocast_dtype=None))  # Predictor's
    per_image_test = _inference_seconds(built, data.test.images, fp32) if data.test is not None else 0.0
    validation = per_image_val * (len(data.val) if data.val is not None else 0)
    evaluated = len(data.test) if data.test is not None else 0
    if config.calibrate and data.val is not None and not config.overfit_batch:  # posthoc.py fits the temperature on
        evaluated += len(data.val)  # the validation logits of the inference path, after training
    evaluation = per_image_test * evaluated  # without TTA; its passes are timed as one (they are the same model's)
    tta_seconds = evaluation * (tta_passes(built.dataset.allow_flip) - 1) if config.tta else 0.0
    tta = config.tta and tta_seconds <= TTA_SHARE * budget
    evaluation += tta_seconds if tta else 0.0
    evaluation += _input_ranges_seconds(data.train.images)
    fixed = REPORT_SECONDS if config.report else 0.0
    probe = probe_epochs(built.finetune)  # epochs that take no step, each with a validation and a checkpoint
    linear_probe = 0.0
    if probe:  # the features are the validation's forward pass, over the (sampled) training split
        per_image = per_image_val or _inference_seconds(built, data.train.images, built.normalize, sample=64)
        linear_probe = per_image * min(len(data.train), PROBE_MAX_IMAGES) + LINEAR_FIT_SECONDS
    spent, spe = elapsed(), built.loader.steps_per_epoch
    available = budget * (1 - SAFETY) - spent - evaluation - fixed - linear_probe - probe * (
        validation + CHECKPOINT_SECONDS)
    best = fit_steps(available, validation + CHECKPOINT_SECONDS, step_seconds, spe)
    if best is None:
        before_step = evaluation + fixed + linear_probe + (1 + probe) * validation  # all but the step and checkpoints
        need = spent + before_step + (1 + probe) * CHECKPOINT_SECONDS + step_seconds
        raise ConfigError(f"time: a budget of {budget:g} s does not leave one training step: {spent:.1f} s went to "
                          f"start-up, loading the data and timing the step, and the evaluation and report need about "
                          f"{before_step:.1f} s more; give at least {math.ceil(need / 0.95)} s")
    epochs, steps = best
    return Plan(budget, spent, step_seconds, linear_probe, validation, evaluation, fixed, probe + epochs, steps, tta,
                tta_seconds)


def fit_steps(seconds: float, per_epoch: float, step: float, steps_per_epoch: int) -> tuple[int, int] | None:
    """(epochs, steps) that fit `seconds`, each epoch costing `per_epoch` (validation, checkpoint) beyond its steps:
    the most steps, in as few epochs as hold them (the last one partial); None when not one step fits."""
    best = None
    for epochs in range(1, 1_000_000):
        steps = math.floor((seconds - epochs * per_epoch) / step)
        if steps <= (epochs - 1) * steps_per_epoch:  # this many epochs would not reach their last one
            break
        best = (epochs, min(steps, epochs * steps_per_epoch))
        if steps < epochs * steps_per_epoch:
            break  # more epochs only cost more validation: fewer steps
    return best


RESIZE_TOLERANCE = 0.05  # of the steps: a revision smaller than this leaves the plan as it is (noise: 2-3% an epoch)


def resize_plan(built: Setup, chosen: Plan, state: TrainState, elapsed: float) -> int | None:
    """At an epoch's end: the run's steps in all, revised from what its last epoch took (its steps, and its
    validation, checkpoints and logging), so that a run on a machine that got busier or freer, or a first timing off
    by a few percent, still ends at the budget with its schedule complete; None when the plan holds (within
    RESIZE_TOLERANCE). Under torchrun every process takes rank 0's number."""
    env, now = built.env, (elapsed, state.train_seconds, state.global_step)
    before, chosen.last_epoch_end = chosen.last_epoch_end or (chosen.elapsed, 0.0, 0), now
    total = None
    if env.is_main and now[2] > before[2]:
        step = (now[1] - before[1]) / (now[2] - before[2])  # the last epoch's steps, warm-up of the first excluded
        overhead = max(0.0, (now[0] - before[0]) - (now[1] - before[1]))  # its validation, checkpoint, logging
        spe, done = built.loader.steps_per_epoch, state.global_step
        left = chosen.budget * (1 - SAFETY) - elapsed - chosen.evaluation_seconds - chosen.fixed_seconds
        total = done + (fit_steps(left, overhead, step, spe) or (0, 0))[1]
        if abs(total - built.total_steps) <= RESIZE_TOLERANCE * built.total_steps:
            total = None
        else:
            if not chosen.resized:  # said once; summary.json's time_budget lists every revision
                print(f"visiontrain: {step * 1000:.1f} ms a step in epoch {state.epoch}, "
                      f"{chosen.step_seconds * 1000:.1f} ms planned: {total} steps in all instead of "
                      f"{built.total_steps}, the schedule resized to end at the budget", file=sys.stderr)
            chosen.resized.append({"after_epoch": state.epoch, "step_seconds": round(step, 5), "steps": total})
    if env.enabled:
        total = broadcast_string(str(total) if env.is_main else None, env)
        total = None if total == "None" else int(total)
    return total


def time_training_step(built: Setup, seconds: float = PROBE_SECONDS) -> float:
    """Seconds of one training step of `built`, timed for `seconds` on its own trainer; every piece of state the steps
    change (weights, BatchNorm statistics, optimiser, schedule, EMA, lookahead, grad scaler, RNG) is restored after."""
    trainer = built.trainer
    saved = copy.deepcopy(built.parts_state())  # what a checkpoint holds of the weights and training parts
    rng = torch.get_rng_state(), torch.cuda.get_rng_state_all() if built.device.type == "cuda" else None
    after_step, trainer.after_step = trainer.after_step, lambda state, epoch, step: None
    steps_per_epoch = built.loader.steps_per_epoch
    try:
        state = TrainState()
        # warm-up: the first step builds kernels and the first optimiser step imports dynamo, and the second still
        # ran 1.4x the steady step of efficientnet_lite0 at 224 px (4.8 s timed after one warm-up step, 3.4 s after
        # two, 3.5 s in the epoch). A slow step (one that outlasts the timing's `seconds`) is then timed once: the 2 +
        # 3 steps of before took 27 s of a 2-minute budget there, every one of them thrown away
        trainer.train_one_epoch(state, 0, 1)
        _synchronize(built.device)  # the first step's queued GPU work is not the second's time
        started = time.perf_counter()
        trainer.train_one_epoch(state, 0, min(2, steps_per_epoch))  # (none when an epoch is one step)
        _synchronize(built.device)
        slow = any_rank(time.perf_counter() - started >= seconds, built.env, built.device)
        least, per_call = (1, 1) if slow else (3, 2)  # timed steps at least, and steps per train_one_epoch call
        steps, started = 0, time.perf_counter()
        # under torchrun each step is a collective, so every process must take as many: they go on while any wants to
        while any_rank(time.perf_counter() - started < seconds or steps < least, built.env, built.device):
            if state.step_in_epoch >= steps_per_epoch:
                state.step_in_epoch = 0
            before = state.step_in_epoch
            trainer.train_one_epoch(state, 0, min(steps_per_epoch, before + per_call))
            steps += state.step_in_epoch - before
            _synchronize(built.device)
        seconds = (time.perf_counter() - started) / steps
    finally:
        trainer.after_step = after_step
        trainer.pending.clear()
        built.load_parts(saved)
        built.optimizer.zero_grad(set_to_none=True)
        torch.set_rng_state(rng[0])
        if rng[1] is not None:
            torch.cuda.set_rng_state_all(rng[1])
    return seconds


def _inference_seconds(built: Setup, images: Any, normalize: Normalizer, sample: int | None = None) -> float:
    """Seconds per image of `built.model`'s inference on up to `sample` images of a split: by default a batch of the
    evaluation's size (per image, 1024 MNIST images took 1.3x what 256 do), up to 4 MB of pixels."""
    if sample is None:
        sample = min(built.config.eval_batch_size, max(64, (4 << 20) // max(1, math.prod(images.shape[1:]))))
    batch = images[:min(sample, len(images))]
    seconds = []
    for _ in range(2):  # the first pass at this batch shape builds its kernels (oneDNN): 1.8x the second on CIFAR
        started = time.perf_counter()
        predict_logits(built.model, batch, normalize)
        _synchronize(built.device)
        seconds.append(time.perf_counter() - started)
    return seconds[-1] / len(batch)


def _input_ranges_seconds(images: Any) -> float:
    """Seconds that posthoc's fit of the input ranges (metrics/input_check.fit_ranges) will take: timed here on
    up to 256 training images, scaled to the sample it measures."""
    sample = images[:min(256, len(images))]
    started = time.perf_counter()
    statistics(sample)
    return (time.perf_counter() - started) / max(1, len(sample)) * ranges_sample(len(images), tuple(images.shape[1:]))


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
