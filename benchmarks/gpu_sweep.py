"""CIFAR-10 variants of the `cifar10-gpu` preset on one GPU, then the fastest to the target through the plain CLI.

The variants run in this one process through `visiontrain.cli.main` (imports and CUDA start once: ~10 s saved per
run, which is more than a run's training). The quickest variant that reached --target (fewest training seconds) is
then run again as `visiontrain train ...` in a fresh process, so its wall time from the command's start is the one a
user would see. Each summary is appended to OUT/summaries.jsonl with its name and flags.

    python benchmarks/gpu_sweep.py --data-dir DATA --out OUT --variants FILE [--budget 300] [--target 0.94]

FILE: one variant per line, a name then the flags that differ from the preset (`ab10 --epochs 10 --lookahead`).
"""
from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path


def line(name: str, summary: dict) -> str:
    return (f"{name:18s} test {100 * summary['test_acc']:.2f}%  train {summary['train_seconds']:5.1f} s  "
            f"wall {summary['wall_seconds']:5.1f} s  first step {summary['time_to_first_step']:4.1f} s  "
            f"train acc {100 * summary['final_train_acc']:.1f}%  {summary['images_per_second']:,.0f} img/s  "
            f"{summary['hardware']['precision']}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--variants", type=Path, required=True)
    parser.add_argument("--runs-dir", default="/tmp/sweep-runs")
    parser.add_argument("--budget", type=float, default=300, help="start no variant after this many seconds")
    parser.add_argument("--target", type=float, default=0.94)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    variants = [shlex.split(text) for text in args.variants.read_text().splitlines() if text.strip()]

    from visiontrain import cli

    def train_args(name: str, flags: list[str]) -> list[str]:
        return ["train", "--preset", "cifar10-gpu", "--data-dir", args.data_dir, "--runs-dir", args.runs_dir,
                "--name", name, "--progress", "none", "--no-report", *flags]

    started, results = time.perf_counter(), []
    for name, *flags in variants:
        if time.perf_counter() - started > args.budget:
            print(f"{name:18s} not run (budget)")
            continue
        cli._START = time.perf_counter()  # the CLI's clock starts at its import; here at each run
        code = cli.main(train_args(name, flags))
        summary_path = Path(args.runs_dir, name, "summary.json")
        if code != 0 or not summary_path.is_file():
            print(f"{name:18s} FAILED (exit {code})")
            continue
        summary = json.loads(summary_path.read_text())
        results.append((name, flags, summary))
        print(line(name, summary), flush=True)
        with open(args.out / "summaries.jsonl", "a") as f:
            f.write(json.dumps({"name": name, "flags": flags} | summary) + "\n")

    reached = [r for r in results if r[2]["test_acc"] >= args.target]
    if not reached:
        best = max(results, key=lambda r: r[2]["test_acc"], default=None)
        print(f"no variant reached {100 * args.target:.0f}%"
              + (f"; best {best[0]} {100 * best[2]['test_acc']:.2f}%" if best else ""))
        return 0
    name, flags, _ = min(reached, key=lambda r: r[2]["train_seconds"])
    command = [sys.executable, "-m", "visiontrain", *train_args(f"{name}-cli", flags)]
    print("fastest to target, as a fresh command:", shlex.join(command[1:]), flush=True)
    began = time.perf_counter()
    subprocess.run(command, check=False)
    seconds = time.perf_counter() - began
    summary = json.loads(Path(args.runs_dir, f"{name}-cli", "summary.json").read_text())
    print(line(f"{name}-cli", summary) + f"  (process {seconds:.1f} s)")
    with open(args.out / "summaries.jsonl", "a") as f:
        f.write(json.dumps({"name": f"{name}-cli", "flags": flags, "process_seconds": seconds} | summary) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
