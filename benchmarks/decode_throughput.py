"""Decoding throughput of photo-sized JPEGs: Pillow alone, visiontrain's decode_image, and the folder caches.

The images: --count JPEGs cut from scikit-learn's two sample photos (china.jpg and flower.jpg, 640x427 camera
photos) at their own resolution, never upscaled, so their JPEG statistics (DCT coefficients, chroma, noise) are those
of real photos: random boxes from 380x280 to 640x427 (median about 510x350, ImageNet's median is 500x375),
a fifth of them turned to portrait, mirrored at random, saved at JPEG quality 75-95 with Pillow's default 4:2:0
chroma subsampling. Written once into --folder (root/<class>/NNNN.jpg, two classes: the photo they come from).

Measured, in one invocation, each on the same files:
  pillow           Image.open + convert("RGB") + resize to the side (Pillow's work alone, no visiontrain)
  pillow-draft     the same with Image.draft (libjpeg scales by 1/2, 1/4 or 1/8 while decoding)
  decode_image     visiontrain's one decode path (data/decode.py; EXIF, policy, crop), one process
  ...-no-draft     the same with the policy's jpeg_draft off (every JPEG decoded in full)
  in-memory cache  load_dataset of the folder as training loads it (worker processes, data/folder.py)
  memmap cache     the same through the memory-mapped cache builder (data/memmap.py, VISIONTRAIN_MEMMAP=1)
  memmap cache 1-core   the builder confined to one core (sched_setaffinity: one decoding worker): its scaling
  ... (peer)       with --peer DIR (a checkout of another commit, e.g. `git archive main | tar -x -C DIR`): the same
                   cache measurements with that checkout's visiontrain, in the same rounds
The caches are built in a fresh process each (a cold cache, its own VISIONTRAIN_HOME), timed inside it. Each row
gives images/s of wall time and images per CPU-second (user + system time of the process and its workers: the
per-core rate, which a machine shared with other jobs does not distort as much as wall time), the median of
--repeats, and the ImageNet extrapolation (1,281,167 training images) on 2 and on 16 cores at the per-core rate.

    python benchmarks/decode_throughput.py [--folder /tmp/vt-photo-jpegs] [--count 3000] [--side 128]
        [--repeats 3] [--peer DIR] [--out benchmarks/results/decode_throughput.json]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))
from time_to_accuracy import cpu_class  # noqa: E402
IMAGENET_TRAIN = 1_281_167


def make_folder(folder: Path, count: int, seed: int = 0) -> Path:
    from sklearn.datasets import load_sample_images

    loaded = load_sample_images()
    rng = np.random.default_rng(seed)
    for name, photo in zip(("china", "flower"), loaded.images):
        image = Image.fromarray(photo)
        (folder / name).mkdir(parents=True, exist_ok=True)
        for index in range(count // 2):
            target = folder / name / f"{index:04d}.jpg"
            if target.is_file():
                continue
            width, height = int(rng.integers(380, 641)), int(rng.integers(280, 428))
            left, top = int(rng.integers(0, 641 - width)), int(rng.integers(0, 428 - height))
            crop = image.crop((left, top, left + width, top + height))
            if rng.random() < 0.5:
                crop = crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
            if rng.random() < 0.2:
                crop = crop.transpose(Image.Transpose.ROTATE_90)
            crop.save(target, quality=int(rng.integers(75, 96)))
    return folder


def cpu_seconds() -> float:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def timed(function, count: int) -> dict:  # noqa: ANN001
    wall, cpu = time.perf_counter(), cpu_seconds()
    function()
    wall, cpu = time.perf_counter() - wall, cpu_seconds() - cpu
    return {"wall_s": wall, "cpu_s": cpu, "images_per_s": count / wall, "images_per_cpu_s": count / cpu}


def pillow(files: list[Path], side: int, draft: bool) -> None:
    for path in files:
        with Image.open(path) as image:
            if draft:
                scale = side / min(image.size)
                image.draft("RGB", (round(image.width * scale), round(image.height * scale)))
            image = image.convert("RGB")
            scale = side / min(image.size)
            image.resize((max(side, round(image.width * scale)), max(side, round(image.height * scale))),
                         Image.Resampling.BILINEAR, reducing_gap=3.0)


def decode_all(files: list[Path], side: int, draft: bool = True) -> None:
    from visiontrain.data.decode import DecodePolicy, decode_image

    policy = DecodePolicy(jpeg_draft=draft)
    for path in files:
        decode_image(path, policy, side)


CACHE_SCRIPT = """
import json, os, resource, sys, tempfile, time
cores = int(sys.argv[3])
if cores:
    os.sched_setaffinity(0, set(sorted(os.sched_getaffinity(0))[:cores]))  # inherited by the decoding workers
from visiontrain.data import load_dataset
with tempfile.TemporaryDirectory() as home:
    os.environ["VISIONTRAIN_HOME"] = home  # a cold cache every time
    usage = lambda: sum(getattr(resource.getrusage(who), field) for who in (resource.RUSAGE_SELF,
                        resource.RUSAGE_CHILDREN) for field in ("ru_utime", "ru_stime"))
    wall, cpu = time.perf_counter(), usage()
    load_dataset(sys.argv[1], image_size=int(sys.argv[2]), val_fraction=0.0, verbose=False)
    print(json.dumps({"wall_s": time.perf_counter() - wall, "cpu_s": usage() - cpu}))
"""


def load_cache(folder: Path, side: int, memmap: bool, count: int, repo: Path = REPO, cores: int = 0) -> dict:
    """The folder's cache built in a fresh process with `repo`'s visiontrain (timed inside it, after the imports)."""
    result = subprocess.run([sys.executable, "-c", CACHE_SCRIPT, str(folder), str(side), str(cores)], check=True,
                            capture_output=True, text=True, cwd=repo, env=os.environ | {  # cwd: -c imports from it
                                "PYTHONPATH": str(repo), "VISIONTRAIN_MEMMAP": "1" if memmap else "0"})
    timing = json.loads(result.stdout.strip().splitlines()[-1])
    return timing | {"images_per_s": count / timing["wall_s"], "images_per_cpu_s": count / timing["cpu_s"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--folder", type=Path, default=Path(tempfile.gettempdir()) / "vt-photo-jpegs")
    parser.add_argument("--count", type=int, default=3000)
    parser.add_argument("--side", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--only", default=None, help="comma-separated subset of the measurements")
    parser.add_argument("--peer", type=Path, default=None, help="a checkout of another commit: its caches too")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    folder = make_folder(args.folder, args.count)
    files = sorted(folder.rglob("*.jpg"))
    sizes = sorted(min(Image.open(p).size) for p in files[::10])
    cpu = cpu_class()
    print(f"CPU: {cpu['model']} ({cpu['class']}), {len(os.sched_getaffinity(0))} cores this process may use")
    print(f"{len(files)} JPEGs in {folder} (median short side {sizes[len(sizes) // 2]} px, "
          f"{sum(p.stat().st_size for p in files) / len(files) / 1024:.0f} KiB each), to {args.side} px; "
          f"{os.cpu_count()} cores: {os.getloadavg()[0]:.1f} load average before starting", flush=True)
    sample = files[: min(len(files), 1000)]  # the single-process measurements: a third of the time
    measurements = {
        "pillow": (lambda: pillow(sample, args.side, False), len(sample)),
        "pillow-draft": (lambda: pillow(sample, args.side, True), len(sample)),
        "decode_image": (lambda: decode_all(sample, args.side), len(sample)),
        "decode_image-no-draft": (lambda: decode_all(sample, args.side, draft=False), len(sample)),
    }
    caches = {"in-memory cache": (False, 0), "memmap cache": (True, 0), "memmap cache 1-core": (True, 1)}
    for name, (memmap, cores) in caches.items():
        measurements[name] = partial(load_cache, folder, args.side, memmap, len(files), REPO, cores)
        if args.peer:
            measurements[f"{name} (peer)"] = partial(load_cache, folder, args.side, memmap, len(files), args.peer, cores)
    chosen = args.only.split(",") if args.only else list(measurements)
    runs: dict[str, list[dict]] = {name: [] for name in chosen}
    for _ in range(args.repeats):  # interleaved rounds: a change in the machine's load hits every measurement
        for name in chosen:
            measure = measurements[name]
            runs[name].append(measure() if isinstance(measure, partial) else timed(*measure))
    results = {}
    for name in chosen:
        median = {key: statistics.median(run[key] for run in runs[name]) for key in runs[name][0]}
        per_core = median["images_per_cpu_s"]
        median |= {f"imagenet_hours_{cores}_cores": IMAGENET_TRAIN / (per_core * cores) / 3600 for cores in (2, 16)}
        results[name] = median
        print(f"{name:27s} {median['images_per_s']:7.0f} images/s  {per_core:7.0f} per CPU-second   ImageNet: "
              f"{median['imagenet_hours_2_cores']:.2f} h on 2 cores, {median['imagenet_hours_16_cores'] * 60:.0f} min "
              f"on 16", flush=True)
    ratios = {}
    for name, peer, what in (("decode_image", "decode_image-no-draft", "draft decoding, per CPU-second"),
                             ("pillow-draft", "pillow", "Pillow's draft alone, per CPU-second"),
                             ("memmap cache", "memmap cache (peer)", "memmap builder against the peer, per CPU-second"),
                             ("in-memory cache", "in-memory cache (peer)", "in-memory cache against the peer, per "
                                                                           "CPU-second")):
        if name in results and peer in results:
            ratios[what] = results[name]["images_per_cpu_s"] / results[peer]["images_per_cpu_s"]
    if "memmap cache" in results and "memmap cache 1-core" in results:
        ratios["memmap builder, all cores against one, wall"] = (results["memmap cache"]["images_per_s"]
                                                                 / results["memmap cache 1-core"]["images_per_s"])
    for what, ratio in ratios.items():
        print(f"ratio: {what}: {ratio:.2f}x")
    print(f"load average {os.getloadavg()[0]:.1f} at the end")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"cpu": cpu, "images": len(files), "side": args.side, "results": results,
                                        "ratios": ratios}, indent=1))


if __name__ == "__main__":
    main()
