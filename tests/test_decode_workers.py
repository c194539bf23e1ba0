"""Decoding worker processes (data/workers.py): fresh interpreters, never forks of a process that has threads.

A forked decode pool hung a CI run (a child waited on a lock another thread held at the fork); 'spawn' would run a
user's unguarded script a second time. These tests pin what a user would notice: the same pixels as decoding in
one process, a script without a main guard running once, a dead worker named in one sentence, no torch import.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading

import numpy as np
import pytest
from PIL import Image

from conftest import REPO
from visiontrain.data import workers
from visiontrain.data.decode import DecodePolicy
from visiontrain.data.folder import decode_files
from visiontrain.errors import DataError


@pytest.fixture(scope="module")
def pictures(tmp_path_factory):
    """300 small PNG/JPEG files of varied sizes: over POOL_MIN_FILES, so decode_files uses the workers."""
    root = tmp_path_factory.mktemp("pictures")
    rng = np.random.default_rng(0)
    paths = []
    for i in range(300):
        height, width = (int(v) for v in rng.integers(12, 40, 2))
        path = root / f"{i:03d}.{'png' if i % 3 else 'jpg'}"
        Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).save(path)
        paths.append(path)
    (root / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    return paths[:150] + [root / "broken.png"] + paths[150:]


def test_workers_decode_the_same_pixels_in_the_same_order_as_this_process(pictures):
    assert len(pictures) > workers.POOL_MIN_FILES
    stop = threading.Event()  # a thread running while the workers start: what made a forked pool hang
    busy = threading.Thread(target=lambda: [np.ones(10_000).sum() for _ in iter(stop.is_set, True)])
    busy.start()
    try:
        pooled, pooled_errors = decode_files(pictures, DecodePolicy(), 24, workers=3)
    finally:
        stop.set()
        busy.join()
    here, here_errors = decode_files(pictures, DecodePolicy(), 24, workers=1)
    assert pooled_errors == here_errors
    assert [i for i, error in enumerate(pooled_errors) if error] == [150]  # the reason, at the broken file's index
    assert all((a is None and b is None) or np.array_equal(a, b) for a, b in zip(pooled, here))
    assert pooled[0].shape == (3, 24, 24)


def test_a_worker_that_dies_is_reported_in_one_sentence_naming_the_chunk(pictures):
    jobs = [[(str(p), DecodePolicy(), 16)] for p in pictures[:6]]
    with pytest.raises(DataError, match=r"decoding worker process ended unexpectedly \(killed.*000\.jpg"):
        with workers.WorkerPool(1) as pool:
            os.kill(pool.procs[0].pid, signal.SIGKILL)
            list(pool.map(workers.decode_many, jobs))
    assert pool.procs == []  # stopped and reaped


def test_only_the_named_jobs_run_in_a_worker():
    with workers.WorkerPool(1) as pool, pytest.raises(ValueError, match="not a worker job"):
        list(pool.map(print, [1]))


def test_a_script_without_a_main_guard_runs_once_and_its_workers_do_not_import_torch(tmp_path, pictures):
    script = tmp_path / "unguarded.py"  # no `if __name__ == "__main__":`, as many a notebook-turned-script
    script.write_text(
        "import sys\n"
        "from visiontrain.data.folder import decode_files\n"
        "from visiontrain.data.decode import DecodePolicy\n"
        f"paths = {[str(p) for p in pictures]!r}\n"
        "print('script body ran', flush=True)\n"
        "arrays, errors = decode_files(paths, DecodePolicy(), 20, workers=2)\n"
        "print(sum(a is not None for a in arrays), 'decoded')\n")
    env = os.environ | {"PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["script body ran", f"{len(pictures) - 1} decoded"]
    imported = subprocess.run([sys.executable, "-c", "import sys, visiontrain.data.workers; "
                               "print(sorted(m for m in sys.modules if m.split('.')[0] == 'torch'))"],
                              env=env, capture_output=True, text=True, timeout=60)
    assert imported.stdout.strip() == "[]", imported.stderr
