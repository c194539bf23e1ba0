"""Do the stronger augmentations pay? One preset trained with each augmentation setting, same seed, same schedule, each
in a fresh process; the test accuracy, calibration error and wall seconds side by side.

    python benchmarks/augment_policies.py --preset cifar10 [--dataset NAME] --data-dir DIR [--fraction 0.1]
        [--epochs 30] [--settings "none;--auto-augment trivial;--auto-augment trivial --cutmix 1.0"] [--seeds 0,1]

A small subset with many epochs is where augmentation is expected to help (each image is seen often); the full set at
the preset's short CPU schedule is where it is expected to cost (no epochs left to benefit). Prints a Markdown table
naming the CPU; the median over seeds is quoted.
"""
from __future__ import annotations

import argparse
import os
import shlex
import statistics
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def main(argv: list[str] | None = None) -> None:
    from time_to_accuracy import cpu_class, run_visiontrain

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="cifar10")
    parser.add_argument("--dataset", help="the dataset, for a preset that names none (small-data)")
    parser.add_argument("--data-dir")
    parser.add_argument("--fraction", type=float, default=1.0)
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--settings", default="none;--auto-augment trivial;--auto-augment trivial --cutmix 1.0",
                        help="augmentation flags per setting, ';' between settings ('none': the preset's own)")
    parser.add_argument("--seeds", default="0")
    args = parser.parse_args(argv)
    common = ["--preset", args.preset] + (["--dataset", args.dataset] if args.dataset else []) + (
        ["--data-dir", args.data_dir] if args.data_dir else [])
    common += (["--fraction", str(args.fraction)] if args.fraction < 1 else []) + (
        ["--epochs", str(args.epochs)] if args.epochs else [])
    cpu = cpu_class()
    print(f"CPU: {cpu['model']}, {cpu['cores']} cores, {cpu['class']}; load {os.getloadavg()[0]:.1f}", flush=True)
    rows = []
    with tempfile.TemporaryDirectory() as work:
        for setting in args.settings.split(";"):
            extra = [] if setting.strip() == "none" else shlex.split(setting)
            runs = [run_visiontrain([*common, *extra, "--seed", seed, "--no-report"], Path(work))
                    for seed in args.seeds.split(",")]
            row = {"setting": setting.strip(), **{key: statistics.median(r[key] for r in runs)
                                                  for key in ("test_acc", "ece", "seconds")},
                   "all": [round(r["test_acc"], 4) for r in runs]}
            rows.append(row)
            print(f"{row['setting']}: {row['test_acc']:.2%} test (seeds: {row['all']}), ECE {row['ece']:.3f}, "
                  f"{row['seconds']:.0f} s", flush=True)
    print(f"\n`{' '.join(common)}`, seeds {args.seeds}; {cpu['cores']} cores, {cpu['class']}; load at the end "
          f"{os.getloadavg()[0]:.1f}\n\n| augmentation | test accuracy (median) | test ECE | wall s |\n|---|---|---|---|")
    for row in rows:
        print(f"| `{row['setting']}` | {row['test_acc']:.2%} | {row['ece']:.3f} | {row['seconds']:.0f} |")


if __name__ == "__main__":
    main()
