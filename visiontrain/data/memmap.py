"""Image folders larger than memory: decoded once, by worker processes, into a uint8 file that training memory-maps.

When: an image folder whose estimated decoded size (image files x channels x side x side bytes, side = --image-size
or the decode policy's max_side, channels = --channels or 3) exceeds RAM_FRACTION of this machine's memory (the
smaller of physical RAM and a container's cgroup limit). VISIONTRAIN_MEMMAP=1 forces it, =0 forbids it. Named
datasets and smaller folders keep the in-memory cache of data/cache.py, unchanged. The in-memory build peaks at
about 3x the decoded size (decoded arrays, the stacked tensor, the serialised file), hence 25%.

Files, in $VISIONTRAIN_HOME/cache, named like the in-memory entry (dataset name + hash of the source files' paths,
sizes and mtimes and of the decode settings):
  <name>-<key>.u8    raw uint8 (N, C, H, W), C order, no header: every split of the folder, train rows first
  <name>-<key>.json  the header, written last (the commit record): shape, rows of each split, labels, sources,
                     classes, unreadable files, mean/std, fingerprint, decode settings, a SHA-256 of every chunk of
                     rows (computed by the workers as they write) and a SHA-256 of the header itself
  <name>-<key>.lock  held (flock) while a process builds or checks the entry

Build: the folder is scanned, then worker processes decode, resize (the same decode_image and centre crop as the
in-memory path) and write their chunk of rows straight into a temp file at its offset (os.pwrite), so peak memory
is one chunk (~8 MB) per worker whatever the folder's size. Then fsync, rename to the final name, and the header.
Load: the header's checksum, the data file's size and every chunk's SHA-256 (threads, sequential reads); anything
wrong (a build killed midway, a truncated or edited file) gets a notice, and the entry is deleted and rebuilt.
Under torchrun, local rank 0 builds or checks the file while the other ranks wait at a barrier; then every rank
maps it read-only, so the page cache holds one copy per node.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch

from .._io import _fsync_dir, _umask, atomic_write_text
from ..errors import DataError
from .cache import home, mark_used
from .decode import IMAGE_EXTENSIONS, DecodePolicy
from .folder import FolderScan, check_bad_files, decoded_shape, folder_shape, scan_folder
from .mapped import MappedImages
from .registry import channel_stats
from .tensors import ImageTensors
from .workers import POOL_MIN_FILES, WorkerPool, decode_workers, write_chunk

FORMAT = 2  # of the header and the data file; part of the key (2: each file decoded straight to the side)
ENV = "VISIONTRAIN_MEMMAP"  # 1: always memory-map image folders, 0: never, unset or auto: above RAM_FRACTION
RAM_FRACTION = 0.25
CHUNK_BYTES = 4 << 20  # rows per worker task (and per checksum): bounds each worker's memory
STATS_BYTES = 64 << 20  # mean/std as the in-memory path computes them (a float64 sample) up to this, then by chunks
BUILD_TIMEOUT = timedelta(days=7)  # how long the other torchrun ranks wait for local rank 0's build


class CorruptCache(Exception):
    """The cached entry cannot be used; the message says why (it is then rebuilt)."""


# -- when -----------------------------------------------------------------------------------------------------
def total_memory() -> int:
    """Bytes of memory this process may use: physical RAM, or a container's cgroup limit where that is lower."""
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        memory = 1 << 62  # unknown: never memory-map by size (VISIONTRAIN_MEMMAP=1 still does)
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = Path(path).read_text().strip()
        except OSError:
            continue
        if text.isdigit():
            memory = min(memory, int(text))
    return memory


def estimated_bytes(files: list[Path], image_size: int | None, channels: int | None, policy: DecodePolicy) -> int:
    """Decoded size of an image folder: a bound when image_size is None (images are then at most max_side)."""
    count = sum(1 for path in files if path.suffix.lower() in IMAGE_EXTENSIONS)
    side = image_size or policy.max_side
    return count * (channels or 3) * side * side


def wanted(files: list[Path], image_size: int | None, channels: int | None, policy: DecodePolicy) -> bool:
    """Whether an image folder goes to the memory-mapped cache (see the module docstring)."""
    setting = os.environ.get(ENV, "auto").strip().lower()
    if setting in ("1", "true", "yes", "on"):
        return True
    if setting in ("0", "false", "no", "off"):
        return False
    if setting not in ("", "auto"):
        raise DataError(f"{ENV}={setting!r} is not a setting; use 1 (always memory-map image folders), 0 (never) "
                        "or auto (when the decoded images exceed 25% of memory)")
    return estimated_bytes(files, image_size, channels, policy) > RAM_FRACTION * total_memory()


# -- the entry ------------------------------------------------------------------------------------------------
class Paths:
    def __init__(self, name: str, key_sha256: str):
        self.folder = home() / "cache"
        self.stem, self.key = f"{name}-{key_sha256[:20]}", key_sha256
        self.data, self.header, self.lock = (self.folder / f"{self.stem}{ext}" for ext in (".u8", ".json", ".lock"))

    def stale_temp_files(self) -> list[Path]:
        return list(self.folder.glob(f".{self.data.name}.*.tmp"))


def cached(name: str, key: dict[str, Any], *, root: Path, policy: DecodePolicy, image_size: int | None,
           channels: int | None, skip_bad: bool, verbose: bool = True, scan: FolderScan | None = None
           ) -> tuple[dict[str, Any], str]:
    """Return (entry, status) for the image folder `root`, like data.cache.cached: status 'hit', 'built' or
    'rebuilt' (the old entry was corrupt). The entry's `<split>_images` are MappedImages."""
    key_sha256 = hashlib.sha256(json.dumps({"format": FORMAT, "storage": "memmap"} | key, sort_keys=True)
                                .encode()).hexdigest()
    paths = Paths(name, key_sha256)
    try:  # the one place this entry can live: refused here in one sentence, not as a traceback mid-build
        paths.folder.mkdir(parents=True, exist_ok=True)
        with open(paths.lock, "a+b"):
            pass
    except OSError as error:
        raise DataError(f"the cache folder {paths.folder} cannot be written ({error.strerror or error}); {root} is "
                        "decoded into a memory-mapped file there, so set VISIONTRAIN_HOME to a writable folder (or "
                        f"{ENV}=0 to decode it into memory)") from None
    group = _ranks_group()
    if group is not None and int(os.environ.get("LOCAL_RANK", "0")) != 0:
        torch.distributed.barrier(group=group)  # local rank 0 builds or checks the entry meanwhile
        torch.distributed.destroy_process_group(group)
        try:
            return _entry(_read_header(paths), paths.data), "hit"
        except CorruptCache as error:
            raise DataError(f"local rank 0 left no usable cache {paths.data} ({error}); see its error above") from None
    try:
        with _locked(paths, verbose):
            status = "built"
            if paths.header.exists() or paths.data.exists():
                try:
                    header = _read_header(paths)
                    _verify_chunks(paths.data, header, verbose)
                    mark_used(paths.header)  # `visiontrain cache` shows it as the last use
                    return _entry(header, paths.data), "hit"
                except CorruptCache as error:
                    print(f"visiontrain: the cached copy {paths.data} is corrupt ({error}); cache rebuilt from the "
                          "source files", file=sys.stderr)
                    status = "rebuilt"
                paths.header.unlink(missing_ok=True)  # the header first: a data file without one is never used
                paths.data.unlink(missing_ok=True)
            header = _build(paths, root=root, policy=policy, image_size=image_size, channels=channels,
                            skip_bad=skip_bad, verbose=verbose, key=key, scan=scan)
            return _entry(header, paths.data), status
    finally:
        if group is not None:
            torch.distributed.barrier(group=group)
            torch.distributed.destroy_process_group(group)


def _ranks_group():  # noqa: ANN202 - a ProcessGroup or None
    """Under torchrun: a gloo group whose barrier waits as long as a build takes (the default group gives up after
    60 s, which is right for a dead peer and wrong for decoding a large folder)."""
    dist = torch.distributed
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() < 2:
        return None
    return dist.new_group(backend="gloo", timeout=BUILD_TIMEOUT)


@contextmanager
def _locked(paths: Paths, verbose: bool) -> Iterator[None]:
    """Exclusive lock on the entry's lock file: one process builds, the others wait and then find it built."""
    with open(paths.lock, "a+b") as handle:  # "a": an existing lock file is never truncated
        if not _try_lock(handle):
            if verbose:
                print(f"visiontrain: waiting for another process that is building or checking {paths.data}",
                      file=sys.stderr)
            _lock(handle)
        try:
            yield
        finally:
            _unlock(handle)


# fcntl exists on Linux and macOS only; it is imported here, where it is used, so that `import visiontrain` works on
# Windows, whose msvcrt.locking locks a byte range instead (byte 0 of the lock file).
def _try_lock(handle) -> bool:  # noqa: ANN001
    try:
        import fcntl
    except ImportError:
        import msvcrt

        handle.seek(0)
        try:
            msvcrt.locking(handle.fileno(), msvcrt.LK_NBLCK, 1)
            return True
        except OSError:
            return False
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False


def _lock(handle) -> None:  # noqa: ANN001
    try:
        import fcntl
    except ImportError:
        while not _try_lock(handle):
            time.sleep(0.5)
        return
    fcntl.flock(handle, fcntl.LOCK_EX)


def _unlock(handle) -> None:  # noqa: ANN001
    try:
        import fcntl
    except ImportError:
        import msvcrt

        handle.seek(0)
        msvcrt.locking(handle.fileno(), msvcrt.LK_UNLCK, 1)
        return
    fcntl.flock(handle, fcntl.LOCK_UN)


def _header_digest(header: dict[str, Any]) -> str:
    body = {k: v for k, v in header.items() if k != "checksum"}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def _read_header(paths: Paths) -> dict[str, Any]:
    """The header, checked against itself, the key and the data file's size; CorruptCache otherwise."""
    if not paths.header.is_file():
        raise CorruptCache("its header is missing: the build did not finish")
    try:
        header = json.loads(paths.header.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise CorruptCache(f"unreadable header: {error}") from None
    if not isinstance(header, dict) or header.get("checksum") != _header_digest(header):
        raise CorruptCache("the header does not match its own checksum")
    if header.get("format") != FORMAT or header.get("key_sha256") != paths.key:
        raise CorruptCache("the header belongs to another entry")
    expected = math.prod(header["shape"])
    try:
        size = paths.data.stat().st_size
    except OSError:
        raise CorruptCache("the data file is missing") from None
    if size != expected:
        raise CorruptCache(f"the data file has {size:,} bytes where the header says {expected:,}: truncated or "
                           "replaced")
    return header


def _verify_chunks(path: Path, header: dict[str, Any], verbose: bool) -> None:
    """Every chunk of rows against the SHA-256 its worker computed while writing (threads; hashlib releases the GIL)."""
    rows, row_bytes, digests = header["chunk_rows"], math.prod(header["shape"][1:]), header["chunk_sha256"]
    chunk_bytes = rows * row_bytes
    total = header["shape"][0]
    fd = os.open(path, os.O_RDONLY)

    def matches(index: int) -> bool:
        size = min(chunk_bytes, (total - index * rows) * row_bytes)
        data = os.pread(fd, size, index * chunk_bytes)
        return len(data) == size and hashlib.sha256(data).hexdigest() == digests[index]

    progress = _Progress(total, "checking the cache", verbose and total * row_bytes >= 1 << 30)
    try:
        with ThreadPoolExecutor(min(8, os.cpu_count() or 1)) as pool:
            bad = []
            for index, ok in enumerate(pool.map(matches, range(len(digests)))):
                if not ok:
                    bad.append(index)
                progress.add(min(rows, total - index * rows))
    finally:
        os.close(fd)
        progress.close()
    if bad:
        raise CorruptCache(f"{len(bad)} of {len(digests)} chunks fail their SHA-256, the first at rows "
                           f"{bad[0] * rows}..{min(total, (bad[0] + 1) * rows) - 1}")


def _split_rows(header: dict[str, Any]) -> dict[str, torch.Tensor]:
    """int64 rows of each split that has readable images (the rows of unreadable files hold zeros and are skipped)."""
    holes = set(header["holes"])
    rows = {split: torch.tensor([r for r in range(start, stop) if r not in holes], dtype=torch.int64)
            for split, (start, stop) in header["splits"].items()}
    return {split: r for split, r in rows.items() if len(r)}


def _entry(header: dict[str, Any], path: Path) -> dict[str, Any]:
    """The same dict as data/dataset._entry_from_splits makes, with MappedImages for the images."""
    shape = tuple(header["shape"])
    array = np.memmap(path, dtype=np.uint8, mode="r", shape=shape)
    labels = torch.tensor(header["labels"], dtype=torch.int64)
    entry = {k: header[k] for k in ("classes", "bad_files", "mean", "std", "fingerprint")}
    for split, rows in _split_rows(header).items():
        entry[f"{split}_images"] = MappedImages(path, shape, rows, array)
        entry[f"{split}_labels"] = labels[rows]
        entry[f"{split}_sources"] = [header["sources"][r] for r in rows.tolist()]
    return entry


# -- the build ------------------------------------------------------------------------------------------------
def _build(paths: Paths, *, root: Path, policy: DecodePolicy, image_size: int | None, channels: int | None,
           skip_bad: bool, verbose: bool, key: dict[str, Any], scan: FolderScan | None = None) -> dict[str, Any]:
    started = time.perf_counter()
    scan = scan or scan_folder(root)
    label_of = {name: label for label, name in enumerate(scan.classes)}
    files, labels, splits = [], [], {}
    for split, items in scan.splits.items():
        splits[split] = [len(files), len(files) + len(items)]
        files += [str(path) for path, _ in items]
        labels += [label_of[name] for _, name in items]
    for stale in paths.stale_temp_files():  # left by a build that was killed (we hold the lock: none is running)
        stale.unlink(missing_ok=True)
    fd, temp_name = tempfile.mkstemp(dir=paths.folder, prefix=f".{paths.data.name}.", suffix=".tmp")
    temp = Path(temp_name)
    os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; the cache is as readable as the in-memory one
    workers = decode_workers() if len(files) > POOL_MIN_FILES else 1
    try:
        with _runner(workers) as run:
            shape = folder_shape(files, policy, image_size, channels, run, workers)
            if verbose:
                print(f"visiontrain: decoding {root.resolve().name} once into a memory-mapped cache ({len(files):,} "
                      f"images, about {len(files) * shape[0] * shape[1] ** 2 / 2**30:.2f} GiB); later runs map it "
                      "without decoding", file=sys.stderr)
            while True:
                written = _write_all(run, fd, temp, files, shape, policy, workers, verbose)
                check_bad_files(scan.bad + [(files[i], reason) for i, reason in written["errors"]], root, skip_bad)
                if not written["shapes"]:
                    raise DataError(f"no readable images under {root}")
                actual = decoded_shape(written["shapes"], image_size, channels)
                if actual == shape:
                    break
                print(f"visiontrain: the image headers suggested {shape[0]}x{shape[1]}x{shape[1]} images but the "
                      f"decoded ones are {actual[0]}x{actual[1]}x{actual[1]}; decoding again", file=sys.stderr)
                shape = actual
        os.fsync(fd)
        header = {"format": FORMAT, "key_sha256": paths.key, "shape": [len(files), shape[0], shape[1], shape[1]],
                  "chunk_rows": written["chunk_rows"], "chunk_sha256": written["digests"], "splits": splits,
                  "holes": [i for i, _ in written["errors"]], "labels": labels, "sources": files,
                  "classes": scan.classes, "bad_files": [[files[i], reason] for i, reason in written["errors"]],
                  "decode": {k: key.get(k) for k in ("policy", "image_size", "channels", "skip_bad")},
                  "source_files": len(key.get("files", ()))}
        if "train" not in _split_rows(header):
            raise DataError(f"no readable images in the training split of {root}")
        header |= _statistics(header, temp, scan.classes)
        os.close(fd)
        fd = -1
        os.replace(temp, paths.data)
        _fsync_dir(paths.folder)
    except BaseException:
        if fd >= 0:
            os.close(fd)
        temp.unlink(missing_ok=True)
        raise
    header["seconds"] = round(time.perf_counter() - started, 3)
    header["checksum"] = _header_digest(header)
    atomic_write_text(paths.header, json.dumps(header))  # the commit record: only now is the entry usable
    if verbose:
        seconds = header["seconds"]
        print(f"visiontrain: cached {len(files):,} images ({os.path.getsize(paths.data) / 2**20:,.1f} MiB) in "
              f"{seconds:.1f} s ({len(files) / max(seconds, 1e-9):,.0f} images/s): {paths.data}", file=sys.stderr)
    return header


@contextmanager
def _runner(workers: int) -> Iterator[Callable]:
    """map(job, jobs) in worker processes (Pillow holds the GIL for most of a decode), or here for one worker."""
    if workers <= 1:
        yield map
        return
    with WorkerPool(workers) as pool:  # fresh interpreters, never forks: data/workers.py says why
        yield pool.map


def _chunk_rows(row_bytes: int, count: int, workers: int) -> int:
    rows = max(1, min(1024, CHUNK_BYTES // row_bytes))
    return max(1, min(rows, -(-count // (4 * workers))))  # >= 4 tasks per worker: balance, and a moving progress bar


def _write_all(run: Callable, fd: int, temp: Path, files: list[str], shape: tuple[int, int], policy: DecodePolicy,
               workers: int, verbose: bool) -> dict[str, Any]:
    """Decode every file into its row of `temp` (sized here); returns the unreadable files, the decoded shapes
    and the chunks' digests."""
    channels, side = shape
    row_bytes = channels * side * side
    size = len(files) * row_bytes
    os.ftruncate(fd, 0)
    _reserve(fd, size, temp.parent)
    rows = _chunk_rows(row_bytes, len(files), workers)
    jobs = [(str(temp), start, files[start:start + rows], policy, channels, side)
            for start in range(0, len(files), rows)]
    errors, shapes, digests = [], [], []
    progress = _Progress(len(files), "caching", verbose)
    try:
        for (_, start, *_), (chunk_errors, chunk_shapes, digest) in zip(jobs, run(write_chunk, jobs)):
            errors += [(start + i, reason) for i, reason in chunk_errors]
            for decoded, count in chunk_shapes.items():
                shapes += [decoded] * count
            digests.append(digest)
            progress.add(min(rows, len(files) - start))
    finally:
        progress.close()
    return {"errors": errors, "shapes": shapes, "digests": digests, "chunk_rows": rows}


def _reserve(fd: int, size: int, folder: Path) -> None:
    """Allocate the file's blocks now, so a full disk is one sentence before decoding rather than a failure hours in."""
    try:
        if hasattr(os, "posix_fallocate") and size:
            os.posix_fallocate(fd, 0, size)
        else:
            os.ftruncate(fd, size)
    except OSError as error:
        free = os.statvfs(folder).f_bavail * os.statvfs(folder).f_frsize
        raise DataError(f"the memory-mapped cache needs {size / 2**30:.2f} GiB in {folder}, which has "
                        f"{free / 2**30:.2f} GiB free ({error.strerror}); free some space or set VISIONTRAIN_HOME to "
                        "a folder on a larger disk") from None


def _statistics(header: dict[str, Any], path: Path, classes: list[str]) -> dict[str, Any]:
    """mean, std and fingerprint, computed as data/dataset._entry_from_splits does for the in-memory cache (the
    same functions on the same pixels), reading the file in chunks."""
    entry = _entry(header | {"mean": None, "std": None, "fingerprint": None}, path)
    splits = [s for s in ("train", "val", "test") if f"{s}_images" in entry]
    fingerprints = "".join(ImageTensors(entry[f"{s}_images"], entry[f"{s}_labels"], classes).fingerprint()
                           for s in splits)
    mean, std = _channel_stats(entry["train_images"])
    return {"mean": mean, "std": std,
            "fingerprint": fingerprints if len(splits) == 1 else hashlib.sha256(fingerprints.encode()).hexdigest()}


def _channel_stats(images: MappedImages) -> tuple[list[float], list[float]]:
    """registry.channel_stats where its float64 sample is small enough; otherwise the same sample's exact integer
    sums, chunk by chunk (equal to within float64 rounding)."""
    step = max(1, len(images) // 10000)  # registry.channel_stats' sample
    sample = images.subset(torch.arange(0, len(images), step))
    if len(sample) * math.prod(images.shape[1:]) * 8 <= STATS_BYTES:
        return channel_stats(images)
    squares_of = (np.arange(256) ** 2).astype(np.uint16)  # 255 ** 2 < 2 ** 16
    sums, squares = np.zeros(images.shape[1], np.int64), np.zeros(images.shape[1], np.int64)
    rows = max(1, CHUNK_BYTES // (2 * math.prod(images.shape[1:])))
    for start in range(0, len(sample), rows):
        block = sample[start:start + rows].numpy()  # (B, C, H, W) uint8
        sums += block.sum((0, 2, 3), dtype=np.int64)
        squares += squares_of[block].sum((0, 2, 3), dtype=np.int64)
    count = len(sample) * images.shape[2] * images.shape[3]
    sums, squares = [int(v) for v in sums], [int(v) for v in squares]  # exact: Python integers from here
    mean = [s / count / 255.0 for s in sums]
    variances = [max(0, q * count - s * s) / max(1, count * (count - 1)) for s, q in zip(sums, squares)]  # one rounding
    std = [max(1e-3, math.sqrt(v) / 255.0) for v in variances]
    return mean, std


class _Progress:
    """Caching progress on stderr: a live line on a terminal, else one line every 5%."""

    def __init__(self, total: int, what: str, enabled: bool):
        self.total, self.what, self.enabled = total, what, enabled
        self.tty = enabled and sys.stderr.isatty()
        self.started, self.done, self.next_line, self.last_draw = time.perf_counter(), 0, 0.05, 0.0

    def add(self, count: int) -> None:
        self.done += count
        if not self.enabled:
            return
        now, fraction = time.perf_counter(), self.done / max(1, self.total)
        rate = self.done / max(1e-9, now - self.started)
        text = (f"visiontrain: {self.what}: {self.done:,}/{self.total:,} images ({fraction:.0%}, {rate:,.0f}/s, "
                f"{(self.total - self.done) / max(rate, 1e-9):,.0f} s left)")
        if self.tty and (now - self.last_draw >= 0.2 or self.done >= self.total):
            sys.stderr.write(f"\r{text} ")
            sys.stderr.flush()
            self.last_draw = now
        elif not self.tty and (fraction >= self.next_line or self.done >= self.total):
            print(text, file=sys.stderr)
            self.next_line = (math.floor(fraction / 0.05) + 1) * 0.05

    def close(self) -> None:
        if self.tty and self.done:
            sys.stderr.write("\n")
