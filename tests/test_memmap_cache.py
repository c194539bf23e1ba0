"""Image folders larger than memory: the memory-mapped cache (data/memmap.py), forced with VISIONTRAIN_MEMMAP=1.

It must train exactly as the in-memory cache does, never decode twice, never train on a partial or corrupt file,
keep the build's memory bounded whatever the folder's size, and be built once for all ranks of a node.
"""
from __future__ import annotations

import csv
import json
import os
import pickle
import subprocess
import sys
import threading
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import visiontrain
from conftest import REPO
from visiontrain.data import folder, load_dataset, memmap, workers
from visiontrain.data.mapped import MappedImages, cat_images, place_on_device
from visiontrain.data.registry import channel_stats
from visiontrain.data.splitfile import write_split_file
from visiontrain.errors import DataError

FAST = dict(model="simple-cnn", epochs=1, batch_size=32, threads=1, progress="none", report=False,
            augment="crop+flip")


def write_photos(root: Path, per_class: int, test_per_class: int, sizes=(26, 40), classes=("red", "green", "blue"),
                 seed: int = 0) -> Path:
    """Small colour photos (PNG and JPEG, mixed sizes) whose class shows in their tint, in train/ and test/."""
    rng = np.random.default_rng(seed)
    for split, count in (("train", per_class), ("test", test_per_class)):
        for label, name in enumerate(classes):
            (root / split / name).mkdir(parents=True, exist_ok=True)
            for i in range(count):
                height, width = (int(v) for v in rng.integers(sizes[0], sizes[1], 2))
                pixels = rng.integers(0, 160, (height, width, 3)).astype(np.uint8)
                pixels[:, :, label] += 90
                suffix = "png" if i % 2 else "jpg"
                Image.fromarray(pixels).save(root / split / name / f"{i:04d}.{suffix}")
    return root


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    """330 images: over 256, so the cache is written by worker processes."""
    return write_photos(tmp_path_factory.mktemp("photos"), 90, 20)


@pytest.fixture
def small(tmp_path) -> Path:
    """40 images: decoded in this process."""
    return write_photos(tmp_path / "small", 10, 3, seed=1)


def cache_files(home: Path, pattern: str) -> list[Path]:
    return sorted((home / "cache").glob(pattern))


def metric_rows(run_path: Path) -> list[dict]:
    with open(run_path / "metrics.csv", newline="") as handle:
        return [{k: v for k, v in row.items() if k != "seconds"} for row in csv.DictReader(handle)]


def forbid_decoding(monkeypatch) -> None:
    def decode(*args, **kwargs):
        raise AssertionError("an image was decoded although the cache was complete")

    monkeypatch.setattr(workers, "decode_image", decode)  # here, and no worker process either
    monkeypatch.setattr(workers.WorkerPool, "__init__", decode)


def test_memmap_run_matches_the_in_memory_run_and_the_second_run_decodes_nothing(photos, tmp_path, monkeypatch,
                                                                                   isolated_home):
    monkeypatch.setenv(memmap.ENV, "0")
    in_memory = visiontrain.train(dataset=str(photos), runs_dir=str(tmp_path), name="memory", **FAST)
    monkeypatch.setenv(memmap.ENV, "1")
    mapped = visiontrain.train(dataset=str(photos), runs_dir=str(tmp_path), name="mapped", **FAST)
    assert in_memory.summary["dataset"]["storage"] == "memory"
    assert mapped.summary["dataset"]["storage"] == "memmap" and mapped.summary["dataset"]["cache"] == "built"
    assert mapped.summary["dataset"]["fingerprint"] == in_memory.summary["dataset"]["fingerprint"]
    assert mapped.summary["dataset"]["mean"] == in_memory.summary["dataset"]["mean"]
    assert metric_rows(mapped.path) == metric_rows(in_memory.path)  # same seed: the same numbers, to the last digit
    assert mapped.summary["test_acc"] == in_memory.summary["test_acc"]
    assert len(cache_files(isolated_home, "*.u8")) == 1 and not cache_files(isolated_home, ".*.tmp")

    forbid_decoding(monkeypatch)
    again = visiontrain.train(dataset=str(photos), runs_dir=str(tmp_path), name="again", **FAST)
    assert again.summary["dataset"]["cache"] == "hit" and again.summary["dataset"]["storage"] == "memmap"
    assert metric_rows(again.path) == metric_rows(in_memory.path)


def test_splits_are_rows_of_one_file_and_equal_the_in_memory_tensors(small, tmp_path, monkeypatch):
    monkeypatch.setenv(memmap.ENV, "0")
    reference = load_dataset(str(small), seed=3)
    split_csv = tmp_path / "split.csv"
    write_split_file(split_csv, small, {"train": reference.train, "val": reference.val, "test": reference.test})
    monkeypatch.setenv(memmap.ENV, "1")
    for data in (load_dataset(str(small), seed=3), load_dataset(str(small), seed=3, split_file=split_csv)):
        assert data.storage == "memmap" and data.fingerprint == reference.fingerprint
        for name in ("train", "val", "test"):
            mapped, expected = getattr(data, name), getattr(reference, name)
            assert isinstance(mapped.images, MappedImages)  # a carved or listed split is rows, not a copy
            assert mapped.images.shape == expected.images.shape and mapped.sources == expected.sources
            assert torch.equal(mapped.images[:], expected.images) and torch.equal(mapped.labels, expected.labels)


def test_mapped_images_index_like_a_tensor_and_never_copy_the_split(tmp_path):
    images = torch.arange(5 * 2 * 3 * 3, dtype=torch.int64).remainder(251).to(torch.uint8).view(5, 2, 3, 3)
    path = tmp_path / "x.u8"
    path.write_bytes(images.numpy().tobytes())
    mapped = MappedImages(path, (5, 2, 3, 3), torch.tensor([4, 0, 2, 3]))
    expected = images[[4, 0, 2, 3]]
    assert mapped.shape == expected.shape and len(mapped) == 4 and mapped.dtype == torch.uint8
    for key in (torch.tensor([3, 1]), [1, 1], np.array([0]), slice(1, None, 2), 2, torch.tensor(1),
                torch.tensor([True, False, True, False])):
        assert torch.equal(mapped[key], expected[key]), key
    batch = mapped[torch.tensor([0, 1])]
    batch += 1  # an ordinary tensor: the file is untouched
    assert torch.equal(mapped[:], expected)
    subset = mapped.subset(torch.tensor([2, 0]))
    assert isinstance(subset, MappedImages) and torch.equal(subset[:], expected[[2, 0]])
    joined = cat_images([mapped, subset])
    assert isinstance(joined, MappedImages) and torch.equal(joined[:], torch.cat([expected, expected[[2, 0]]]))
    assert torch.equal(pickle.loads(pickle.dumps(mapped))[:], expected)  # by path, never by pixels
    assert mapped.cpu() is mapped and mapped.to("cpu") is mapped
    assert place_on_device(mapped, torch.device("cpu")) is mapped


def test_a_split_goes_to_the_gpu_whole_only_when_it_fits(tmp_path, monkeypatch, capsys):
    path = tmp_path / "x.u8"
    path.write_bytes(bytes(10 * 3 * 4 * 4))
    mapped = MappedImages(path, (10, 3, 4, 4), torch.arange(10))
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (900, 10**9))  # 900 bytes free
    assert place_on_device(mapped, torch.device("cuda")) is mapped  # 480 bytes > 50% of 900: per batch
    assert "each batch is copied" in capsys.readouterr().err
    whole = place_on_device(mapped, torch.device("meta"))  # a device with room: one tensor there, filled by slices
    assert isinstance(whole, torch.Tensor) and whole.device.type == "meta" and whole.shape == (10, 3, 4, 4)


def test_channel_stats_by_chunks_equal_the_in_memory_ones(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    images = torch.from_numpy(rng.integers(0, 256, (300, 3, 8, 8), dtype=np.uint8))
    path = tmp_path / "x.u8"
    path.write_bytes(images.numpy().tobytes())
    mapped = MappedImages(path, tuple(images.shape), torch.arange(300))
    assert memmap._channel_stats(mapped) == channel_stats(images)  # small: the very same function
    pixels = images.numpy() / 255.0  # and what that function computes, by numpy
    assert np.allclose(channel_stats(images), [pixels.mean((0, 2, 3)), pixels.std((0, 2, 3), ddof=1)], rtol=1e-12)
    monkeypatch.setattr(memmap, "STATS_BYTES", 0)
    monkeypatch.setattr(memmap, "CHUNK_BYTES", 2 * 3 * 8 * 8 * 7)  # 7 images per chunk
    mean, std = memmap._channel_stats(mapped)
    expected_mean, expected_std = channel_stats(images)
    assert np.allclose(mean, expected_mean, rtol=1e-12) and np.allclose(std, expected_std, rtol=1e-12)


@pytest.mark.parametrize("damage", ["truncated", "bytes changed", "header missing", "header edited"])
def test_a_damaged_cache_is_detected_and_rebuilt_with_a_notice(small, monkeypatch, isolated_home, capsys, damage):
    monkeypatch.setenv(memmap.ENV, "1")
    first = load_dataset(str(small), val_fraction=0)
    expected, classes = first.train.images[:], first.classes
    del first  # its mapping of the file is gone before the file is damaged
    data_file, header_file = cache_files(isolated_home, "*.u8")[0], cache_files(isolated_home, "*.json")[0]
    size = data_file.stat().st_size
    if damage == "truncated":
        os.truncate(data_file, size // 2)
    elif damage == "bytes changed":
        with open(data_file, "r+b") as handle:
            handle.seek(size // 2)
            byte = handle.read(1)
            handle.seek(size // 2)
            handle.write(bytes([byte[0] ^ 0xFF]))
    elif damage == "header missing":  # killed after the data file was renamed, before the header was written
        header_file.unlink()
    else:
        header = json.loads(header_file.read_text())
        header["classes"][0] = "renamed"  # without updating the header's checksum
        header_file.write_text(json.dumps(header))
    capsys.readouterr()
    second = load_dataset(str(small), val_fraction=0)
    notice = capsys.readouterr().err
    assert second.cache_status == "rebuilt" and "is corrupt" in notice and "rebuilt" in notice, notice
    assert torch.equal(second.train.images[:], expected) and second.classes == classes
    third = load_dataset(str(small), val_fraction=0)
    assert third.cache_status == "hit"


def test_a_build_killed_midway_leaves_nothing_usable_and_the_next_load_builds_again(photos, isolated_home,
                                                                                     monkeypatch):
    marker = f"visiontrain-test-{os.getpid()}-{time.monotonic_ns()}"  # in the environment of this build's workers
    script = f"""
import os
from visiontrain.data import load_dataset, memmap
real, calls = memmap._Progress.add, []
def dying(self, count):
    calls.append(count)
    if len(calls) == 2:  # the second chunk of rows written: as a kill -9 in the middle of the build
        os._exit(137)
    return real(self, count)
memmap._Progress.add = dying
load_dataset({str(photos)!r}, val_fraction=0)
"""
    env = os.environ | {"PYTHONPATH": str(REPO), memmap.ENV: "1", "OMP_NUM_THREADS": "1", "MARKER": marker}
    killed = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert killed.returncode == 137, killed.stderr
    assert cache_files(isolated_home, ".*.tmp") and not cache_files(isolated_home, "*.json")
    assert not cache_files(isolated_home, "*.u8")  # only a temp file: never a final name on a partial file
    deadline = time.monotonic() + 10  # its decoding workers read the end of their input and stop: no orphans
    while orphans := processes_with(marker):
        assert time.monotonic() < deadline, f"decoding workers outlived the killed build: {orphans}"
        time.sleep(0.1)
    monkeypatch.setenv(memmap.ENV, "1")
    data = load_dataset(str(photos), val_fraction=0)
    assert data.cache_status == "built" and not cache_files(isolated_home, ".*.tmp")
    monkeypatch.delenv(memmap.ENV)
    reference = load_dataset(str(photos), val_fraction=0)  # the in-memory path (auto: far below 25% of memory)
    assert reference.storage == "memory" and torch.equal(data.train.images[:], reference.train.images)


def processes_with(marker: str) -> list[int]:
    """The processes whose environment holds `marker` (Linux /proc; an empty list elsewhere)."""
    found = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            if marker.encode() in (entry / "environ").read_bytes():
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def rss_anon_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1])
    raise RuntimeError("no RssAnon in /proc/self/status")


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc to read RssAnon")
def test_peak_memory_while_caching_stays_far_below_the_decoded_size(tmp_path, monkeypatch):
    root, count, side = tmp_path / "large", 2000, 128
    rng = np.random.default_rng(0)
    base = np.linspace(0, 255, side * side * 3).reshape(side, side, 3)
    for i in range(count):
        name = ("a", "b")[i % 2]
        (root / name).mkdir(parents=True, exist_ok=True)
        pixels = (base + rng.integers(0, 40, (side, side, 3))).clip(0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(root / name / f"{i:05d}.jpg", quality=85)
    decoded = count * 3 * side * side  # 98 MB
    monkeypatch.setenv(memmap.ENV, "1")
    monkeypatch.setattr(memmap, "decode_workers", lambda: 1)  # in this process, where it is measured
    peak, stop = [rss_anon_kib()], threading.Event()
    baseline = peak[0]

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], rss_anon_kib())
            time.sleep(0.002)

    sampler = threading.Thread(target=sample)
    tracemalloc.start()
    sampler.start()
    try:
        data = load_dataset(str(root), image_size=side, val_fraction=0, verbose=False)
    finally:
        stop.set()
        sampler.join()
        _, traced_peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    assert data.cache_status == "built" and data.train.images.shape == (count, 3, side, side)
    anon_growth = (peak[0] - baseline) * 1024
    print(f"decoded {decoded / 2**20:.0f} MiB; anonymous memory grew {anon_growth / 2**20:.1f} MiB; "
          f"tracemalloc peak {traced_peak / 2**20:.1f} MiB")
    assert anon_growth < decoded / 4 and traced_peak < decoded / 6  # measured: ~15% and ~8% (4 MB chunks)


def test_when_the_memmap_cache_is_used(monkeypatch, tmp_path):
    files = [tmp_path / f"{i}.jpg" for i in range(1000)] + [tmp_path / "notes.txt"]
    policy = folder.DecodePolicy()
    assert memmap.estimated_bytes(files, 64, None, policy) == 1000 * 3 * 64 * 64
    monkeypatch.delenv(memmap.ENV, raising=False)
    monkeypatch.setattr(memmap, "total_memory", lambda: 4 * 1000 * 3 * 64 * 64)
    assert not memmap.wanted(files, 64, None, policy)  # exactly 25%: still in memory
    assert memmap.wanted(files, 65, None, policy)
    monkeypatch.setenv(memmap.ENV, "0")
    assert not memmap.wanted(files, 1000, None, policy)
    monkeypatch.setenv(memmap.ENV, "1")
    assert memmap.wanted(files, 8, 1, policy)
    monkeypatch.setenv(memmap.ENV, "sometimes")
    with pytest.raises(DataError, match="VISIONTRAIN_MEMMAP"):
        memmap.wanted(files, 8, 1, policy)


def test_bad_files_are_listed_before_anything_is_cached(small, monkeypatch, isolated_home):
    monkeypatch.setenv(memmap.ENV, "1")
    (small / "train" / "red" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    with pytest.raises(DataError, match="1 unreadable image file.*broken.png.*--strict"):
        load_dataset(str(small))
    assert not cache_files(isolated_home, "*.u8") and not cache_files(isolated_home, ".*.tmp")
    data = load_dataset(str(small), skip_bad=True, val_fraction=0)
    assert len(data.train) == 30 and [Path(p).name for p, _ in data.bad_files] == ["broken.png"]


@pytest.mark.slow
def test_two_torchrun_ranks_share_one_cache_built_once(small, tmp_path, isolated_home):
    env = os.environ | {"PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", memmap.ENV: "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m",
               "visiontrain", "train", "--dataset", str(small), "--model", "simple-cnn", "--epochs", "1",
               "--batch-size", "8", "--threads", "1", "--runs-dir", str(tmp_path), "--name", "ddp", "--progress",
               "line", "--no-report"]
    job = subprocess.run(command, capture_output=True, text=True, env=env, cwd=REPO, timeout=300)
    assert job.returncode == 0, job.stderr[-3000:]
    assert job.stderr.count("into a memory-mapped cache") == 1 and job.stderr.count("visiontrain: cached ") == 1
    assert len(cache_files(isolated_home, "*.u8")) == 1 and len(cache_files(isolated_home, "*.json")) == 1
    assert not cache_files(isolated_home, ".*.tmp")
    summary = (tmp_path / "ddp" / "summary.json").read_text()
    assert '"storage": "memmap"' in summary and '"world_size": 2' in summary
