"""Decoding in worker processes that are fresh interpreters, never forks of this one.

Why not multiprocessing: a fork of a process that has threads (torch's, a logger's, pytest-xdist's) copies the
locks those threads held, and the child can wait on one forever: a fork-based decode pool hung here while a worker
pickled its result (once in three CI runs). 'spawn' and 'forkserver' start clean but run the user's script again
as __mp_main__, which breaks a script without an `if __name__ == "__main__":` guard. These workers are `python -I
-c` interpreters that import only this module (numpy and Pillow, no torch: 0.4 s to start rather than 2 s), take
this process's sys.path, and run only the jobs named in JOBS, one job at a time each, over their stdin/stdout.

Everything here is torch-free on purpose (data/__init__ loads its names lazily for the same reason).
"""
from __future__ import annotations

import hashlib
import os
import pickle
import queue
import signal
import subprocess
import sys
import threading
import traceback
from collections import Counter
from typing import Any, Callable, Iterable, Iterator

import numpy as np

from ..errors import DataError
from .decode import DecodeError, DecodePolicy, decode_image, header_shape, to_channels

MAX_WORKERS = 64  # decoding processes at most (each holds a few MB; a bigger machine's cores are left to training)
POOL_MIN_FILES = 256  # below this, decoding in this process is quicker than starting interpreters (0.4 s)


def decode_workers() -> int:
    """Decoding processes: one per core this process may run on (its CPU affinity: taskset, a container's cpuset),
    up to MAX_WORKERS. Decoding scales with the cores: each worker decodes its own files, with no shared state."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # macOS and Windows have no affinity call
        cores = os.cpu_count() or 1
    return max(1, min(cores, MAX_WORKERS))


# -- the jobs (they run in a worker, or here when there is one worker) ---------------------------------------------
def probe_shapes(job: tuple[list[str], DecodePolicy]) -> list[tuple[int, int, int]]:
    """The (channels, short side, short side) of each file whose header can be read."""
    paths, policy = job
    return [(channels, short, short) for path in paths if (shape := header_shape(path, policy)) is not None
            for channels, short in [shape]]


def decode_one(job: tuple[str, DecodePolicy, int | None]) -> tuple[np.ndarray | None, str | None]:
    """(pixels, None), or (None, why) for a file that cannot be decoded."""
    path, policy, size = job
    try:
        return decode_image(path, policy, size), None
    except DecodeError as error:
        return None, str(error)


def decode_many(jobs: list[tuple[str, DecodePolicy, int | None]]) -> list[tuple[np.ndarray | None, str | None]]:
    return [decode_one(job) for job in jobs]


def write_chunk(job: tuple) -> tuple[list[tuple[int, str]], Counter, str]:
    """Decode a chunk of files into rows, write them at their offset of the memory-mapped cache file, hash them.

    Returns ([(row in chunk, reason) of unreadable files], Counter of decoded (C, H, W) shapes, SHA-256 of the rows).
    """
    path, start, files, policy, channels, side = job
    rows = np.zeros((len(files), channels, side, side), dtype=np.uint8)  # (rows, C, H, W); unreadable rows stay 0
    errors, shapes = [], Counter()
    for row, file in enumerate(files):
        try:
            pixels = decode_image(file, policy, side)  # (C, side, side) uint8, as data/folder.load_folder decodes
        except DecodeError as error:
            errors.append((row, str(error)))
            continue
        shapes[pixels.shape] += 1
        rows[row] = to_channels(pixels, channels)
    fd = os.open(path, os.O_WRONLY)
    try:
        view, offset = memoryview(rows).cast("B"), start * rows[0].nbytes
        while view:
            written = os.pwrite(fd, view, offset)
            view, offset = view[written:], offset + written
    finally:
        os.close(fd)
    return errors, shapes, hashlib.sha256(rows).hexdigest()


JOBS: dict[str, Callable[[Any], Any]] = {f.__name__: f for f in (probe_shapes, decode_many, write_chunk)}


# -- the pool ----------------------------------------------------------------------------------------------------
_BOOT = ("import pickle, sys; sys.path[:] = pickle.load(sys.stdin.buffer); "
         "from visiontrain.data.workers import serve; serve()")


def serve() -> None:
    """A worker's loop: (job name, job) pickles in on stdin, (ok, result or traceback) pickles out, until EOF."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole process group: the parent stops us
    results = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # a library that prints writes to stderr, not into the results
    jobs = sys.stdin.buffer
    while True:
        try:
            name, job = pickle.load(jobs)
        except EOFError:  # the parent closed our stdin (done), or it died: either way, stop
            return
        try:
            reply = True, JOBS[name](job)
        except Exception:  # noqa: BLE001 - a bug in a job: the parent raises it with this traceback
            reply = False, traceback.format_exc()
        pickle.dump(reply, results, protocol=pickle.HIGHEST_PROTOCOL)
        results.flush()


class WorkerPool:
    """map(job, jobs) over `count` fresh interpreters, results in order; a context manager that stops them."""

    def __init__(self, count: int):
        self.procs: list[subprocess.Popen] = []
        self.replies: queue.Queue = queue.Queue()  # (worker, reply or None when it is gone), from the readers
        self.readers: list[threading.Thread] = []
        self.gone: set[int] = set()
        try:
            for slot in range(count):
                proc = subprocess.Popen([sys.executable, "-I", "-c", _BOOT], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE)
                self.procs.append(proc)
                pickle.dump(list(sys.path), proc.stdin)
                proc.stdin.flush()
                # a thread per worker reads its replies: pipes cannot be select()ed on Windows
                reader = threading.Thread(target=self._read, args=(slot, proc), daemon=True)
                reader.start()
                self.readers.append(reader)
        except BaseException:
            self.close(kill=True)
            raise

    def __enter__(self) -> "WorkerPool":
        return self

    def __exit__(self, kind, *_) -> None:  # noqa: ANN001
        self.close(kill=kind is not None)  # an error or Ctrl-C here: do not wait for the rest to be decoded

    def map(self, function: Callable, jobs: Iterable) -> Iterator:
        """function(job) for each job, in order; `function` is one of JOBS (a worker runs nothing else)."""
        name = function.__name__
        if JOBS.get(name) is not function:
            raise ValueError(f"{name} is not a worker job (data/workers.JOBS)")
        todo, results, done = iter(enumerate(jobs)), {}, 0
        busy: dict[int, tuple[int, Any]] = {}  # worker -> (job index, job): one job at a time each
        for slot in range(len(self.procs)):
            self._give(slot, name, todo, busy)
        while busy:
            slot, reply = self.replies.get()
            if slot not in busy:  # a worker that ended while it had nothing to do: the next job given to it says so
                self.gone.add(slot)
                continue
            index, job = busy.pop(slot)
            results[index] = self._result(slot, reply, job)
            self._give(slot, name, todo, busy)
            while done in results:
                yield results.pop(done)
                done += 1

    def _read(self, slot: int, proc: subprocess.Popen) -> None:
        while True:
            try:
                reply = pickle.load(proc.stdout)
            except Exception:  # noqa: BLE001 - end of file, a torn reply, a closed pipe: the worker is gone
                self.replies.put((slot, None))
                return
            self.replies.put((slot, reply))

    def _give(self, slot: int, name: str, todo: Iterator, busy: dict) -> None:
        item = next(todo, None)
        if item is None:
            return
        if slot in self.gone:
            self._result(slot, None, item[1])  # raises: the worker ended
        busy[slot] = item
        proc = self.procs[slot]
        try:
            pickle.dump((name, item[1]), proc.stdin, protocol=pickle.HIGHEST_PROTOCOL)
            proc.stdin.flush()
        except OSError:
            pass  # it died: its reader reports the end of its output, and _result its exit status

    def _result(self, slot: int, reply: Any, job: Any) -> Any:
        if reply is None:
            code = self.procs[slot].wait()
            why = "killed (perhaps by the out-of-memory killer)" if code in (-9, 137) else f"exit status {code}"
            raise DataError(f"a decoding worker process ended unexpectedly ({why}) while decoding "
                            f"{_first_file(job)}; run again, or free memory if it was killed")
        ok, value = reply
        if not ok:
            raise RuntimeError(f"a decoding worker failed on {_first_file(job)}:\n{value}")
        return value

    def close(self, kill: bool = False) -> None:
        for proc in self.procs:
            if kill:
                proc.kill()
            try:
                proc.stdin.close()
            except OSError:
                pass
        for proc in self.procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:  # busy with a file that never ends: it is not needed any more
                proc.kill()
                proc.wait()
        for reader in self.readers:
            reader.join(timeout=10)  # each reads the end of its worker's output and returns
        for proc in self.procs:
            proc.stdout.close()
        self.procs, self.readers = [], []


def _first_file(job: Any) -> str:
    """The first file a job names (probe_shapes: (paths, policy); decode_many: [(path, ...)]; write_chunk: (path,
    start, files, ...)), for a message."""
    if isinstance(job, tuple) and len(job) > 2 and isinstance(job[2], list) and job[2]:
        return f"the chunk that starts with {job[2][0]}"
    first = job[0]
    if isinstance(first, list) and first:
        first = first[0]
    if isinstance(first, tuple):
        first = first[0]
    return f"the chunk that starts with {first}"
