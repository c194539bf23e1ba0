"""What per-step logging costs a CPU epoch: the same run with no logger at all, the default (csv every 10 steps), and
csv + TensorBoard + MLflow every 10 steps and every step, interleaved in one process, medians of the rounds.

    python benchmarks/logging_overhead.py [--dataset fashion-mnist] [--model NAME] [--rounds 3] [--epochs 1]

Without --model, the dataset's tuned preset (a plain `visiontrain train` for Fashion-MNIST).

Three numbers per setting: the seconds of an epoch's steps (summary.json's train_seconds / epochs: where per-step
logging runs), the wall seconds of an epoch (metrics.csv's last `seconds` less the time to the first step, over the
epochs: steps, validation, checkpoints and the loggers' writes at them), each relative to no logger; and the hooks'
own cost per step, timed directly by calling them as fit does (it does not drown in the noise of a shared machine).
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import visiontrain
from visiontrain import fit
from visiontrain.config import build_config
from visiontrain.engine.callbacks import RunInfo, Step, call
from visiontrain.engine.loggers import create_loggers

SETTINGS = {  # name -> (logger, log_every); "none" has no callback at all
    "none": ("csv", 0),
    "csv/10 (default)": ("csv", 10),
    "csv+tb+mlflow/10": ("csv,tensorboard,mlflow", 10),
    "csv+tb+mlflow/1": ("csv,tensorboard,mlflow", 1),
}


def epoch_seconds(name: str, args: argparse.Namespace, runs: Path) -> tuple[float, float]:
    logger, every = SETTINGS[name]
    original = fit.create_loggers
    if name == "none":
        fit.create_loggers = lambda run: []  # the run without any logger or callback
    try:
        model = {"model": args.model} if args.model else {}  # none: the dataset's preset
        run = visiontrain.train(dataset=args.dataset, **model, epochs=args.epochs, logger=logger, log_every=every,
                                runs_dir=str(runs), report=False, progress="none")
    finally:
        fit.create_loggers = original
    wall = float(run.metrics[-1]["seconds"]) - run.summary["time_to_first_step"]
    return run.summary["train_seconds"] / args.epochs, wall / args.epochs


def hook_microseconds(name: str, runs: Path, steps: int = 2000) -> float:
    """Per step: fit's on_step_end call into the loggers, and their flush at the checkpoints (every 422 steps)."""
    logger, every = SETTINGS[name]
    folder = runs / f"hooks-{name.split()[0].replace('/', '-').replace('+', '-')}"
    folder.mkdir(parents=True)
    config = build_config({"logger": logger, "log_every": every, "runs_dir": str(runs)})
    info = RunInfo(path=folder, config=config, model=None, classes=[], steps_per_epoch=422)
    loggers = create_loggers(info) if name != "none" else []
    call(loggers, "on_run_start", info)
    start = time.perf_counter()
    for step in range(1, steps + 1):
        if loggers:
            call(loggers, "on_step_end", info, Step(1, step, step, 1e-3, 128, lambda: 0.5))
        if step % 422 == 0:
            for each in loggers:
                each.flush()
    elapsed = time.perf_counter() - start
    call(loggers, "on_run_end", info, {"status": "complete"})
    return 1e6 * elapsed / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="fashion-mnist")
    parser.add_argument("--model", help="default: the dataset's preset")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="visiontrain-logging-") as scratch:
        runs = Path(scratch)
        epoch_seconds("none", args, runs)  # warm-up: the dataset cache, imports, MLflow's tables
        epoch_seconds("csv+tb+mlflow/10", args, runs)
        times: dict[str, list[tuple[float, float]]] = {name: [] for name in SETTINGS}
        for _ in range(args.rounds):
            for name in SETTINGS:
                times[name].append(epoch_seconds(name, args, runs))
        hooks = {name: hook_microseconds(name, runs) for name in SETTINGS}
    base = [statistics.median(t[i] for t in times["none"]) for i in (0, 1)]
    print(f"{args.model or 'the preset'} on {args.dataset}, {args.epochs} epoch(s) per run, median of {args.rounds} "
          "interleaved rounds")
    print(f"{'setting':<20} {'steps s/epoch':>14} {'vs none':>8} {'wall s/epoch':>13} {'vs none':>8} "
          f"{'hooks us/step':>14}")
    for name in SETTINGS:
        steps, wall = (statistics.median(t[i] for t in times[name]) for i in (0, 1))
        print(f"{name:<20} {steps:>14.2f} {steps / base[0]:>8.3f} {wall:>13.2f} {wall / base[1]:>8.3f} "
              f"{hooks[name]:>14.1f}   steps: " + ", ".join(f"{t[0]:.2f}" for t in times[name]))


if __name__ == "__main__":
    main()
