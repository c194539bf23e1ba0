"""Compute efficiency of a preset's training step: FLOPs counted by torch.utils.flop_counter, divided by time.

    python benchmarks/compute_efficiency.py [--preset cifar10] [--batch-size N] [--steps 20] [--profile]

Prints GFLOP per image (forward + backward), images/s and GFLOP/s for the step visiontrain runs (same model,
precision and memory format as `visiontrain train --preset ...` picks on this machine), median of the timed steps.
--profile: where the step's time goes, by kind of operator (torch.profiler's self CPU time over the timed steps).
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from visiontrain.config import build_config
from visiontrain.engine.optim import build_optimizer
from visiontrain.engine.precision import choose_precision, resolve_device
from visiontrain.models import create_model
from visiontrain.presets import LONG_BUDGET

SHAPES = {"fashion-mnist": (1, 28), "mnist": (1, 28), "cifar10": (3, 32)}


# operator name fragments -> the kind a profile reports them under (the first that matches; the rest is "other")
KINDS = (("convolution_backward", "convolution backward"), ("conv", "convolution forward"),
         ("gelu", "GELU"), ("max_pool", "max-pooling"), ("batch_norm", "BatchNorm"), ("native_layer_norm", "BatchNorm"),
         ("_foreach", "optimiser"), ("sgd", "optimiser"), ("copy_", "copies and casts (autocast)"),
         ("to_copy", "copies and casts (autocast)"), ("mm", "linear head"), ("cross_entropy", "loss"),
         ("nll_loss", "loss"), ("log_softmax", "loss"))


def measure(preset: str, batch_size: int | None = None, steps: int = 20, profile: bool = False,
            long_budget: bool = False) -> dict:
    """The preset's training step on random images of its shape: GFLOP per image, images/s and GFLOP/s (median);
    profile: also the share of the steps' self CPU time by kind of operator (KINDS); long_budget: the step of the
    preset's network for long budgets (presets.LONG_BUDGET), which --time trains when the budget fits enough of it."""
    config = build_config({"preset": preset} | (LONG_BUDGET[preset][1] if long_budget else {}))
    channels, size = SHAPES[preset]
    batch = batch_size or config.batch_size
    device = resolve_device(config.device)
    precision = choose_precision(config.precision, device, config.channels_last)
    model = create_model(config.model, num_classes=10, in_channels=channels, image_size=size, width=config.width).to(device)
    images = torch.randn(batch, channels, size, size, device=device)
    labels = torch.randint(0, 10, (batch,), device=device)
    if precision.channels_last:
        model = model.to(memory_format=torch.channels_last)
        images = images.contiguous(memory_format=torch.channels_last)
    optimizer = build_optimizer(model, config)  # as training builds it

    def step() -> None:
        with torch.autocast(device.type, dtype=precision.autocast_dtype or torch.float32,
                            enabled=precision.autocast_dtype is not None):
            loss = torch.nn.functional.cross_entropy(model(images), labels)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    with FlopCounterMode(display=False) as counter:
        step()
    flops = counter.get_total_flops()
    for _ in range(3):
        step()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    seconds = statistics.median(times)
    shares = None
    if profile:
        from torch.profiler import ProfilerActivity, profile as profiler

        with profiler(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(steps):
                step()
        totals: dict[str, float] = {}
        others: dict[str, float] = {}
        for event in prof.key_averages():
            kind = next((name for fragment, name in KINDS if fragment in event.key), "other")
            totals[kind] = totals.get(kind, 0.0) + event.self_cpu_time_total
            if kind == "other":
                others[event.key] = event.self_cpu_time_total
        whole = sum(totals.values()) or 1.0
        shares = dict(sorted(((kind, value / whole) for kind, value in totals.items()), key=lambda kv: -kv[1]))
        shares["(largest other operators)"] = ", ".join(
            f"{key} {value / whole:.0%}" for key, value in sorted(others.items(), key=lambda kv: -kv[1])[:4])
    return {"shares": shares, "preset": preset, "model": config.model, "width": config.width, "batch": batch,
            "precision": precision.describe()["precision"], "channels_last": precision.channels_last,
            "threads": torch.get_num_threads(), "gflop_per_image": flops / batch / 1e9, "step_seconds": seconds,
            "images_per_second": batch / seconds, "gflops": flops / seconds / 1e9}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="cifar10", choices=sorted(SHAPES))
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--profile", action="store_true", help="also: the step's time by kind of operator")
    parser.add_argument("--long-budget", action="store_true", help="the preset's network for long budgets (cifar10)")
    args = parser.parse_args(argv)
    if args.long_budget and args.preset not in LONG_BUDGET:
        parser.error(f"--long-budget: the {args.preset} preset has no network for long budgets")
    m = measure(args.preset, args.batch_size, args.steps, args.profile, args.long_budget)
    print(f"preset {m['preset']}: model {m['model']} width {m['width']}, batch {m['batch']}, {m['precision']}, "
          f"channels_last {m['channels_last']}, {m['threads']} threads")
    print(f"{m['gflop_per_image']:.3f} GFLOP per image per training step (forward + backward)")
    print(f"median step {m['step_seconds'] * 1000:.1f} ms: {m['images_per_second']:,.0f} images/s, "
          f"{m['gflops']:.0f} GFLOP/s")
    if m["shares"]:
        largest = m["shares"].pop("(largest other operators)")
        print("where the time goes (self CPU time): " + ", ".join(f"{kind} {share:.0%}"
                                                                 for kind, share in m["shares"].items())
              + f"; the largest others: {largest}")


if __name__ == "__main__":
    main()
