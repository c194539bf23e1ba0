"""Inference on this CPU: eager PyTorch vs TorchScript vs ONNX Runtime, latency (batch 1) and throughput (batch 64).

    python benchmarks/inference_latency.py [--models fastnet resnet18] [--resnet-size 64] [--repeats 30]
        [--threads N] [--json benchmarks/results/inference_latency.json]

What is timed is what `visiontrain export` writes: the model in eval mode, fp32, with the normalisation inside
the graph, taking float32 pixels in 0..255 (verify.exportable() + the registered exporters). Weights are random:
the time of these dense networks does not depend on their values. fastnet is the default model on 1x28x28
images; resnet18 is torchvision's on 3x64x64 (`--resnet-size 224` for ImageNet size). Every runtime gets the
same number of threads (torch.set_num_threads and onnxruntime's intra_op_num_threads). Each cell is the median
of `--repeats` timed calls (a quarter of them at batch 64) after 3 untimed warm-up calls; eager runs under
torch.inference_mode. The outputs of the three runtimes are compared too (max |logit diff| vs eager).
"""
from __future__ import annotations

import argparse
import io
import json
import os
from pathlib import Path
import platform
import statistics
import sys
import time
import warnings
from collections.abc import Callable

import numpy as np
import onnxruntime
import torch

from visiontrain.export import EXPORTERS
from visiontrain.export.verify import Normalized, torch_runner
from visiontrain.models import create_model

WARMUP = 3
BATCH_LATENCY, BATCH_THROUGHPUT = 1, 64
MODELS = {"fastnet": (1, 28), "resnet18": (3, 64)}  # name -> (channels, default image side)


def exportable(name: str, channels: int, size: int) -> Normalized:
    classifier = create_model(name, num_classes=10, in_channels=channels, image_size=size).eval()
    return Normalized(classifier, [0.5] * channels, [0.25] * channels).eval()


def runners(model: Normalized, channels: int, size: int, threads: int) -> dict[str, Callable[[np.ndarray], np.ndarray]]:
    """Eager, TorchScript and ONNX Runtime runners: float32 (N, C, H, W) 0..255 -> logits (N, 10)."""
    example = torch.rand(2, channels, size, size) * 255
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit's deprecation notice
        scripted = torch.jit.load(io.BytesIO(EXPORTERS.get("torchscript").serialize(model, example))).eval()
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    session = onnxruntime.InferenceSession(EXPORTERS.get("onnx").serialize(model, example), options,
                                           providers=["CPUExecutionProvider"])
    return {"eager": torch_runner(model), "torchscript": torch_runner(scripted),
            "onnxruntime": lambda images: session.run(None, {"images": images})[0]}


def median_seconds(run: Callable[[np.ndarray], np.ndarray], images: np.ndarray, repeats: int) -> float:
    for _ in range(WARMUP):
        run(images)
    timings = []
    for _ in range(repeats):
        start = time.perf_counter()
        run(images)
        timings.append(time.perf_counter() - start)
    return statistics.median(timings)


def benchmark(name: str, size: int, repeats: int, threads: int) -> list[dict]:
    channels = MODELS[name][0]
    model = exportable(name, channels, size)
    generator = np.random.default_rng(0)
    batches = {b: generator.integers(0, 256, (b, channels, size, size)).astype(np.float32)
               for b in (BATCH_LATENCY, BATCH_THROUGHPUT)}
    results, reference = [], None
    for runtime, run in runners(model, channels, size, threads).items():
        logits = run(batches[BATCH_THROUGHPUT])
        reference = logits if reference is None else reference
        latency = median_seconds(run, batches[BATCH_LATENCY], repeats)
        throughput = median_seconds(run, batches[BATCH_THROUGHPUT], max(3, repeats // 4))
        results.append({"model": name, "input": f"{channels}x{size}x{size}", "runtime": runtime,
                        "batch1_ms": latency * 1e3, "batch64_ms": throughput * 1e3,
                        "batch64_images_per_s": BATCH_THROUGHPUT / throughput,
                        "max_abs_diff_vs_eager": float(np.abs(logits - reference).max())})
    return results


def table(results: list[dict]) -> str:
    header = f"{'model':<10} {'input':<9} {'runtime':<12} {'batch 1 (ms)':>12} {'batch 64 (ms)':>13} {'images/s @64':>12}"
    lines = [header, "-" * len(header)]
    for r in results:
        lines.append(f"{r['model']:<10} {r['input']:<9} {r['runtime']:<12} {r['batch1_ms']:>12.3f} "
                     f"{r['batch64_ms']:>13.2f} {r['batch64_images_per_s']:>12.0f}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--resnet-size", type=int, default=MODELS["resnet18"][1], help="image side for resnet18")
    parser.add_argument("--repeats", type=int, default=30, help="timed calls per cell at batch 1 (a quarter at 64)")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--json", default=str(Path(__file__).resolve().parent / "results" / "inference_latency.json"),
                        help="where to write the results")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    results = []
    for name in args.models:
        results += benchmark(name, args.resnet_size if name == "resnet18" else MODELS[name][1], args.repeats,
                             args.threads)
    print(table(results))
    report = {"command": "python benchmarks/inference_latency.py " + " ".join(sys.argv[1:]),
              "cpu": _cpu_name(), "threads": args.threads, "load_average": os.getloadavg(),
              "repeats": args.repeats, "statistic": "median",
              "versions": {"torch": torch.__version__, "onnxruntime": onnxruntime.__version__,
                           "python": platform.python_version()},
              "results": results}
    os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
    with open(args.json, "w") as handle:
        json.dump(report, handle, indent=2)
    print(f"wrote {args.json} ({report['cpu']}, {args.threads} threads, load average {report['load_average'][0]:.1f})")


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as handle:
            return next(line.split(":", 1)[1].strip() for line in handle if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


if __name__ == "__main__":
    main()
