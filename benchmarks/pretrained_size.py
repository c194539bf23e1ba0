"""Which input size pays for a pretrained backbone on small images: 32 px CIFAR-10 photos at several --image-size.

The folder (benchmarks/make_photo_folder.py --kind subset builds it from the CIFAR-10 JPEG copy; built here when
missing): 10 classes x --train + --test images at CIFAR's own 32 px. Each size runs, in a fresh process each,
`visiontrain train --model efficientnet_lite0 --pretrained --image-size S` twice:
  probe      --epochs 1: the linear probe alone (the head fitted to the frozen backbone's features)
  probe+1    --epochs 2: the probe, then one epoch of fine-tuning everything
Printed per size: wall seconds of the command (start-up, decoding at that size, the probe, the test evaluation),
the test accuracy of the kept checkpoint, and the ratios against the size visiontrain chooses by itself
(models/pretrained.py input_size_for: 4x the images' side, 128 px for 32 px images).

    python benchmarks/pretrained_size.py [--folder /tmp/vt-cifar-subset] [--sizes 64,96,128,224]
        [--train 200] [--test 100] [--out benchmarks/results/pretrained_size.json]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))
from make_photo_folder import build  # noqa: E402
from time_to_accuracy import cpu_class  # noqa: E402

COMMON = ["--model", "efficientnet_lite0", "--pretrained", "--progress", "none", "--no-report"]
MODES = {"probe": ["--epochs", "1"], "probe+1": ["--epochs", "2"]}
CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def run(folder: Path, runs: Path, name: str, size: int, mode: str) -> dict:
    args = ["train", "--dataset", str(folder), "--runs-dir", str(runs), "--name", name, "--image-size", str(size),
            *COMMON, *MODES[mode]]
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "visiontrain", *args], capture_output=True, text=True,
                            cwd=HERE.parent, env=os.environ | {"PYTHONPATH": str(HERE.parent)})
    wall = time.perf_counter() - started
    if result.returncode:
        raise SystemExit(f"{name} failed:\n{result.stderr[-3000:]}")
    summary = json.loads((runs / name / "summary.json").read_text())
    return {"size": size, "mode": mode, "wall_s": wall, "test_acc": summary["test_acc"],
            "probe": summary.get("probe")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--folder", type=Path, default=Path(tempfile.gettempdir()) / "vt-cifar-subset")
    parser.add_argument("--sizes", default="64,96,128,224")
    parser.add_argument("--train", type=int, default=200, help="training images per class")
    parser.add_argument("--test", type=int, default=100, help="test images per class")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    if not (args.folder / "train").is_dir():
        build(args.folder, kind="subset", classes=CLASSES, train=args.train, val=0, test=args.test)
    cpu = cpu_class()
    print(f"CPU: {cpu['model']} ({cpu['class']}); load average {os.getloadavg()[0]:.1f} on {cpu['cores']} cores")
    results = []
    with tempfile.TemporaryDirectory() as scratch:
        os.environ["VISIONTRAIN_HOME"] = str(Path(scratch) / "home")
        for size in map(int, args.sizes.split(",")):
            for mode in MODES:
                row = run(args.folder, Path(scratch) / "runs", f"{mode}-{size}", size, mode)
                results.append(row)
                print(f"{size:4d} px  {mode:8s} test {row['test_acc']:.2%}  {row['wall_s']:6.1f} s", flush=True)
    chosen = 128
    for mode in MODES:
        reference = next((r for r in results if r["mode"] == mode and r["size"] == chosen), None)
        for row in (r for r in results if r["mode"] == mode and reference is not None):
            print(f"{mode:8s} {row['size']:4d} px against {chosen} px: time {row['wall_s'] / reference['wall_s']:.2f}x, "
                  f"test accuracy {100 * (row['test_acc'] - reference['test_acc']):+.1f} points")
    print(f"load average {os.getloadavg()[0]:.1f} at the end")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"cpu": cpu, "folder": str(args.folder), "results": results}, indent=1))


if __name__ == "__main__":
    main()
