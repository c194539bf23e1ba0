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

torch.set_num_threads(min(2, os.cpu_count() or 1))


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


def run_cli(*args: str, cwd: Path | None = None, env: dict | None = None, timeout: float = 600):
    import subprocess

    full_env = os.environ | {"PYTHONPATH": str(REPO)} | (env or {})
    return subprocess.run([*VISIONTRAIN, *map(str, args)], capture_output=True, text=True, cwd=cwd, env=full_env,
                          timeout=timeout)


def pytest_collection_modifyitems(config, items):
    """Tests marked `gpu` skip cleanly on machines without CUDA (they run through the device tool when lent)."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
