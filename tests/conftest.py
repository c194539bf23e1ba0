"""Shared fixtures: an isolated VISIONTRAIN_HOME, and small datasets written in the real on-disk formats."""
from __future__ import annotations

import gzip
import os
import struct
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
MNIST_DIR = SHARED / "mnist"
CIFAR_JPG = SHARED / "cifar10-jpg.tar.gz"
FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
VISIONTRAIN = [sys.executable, "-m", "visiontrain"]

# Under pytest-xdist (`make test` runs `-n auto`) every worker is one of several processes sharing the cores: each
# uses one torch thread, and so do the processes a test starts (torch reads OMP_NUM_THREADS at import). Many torch
# threads per process on a busy 2-core machine are slower than one (OpenMP threads spin waiting for each other).
XDIST_WORKER = os.environ.get("PYTEST_XDIST_WORKER")
if XDIST_WORKER:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    torch.set_num_threads(1)
else:
    torch.set_num_threads(min(2, os.cpu_count() or 1))
WORKER_THREADS = torch.get_num_threads()


@pytest.fixture(autouse=True)
def one_thread_per_worker():
    """Under xdist, a test that trained with `threads=N` (torch.set_num_threads is process-wide) does not leave N
    threads to the worker's later tests."""
    yield
    if XDIST_WORKER and torch.get_num_threads() != WORKER_THREADS:
        torch.set_num_threads(WORKER_THREADS)


@pytest.fixture(autouse=True)
def isolated_home(tmp_path, monkeypatch):
    """Each test gets its own cache, so tests never see (or pollute) the user's or each other's."""
    home = tmp_path / "vt-home"
    monkeypatch.setenv("VISIONTRAIN_HOME", str(home))
    monkeypatch.delenv("VISIONTRAIN_DATASET_MIRROR", raising=False)
    return home


def write_idx(path: Path, array: np.ndarray, compress: bool = True) -> Path:
    """Write an IDX file exactly as the MNIST distribution does (big-endian header, uint8 payload)."""
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + b"".join(struct.pack(">I", d) for d in array.shape)
    data = header + array.astype(np.uint8).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(data) if compress else data)
    return path


def read_real_mnist(count_train: int, count_test: int):
    """The first images of the real MNIST in ../shared/data (as uint8 numpy arrays)."""
    from visiontrain.data.idx import read_idx_pair

    if not MNIST_DIR.is_dir():
        pytest.skip("the real MNIST copy in ../shared/data/mnist is not here")
    train = read_idx_pair(MNIST_DIR / "train-images-idx3-ubyte.gz", MNIST_DIR / "train-labels-idx1-ubyte.gz")
    test = read_idx_pair(MNIST_DIR / "t10k-images-idx3-ubyte.gz", MNIST_DIR / "t10k-labels-idx1-ubyte.gz")
    return (train[0][:count_train, 0].numpy(), train[1][:count_train].numpy(),
            test[0][:count_test, 0].numpy(), test[1][:count_test].numpy())


def write_mnist_folder(root: Path, train: int, test: int) -> Path:
    """The first `train` + `test` real MNIST digits as PNG files in root/{train,test}/<digit>/."""
    from PIL import Image

    train_x, train_y, test_x, test_y = read_real_mnist(train, test)
    for split, images, labels in (("train", train_x, train_y), ("test", test_x, test_y)):
        for index, (image, label) in enumerate(zip(images, labels)):
            folder = root / split / str(int(label))
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(image).save(folder / f"{index:05d}.png")
    return root


@pytest.fixture(scope="session")
def mnist_folder(tmp_path_factory) -> Path:
    """A slice of the real MNIST (2,000 train, 500 test) as PNG files in root/{train,test}/<digit>/."""
    return write_mnist_folder(tmp_path_factory.mktemp("mnist-png"), 2000, 500)


@pytest.fixture(scope="session")
def mnist_small(tmp_path_factory) -> Path:
    """A smaller slice of the real MNIST (400 train, 100 test; every digit in both) for tests that need a real run
    folder but assert no accuracy: training on it takes a fifth of the time mnist_folder takes."""
    return write_mnist_folder(tmp_path_factory.mktemp("mnist-small"), 400, 100)


def run_cli(*args: str, cwd: Path | None = None, env: dict | None = None, timeout: float = 600):
    """`python -m visiontrain ARGS` in a new process, as a user runs it (each costs a fresh torch import: seconds).
    Every command keeps at least one test through here; the other checks of a command use run_main."""
    import subprocess

    full_env = os.environ | {"PYTHONPATH": str(REPO)} | (env or {})
    return subprocess.run([*VISIONTRAIN, *map(str, args)], capture_output=True, text=True, cwd=cwd, env=full_env,
                          timeout=timeout)


def run_main(capsys, *args):
    """`visiontrain ARGS` through `visiontrain.cli.main` in this process, its result shaped like run_cli's (exit code,
    stdout, stderr). The environment and current folder are the test's (use monkeypatch to change them)."""
    import subprocess

    from visiontrain.cli import main

    capsys.readouterr()
    try:
        code = main([str(arg) for arg in args])
    except SystemExit as exit_:  # argparse's own errors
        code = exit_.code
    captured = capsys.readouterr()
    return subprocess.CompletedProcess(list(args), code, captured.out, captured.err)


# Under xdist (`make test`: `-n auto --dist loadfile --no-loadscope-reorder`) each test module runs on one worker, so
# its module-scoped fixtures (shared runs, written folders) are built once, as in a serial run; the modules that take
# longest are handed out first, so that none of them starts last while the other worker sits idle. The order: CPU
# seconds per module, measured serially (a module not listed comes after these, in collection order).
# (`--dist loadgroup` with xdist_group marks would be finer, but pytest-xdist 3.8's loadgroup has no effect under
# pytest 9: it renames Item._nodeid, which pytest 9 no longer reads.)
XDIST_LONGEST_FIRST = (
    "tests/test_reliability.py",
    "tests/test_distributed_resume.py",
    "tests/test_export.py",
    "tests/test_transfer.py",
    "tests/test_learning.py",
    "tests/test_cli.py",
    "tests/test_distributed.py",
    "tests/test_eject.py",
    "tests/test_train.py",
    "tests/test_fashion_acceptance.py",
    "tests/test_timm_models.py",
    "tests/test_memmap_cache.py",
    "tests/test_report.py",
    "tests/test_fastnet.py",
    "tests/test_sweep.py",
    "tests/test_lrfind.py",
    "tests/test_explain.py",
)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    """Tests marked `gpu` skip cleanly on machines without CUDA (they run through the device tool when lent); under
    xdist, the longest modules come first (the order within a module is kept)."""
    if XDIST_WORKER:
        rank = {module: i for i, module in enumerate(XDIST_LONGEST_FIRST)}
        items.sort(key=lambda item: rank.get(item.nodeid.split("::")[0], len(rank)))  # stable
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


def write_digit_folder(root: Path, train: int = 240, test: int = 60) -> Path:
    """scikit-learn's real 8x8 handwritten digits (offline, 1,797 of them), upscaled to 28x28 PNG files in
    root/{train,test}/<digit>/: the first `train` images for training, the next `test` for testing."""
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    for index in range(train + test):
        folder = root / ("train" if index < train else "test") / str(int(digits.target[index]))
        folder.mkdir(parents=True, exist_ok=True)
        image = Image.fromarray(np.uint8(digits.images[index] * (255 / 16))).resize((28, 28), Image.Resampling.BILINEAR)
        image.save(folder / f"{index:04d}.png")
    return root
