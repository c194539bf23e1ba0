"""Time to accuracy, in one invocation on whatever CPU runs it: visiontrain against its peers and against the hardware.

For a task (fashion-mnist, mnist, cifar10) it runs, each through its own command line in a fresh process, timed
from the command's start (start-up and data loading included):
- visiontrain's default for the task, once per wall-clock budget (`visiontrain train --time Ns`): the best model
  in N seconds, its schedule sized to the budget;
- the tutorial loop (benchmarks/tutorial_baseline.py: torchvision datasets, DataLoader, the course's network, Adam),
  its test accuracy after every epoch;
- Ultralytics' `yolo classify train` from scratch (yolov8n-cls) on the same images written as PNG folders, when
  the optional `ultralytics` package is installed (`pip install ultralytics`; a benchmark dependency only);
- the CPU's dense matmul peak in the training dtype (a large torch.matmul on the same threads) and the fraction of it
  the task's training step reaches (FLOPs counted by torch.utils.flop_counter).
Every goal of issue 20 is printed as met or not with its ratio, and the run writes <out>/<task>.json, <task>.md (one
table, naming the CPU) and <task>.png (accuracy against wall seconds for everyone).

    python benchmarks/time_to_accuracy.py --task fashion-mnist [--budgets 8,12,20,60,180] [--baseline-epochs 10]
        [--ultralytics-epochs 3] [--data-dir DIR] [--out benchmarks/results]

--data-dir: the folder holding MNIST's four IDX files (mnist), or cifar-10-python.tar.gz or the cifar10-jpg copy
(cifar10); Fashion-MNIST is found as visiontrain finds it (Debian's package, the cache, or a download).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

# The CLI in a fresh process, reporting its own peak RSS (the child's, not this script's).
_WRAPPER = ("import resource, sys; from visiontrain.cli import main; code = main(sys.argv[1:]); "
            "print('PEAK_RSS_KB', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr); sys.exit(code)")

# The goals of issue 20, on a CPU with native bf16 (2 cores): (what, test accuracy, seconds or None, ratio or None).
GOALS = {
    "fashion-mnist": [("budget", 0.930, 60), ("budget", 0.937, 180)],
    "mnist": [("budget", 0.995, 15)],
    "cifar10": [("budget", 0.85, 180), ("budget", 0.90, 720)],
}
TUTORIAL_SPEEDUP_GOAL = 10.0  # visiontrain reaches the tutorial loop's final accuracy this many times sooner
PEAK_FRACTION_GOAL = 0.70  # of the matmul peak, for the CIFAR-10 preset's training step


def cpu_class() -> dict:
    """What the CPU can do for training: native bf16 (AVX512_BF16 or AMX) or not; visiontrain picks bf16 by it. With
    oneDNN capped (ONEDNN_MAX_CPU_ISA, as --isa does) the class is the capped one's, and says so."""
    from visiontrain.engine.precision import cpu_has_native_bf16, onednn_isa_cap

    try:
        flags = set(Path("/proc/cpuinfo").read_text().split())
    except OSError:
        flags = set()
    name = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                 if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else "?"
    native, has = cpu_has_native_bf16(), [f for f in ("avx512_bf16", "amx_bf16") if f in flags]
    kind = ("native bf16 (" + ", ".join(has) + ")" if has
            else "AVX-512, no native bf16" if "avx512f" in flags else "AVX2, no native bf16" if "avx2" in flags
            else "no AVX2")
    cap = onednn_isa_cap()
    if cap:
        kind = (f"{cap} code path, no native bf16 (oneDNN capped by ONEDNN_MAX_CPU_ISA={cap}, ATen at "
                f"{os.environ.get('ATEN_CPU_CAPABILITY', 'its default')}) on a CPU with {kind}")
    return {"model": name, "class": kind, "native_bf16": native, "cores": os.cpu_count(), "isa_cap": cap}


def matmul_peak(dtype_name: str, size: int = 2048, repeats: int = 10) -> float:
    """GFLOP/s of a size x size torch.matmul in `dtype_name` on this process's threads: median of the repeats."""
    import torch

    dtype = {"bf16": torch.bfloat16, "fp32": torch.float32}[dtype_name]
    a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
    for _ in range(3):
        a @ b
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - start)
    return 2 * size ** 3 / statistics.median(times) / 1e9


def step_throughput(preset: str, long_budget: bool = False) -> dict:
    """The preset's training step as visiontrain runs it here: GFLOP per image and GFLOP/s (compute_efficiency.py);
    long_budget: its network for long budgets (presets.LONG_BUDGET)."""
    from compute_efficiency import measure

    return measure(preset, long_budget=long_budget)


def task_args(task: str, data_dir: str | None) -> list[str]:
    args = ["--dataset", task]
    return args + (["--data-dir", data_dir] if data_dir else [])


def run_visiontrain(args: list[str], runs_dir: Path) -> dict:
    """One `visiontrain train ARGS` in a fresh process: wall seconds, test accuracy and what the run recorded."""
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-c", _WRAPPER, "train", *args, "--runs-dir", str(runs_dir),
                             "--progress", "none"], capture_output=True, text=True, cwd=REPO,
                            env=os.environ | {"PYTHONPATH": str(REPO)})
    wall = time.perf_counter() - start
    if result.returncode != 0:
        refusal = next((line for line in result.stderr.splitlines() if "does not leave one training step" in line), None)
        if refusal:  # a budget below start-up + evaluation: visiontrain says so; the table says so too
            return {"refused": refusal.split("error: ", 1)[-1]}
        raise SystemExit(f"visiontrain failed:\n{result.stderr[-3000:]}")
    run_dir = Path(result.stdout.split("run: ")[1].split()[0])
    summary = json.loads((run_dir / "summary.json").read_text())
    rss = next(int(line.split()[1]) for line in result.stderr.splitlines() if line.startswith("PEAK_RSS_KB"))
    config = yaml.safe_load((run_dir / "config.yaml").read_text())  # the network the plan chose (LONG_BUDGET)
    return {"seconds": wall, "test_acc": summary["test_acc"], "epochs": summary["epochs_completed"],
            "model": f"{config['model']} width {config['width']:g}",
            "images_per_second": summary["images_per_second"], "peak_rss_mb": rss / 1024,
            "time_to_first_step": summary["time_to_first_step"], "precision": summary["hardware"]["precision"],
            **_ece(run_dir), "run": str(run_dir)}


def _ece(run_dir: Path) -> dict:
    """The test split's expected calibration error with the run's temperature, and without it."""
    path = run_dir / "eval" / "test" / "metrics.json"
    metrics = json.loads(path.read_text()) if path.is_file() else {}
    return {"ece": metrics.get("ece"), "ece_uncalibrated": metrics.get("calibration", {}).get("ece_uncalibrated",
                                                                                             metrics.get("ece"))}


def time_to(rows: list[dict], target: float) -> float | None:
    """Wall seconds of the first row (by time) whose test accuracy reaches `target`."""
    reached = [row["seconds"] for row in rows if row["test_acc"] >= target]
    return min(reached) if reached else None


def run_ultralytics(task: str, data_dir: str | None, epochs: int, work: Path) -> list[dict]:
    """yolov8n-cls from scratch on the task's images as PNG folders (train, and the test split as val): its top-1
    accuracy on the test images after each epoch, at the wall seconds since its command started."""
    root = write_png_folders(task, data_dir, work / "png")
    start = time.perf_counter()
    project = work / "yolo"
    yolo = Path(sys.executable).with_name("yolo")  # the CLI installed beside this Python (a venv's bin/), else PATH's
    result = subprocess.run([str(yolo) if yolo.exists() else "yolo", "classify", "train", f"data={root}", "model=yolov8n-cls.yaml", "pretrained=False",
                             "imgsz=32", f"epochs={epochs}", "device=cpu", "plots=False", f"project={project}",
                             "name=run", "exist_ok=True"], capture_output=True, text=True,
                            env=os.environ | {"YOLO_OFFLINE": "1", "MLFLOW_TRACKING_URI": "", "WANDB_MODE": "disabled"})
    wall = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"yolo failed:\n{result.stdout[-2000:]}{result.stderr[-2000:]}")
    import csv

    with open(project / "run" / "results.csv", newline="") as handle:
        rows = [{key.strip(): value for key, value in row.items()} for row in csv.DictReader(handle)]
    # results.csv's `time` is seconds of training since its first epoch began; the command's start-up (imports, the
    # dataset scan) and final validation are the rest of the wall time, spread as a constant start-up offset
    offset = wall - float(rows[-1]["time"])
    return [{"epoch": int(row["epoch"]), "seconds": offset + float(row["time"]),
             "test_acc": float(row["metrics/accuracy_top1"])} for row in rows]


def write_png_folders(task: str, data_dir: str | None, root: Path) -> Path:
    """The task's train and test images as PNG files in root/{train,val}/<class>/ (val holds the test split)."""
    from PIL import Image

    from visiontrain.data import load_dataset

    if (root / "train").is_dir():
        return root
    data = load_dataset(task, data_dir=data_dir, val_fraction=0.0, verbose=False)
    for split, tensors in (("train", data.train), ("val", data.test)):
        for index in range(len(tensors)):
            name = "".join(c if c.isalnum() else "-" for c in data.classes[int(tensors.labels[index])])
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            pixels = tensors.images[index].permute(1, 2, 0).numpy()
            Image.fromarray(pixels[..., 0] if pixels.shape[-1] == 1 else pixels).save(folder / f"{index:05d}.png")
    return root


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", choices=sorted(GOALS), default="fashion-mnist")
    parser.add_argument("--data-dir", help="the folder of the task's files (mnist, cifar10)")
    parser.add_argument("--budgets", default="8,12,20,60,180", help="visiontrain --time budgets in seconds")
    parser.add_argument("--baseline-epochs", type=int, default=10, help="epochs of the tutorial loop (0: skip)")
    parser.add_argument("--ultralytics-epochs", type=int, default=3, help="epochs of yolo classify (0: skip)")
    parser.add_argument("--repeats", type=int, default=1, help="runs per budget (the median is quoted)")
    parser.add_argument("--out", default=str(HERE / "results"))
    parser.add_argument("--table-from", metavar="JSON", help="print the table of an earlier run's JSON and exit")
    parser.add_argument("--add-to", metavar="JSON", help="an earlier run's JSON of the same task: the budgets run now "
                        "join its own, the tutorial loop and Ultralytics (if run now) replace its own")
    parser.add_argument("--isa", choices=["avx2"], help="cap oneDNN and ATen at AVX2 (ONEDNN_MAX_CPU_ISA, "
                        "ATEN_CPU_CAPABILITY) here and in every run: the code path and dtype (fp32) of a CPU without "
                        "native bf16, measured on this one (its clock and caches stay this CPU's)")
    args = parser.parse_args(argv)
    if args.isa:  # before torch is imported here or in a child: oneDNN reads it once
        os.environ |= {"ONEDNN_MAX_CPU_ISA": args.isa.upper(), "ATEN_CPU_CAPABILITY": args.isa}
    if args.table_from:
        print(markdown(json.loads(Path(args.table_from).read_text())))
        return
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cpu = cpu_class()
    load_at_start = os.getloadavg()[0]
    dtype = "bf16" if cpu["native_bf16"] else "fp32"
    report: dict = {"task": args.task, "cpu": cpu, "when": time.strftime("%Y-%m-%d %H:%M"), "visiontrain": [],
                    "baseline": [], "ultralytics": [], "hardware": {}}
    print(f"CPU: {cpu['model']}, {cpu['cores']} cores, {cpu['class']}; training dtype {dtype}", flush=True)
    report["hardware"]["matmul_peak_gflops"] = matmul_peak(dtype)
    preset = "cifar10" if args.task == "cifar10" else args.task
    report["hardware"]["step"] = step_throughput(preset)
    report["hardware"]["fraction_of_peak"] = report["hardware"]["step"]["gflops"] / report["hardware"]["matmul_peak_gflops"]
    print(f"matmul peak ({dtype}, 2048^2): {report['hardware']['matmul_peak_gflops']:.0f} GFLOP/s; the {preset} "
          f"preset's training step: {report['hardware']['step']['gflops']:.0f} GFLOP/s "
          f"({report['hardware']['fraction_of_peak']:.0%} of it)", flush=True)
    from visiontrain.presets import LONG_BUDGET  # (after --isa's environment: nothing here imports torch)

    if preset in LONG_BUDGET:
        step = report["hardware"]["long_budget_step"] = step_throughput(preset, long_budget=True)
        step["fraction_of_peak"] = step["gflops"] / report["hardware"]["matmul_peak_gflops"]
        print(f"its network for long budgets ({step['model']} width {step['width']:g}): {step['gflops']:.0f} GFLOP/s "
              f"({step['fraction_of_peak']:.0%})", flush=True)
    with tempfile.TemporaryDirectory() as work:
        for budget in map(float, filter(None, args.budgets.split(","))):  # --budgets "": the peers only
            runs = [run_visiontrain([*task_args(args.task, args.data_dir), "--time", f"{budget:g}s"], Path(work))
                    for _ in range(args.repeats)]
            if any("refused" in r for r in runs):
                print(f"visiontrain --time {budget:g}s: {runs[0]['refused']}", flush=True)
                report.setdefault("refused", []).append({"budget": budget, "why": runs[0]["refused"]})
                continue
            row = {key: statistics.median(r[key] for r in runs) for key in ("seconds", "test_acc", "images_per_second",
                                                                            "peak_rss_mb", "time_to_first_step")}
            row |= {"budget": budget, "epochs": runs[0]["epochs"], "ece": runs[0]["ece"],
                    "ece_uncalibrated": runs[0]["ece_uncalibrated"], "repeats": args.repeats,
                    "all_test_acc": [r["test_acc"] for r in runs], "precision": runs[0]["precision"]}
            report["visiontrain"].append(row)
            print(f"visiontrain --time {budget:g}s: {row['test_acc']:.2%} test in {row['seconds']:.1f} s "
                  f"({row['epochs']} epochs, first step at {row['time_to_first_step']:.1f} s)", flush=True)
        if args.ultralytics_epochs:
            try:
                report["ultralytics"] = run_ultralytics(args.task, args.data_dir, args.ultralytics_epochs, Path(work))
            except FileNotFoundError:
                print("ultralytics is not installed (pip install ultralytics): its comparison is left out")
            for row in report["ultralytics"]:
                print(f"yolov8n-cls epoch {row['epoch']}: {row['test_acc']:.2%} at {row['seconds']:.0f} s", flush=True)
    if args.baseline_epochs:
        from tutorial_baseline import run_baseline

        report["baseline"] = run_baseline(args.task, epochs=args.baseline_epochs, data_dir=args.data_dir,
                                          on_epoch=lambda row: print(f"tutorial loop epoch {row['epoch']}: "
                                                                     f"{row['test_acc']:.2%} at {row['seconds']:.0f} s",
                                                                     flush=True))
    if args.add_to:  # e.g. Ultralytics added to a run that lacked it, on the same machine
        earlier = json.loads(Path(args.add_to).read_text())
        budgets = {row["budget"] for row in report["visiontrain"]}
        runs = [row for row in earlier["visiontrain"] if row["budget"] not in budgets] + report["visiontrain"]
        report = earlier | {key: report[key] for key in ("baseline", "ultralytics") if report[key]} | {
            "visiontrain": sorted(runs, key=lambda row: row["budget"])}
    report["goals"] = goals(report)
    report["load_average"] = {"start": load_at_start, "end": os.getloadavg()[0]}  # > cores: the machine was shared
    text = markdown(report)
    print(text)
    (out / f"{args.task}.json").write_text(json.dumps(report, indent=2))
    (out / f"{args.task}.md").write_text(text + "\n")
    plot(report, out / f"{args.task}.png")


def goals(report: dict) -> list[dict]:
    """Each of issue 20's goals for the task: measured, met or not, and how far."""
    rows, ours = [], report["visiontrain"]
    for _, target, seconds in GOALS[report["task"]]:
        took = time_to(ours, target)
        best = max((r["test_acc"] for r in ours if r["seconds"] <= seconds * 1.05), default=None)
        rows.append({"goal": f"{target:.1%} within {seconds} s", "met": took is not None and took <= seconds,
                     "measured": f"{took:.0f} s" if took is not None else f"not reached (best {best:.2%} within it)"
                     if best is not None else "not reached"})
    if report["baseline"]:
        final = report["baseline"][-1]
        took = time_to(ours, final["test_acc"])
        ratio = final["seconds"] / took if took else None
        rows.append({"goal": f"{TUTORIAL_SPEEDUP_GOAL:g}x sooner than the tutorial loop to its final "
                             f"{final['test_acc']:.2%} ({final['seconds']:.0f} s)",
                     "met": ratio is not None and ratio >= TUTORIAL_SPEEDUP_GOAL,
                     "measured": f"{ratio:.1f}x ({took:.0f} s)" if ratio else "not reached in the budgets run"})
    if report["ultralytics"]:
        worse = [(row["seconds"], row["test_acc"], _ours_at(ours, row["seconds"])) for row in report["ultralytics"]]
        beaten = all(ours_acc is not None and ours_acc > theirs for _, theirs, ours_acc in worse)
        rows.append({"goal": "more accurate than yolov8n-cls at every equal wall time", "met": beaten,
                     "measured": "; ".join(f"{s:.0f} s: {theirs:.2%} vs ours {a:.2%}" if a is not None else
                                           f"{s:.0f} s: {theirs:.2%} vs ours (no run that short)"
                                           for s, theirs, a in worse)})
    if report["task"] == "cifar10":
        fraction, long = report["hardware"]["fraction_of_peak"], report["hardware"].get("long_budget_step")
        measured = f"{fraction:.0%}"
        if long:
            measured += f"; the network for long budgets {long['fraction_of_peak']:.0%}"
            fraction = max(fraction, long["fraction_of_peak"])
        rows.append({"goal": f"the training step at >= {PEAK_FRACTION_GOAL:.0%} of the matmul peak",
                     "met": fraction >= PEAK_FRACTION_GOAL, "measured": measured})
    return rows


def _ours_at(rows: list[dict], seconds: float) -> float | None:
    """visiontrain's best test accuracy among its runs that finished within `seconds`."""
    accuracies = [row["test_acc"] for row in rows if row["seconds"] <= seconds]
    return max(accuracies) if accuracies else None


def markdown(report: dict) -> str:
    cpu, hardware = report["cpu"], report["hardware"]
    lines = [f"## {report['task']}: time to accuracy ({report['when']})", "",
             f"CPU: {cpu['model']}, {cpu['cores']} cores, **{cpu['class']}**. Wall seconds from each command's start "
             "(start-up and data loading included), test accuracy on the full test split. Load average (1 min) at the "
             f"start {report.get('load_average', {}).get('start', float('nan')):.1f}, at the end "
             f"{report.get('load_average', {}).get('end', float('nan')):.1f} (above the core count: shared).", "",
             "| who | setting | wall s | test accuracy |", "|---|---|---|---|"]
    for row in report["visiontrain"]:
        ece = f", ECE {row['ece']:.3f}" if row.get("ece") is not None else ""
        if row.get("ece_uncalibrated") is not None and row["ece_uncalibrated"] != row.get("ece"):
            ece += f" ({row['ece_uncalibrated']:.3f} before calibration)"
        trained = f"{row['epochs']} epochs" + (f" of {row['model']}" if row.get("model") else "")
        lines.append(f"| visiontrain | `--time {row['budget']:g}s` ({trained}, {row['precision']}) | "
                     f"{row['seconds']:.1f} | {row['test_acc']:.2%}{ece} |")
    for row in report["baseline"]:
        lines.append(f"| tutorial loop | epoch {row['epoch']} | {row['seconds']:.1f} | {row['test_acc']:.2%} |")
    for row in report["ultralytics"]:
        lines.append(f"| yolov8n-cls (Ultralytics) | epoch {row['epoch']} | {row['seconds']:.1f} | "
                     f"{row['test_acc']:.2%} |")
    step = hardware["step"]
    lines += ["", f"Matmul peak (2048x2048, the training dtype, same threads): {hardware['matmul_peak_gflops']:.0f} "
              f"GFLOP/s. The preset's training step: {step['gflop_per_image']:.3f} GFLOP per image, "
              f"{step['images_per_second']:,.0f} images/s, {step['gflops']:.0f} GFLOP/s = "
              f"**{hardware['fraction_of_peak']:.0%} of the peak**." + _long_budget_step(hardware), "",
              "| goal | met | measured |", "|---|---|---|"]
    lines += [f"| {goal['goal']} | {'yes' if goal['met'] else 'no'} | {goal['measured']} |" for goal in report["goals"]]
    return "\n".join(lines)


def _long_budget_step(hardware: dict) -> str:
    step = hardware.get("long_budget_step")
    if not step:
        return ""
    return (f" Its network for long budgets ({step['model']} width {step['width']:g}): {step['gflop_per_image']:.3f} "
            f"GFLOP per image, {step['images_per_second']:,.0f} images/s, {step['gflops']:.0f} GFLOP/s = "
            f"**{step['fraction_of_peak']:.0%} of the peak**.")


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7.5, 4.5))
    for key, label, style in (("visiontrain", "visiontrain --time", "s-"), ("baseline", "tutorial loop", "o-"),
                              ("ultralytics", "yolov8n-cls (Ultralytics)", "^-")):
        rows = sorted(report[key], key=lambda r: r["seconds"])
        if rows:
            axis.plot([r["seconds"] for r in rows], [100 * r["test_acc"] for r in rows], style, label=label)
    axis.set_xscale("log")
    axis.set_xlabel("wall seconds from the command's start (log scale)")
    axis.set_ylabel("test accuracy (%)")
    axis.set_title(f"{report['task']}: time to accuracy ({report['cpu']['cores']} cores, {report['cpu']['class']})")
    axis.grid(alpha=0.3, which="both")
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
