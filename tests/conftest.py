"""Shared fixtures: an isolated VISIONTRAIN_HOME, and slices of real datasets written in the real on-disk formats
(realdata.py: all of them on a machine that ran `make test`, nothing from outside the clone)."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch

import realdata

REPO = Path(__file__).resolve().parents[1]
VISIONTRAIN = [sys.executable, "-m", "visiontrain"]

# Under pytest-xdist (`make test` runs `-n auto`) every worker is one of several processes sharing the cores: each
# uses one torch thread, and so do the processes a test starts (torch reads OMP_NUM_THREADS at import). Many torch
# threads per process on a busy 2-core machine are slower than one (OpenMP threads spin waiting for each other).
# Nothing leaves the machine: pretrained weights by name (models/pretrained.py) would come from the Hugging Face Hub
# (timm) or download.pytorch.org (torchvision). The Hub's address is read when huggingface_hub is imported, so it
# points at a closed local port from here on (a test serving weights sets its own in the processes it starts);
# torchvision's cache, like the Hub's, is a fresh folder per test (isolated_home).
os.environ["HF_ENDPOINT"] = "http://127.0.0.1:9"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"

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
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))  # torchvision's downloaded weights
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))  # timm's (read by the processes a test starts)
    monkeypatch.delenv("VISIONTRAIN_DATASET_MIRROR", raising=False)
    return home


@pytest.fixture(scope="module")
def module_home(tmp_path_factory, request) -> Path:
    """A VISIONTRAIN_HOME for a whole test module (see shared_cache)."""
    return tmp_path_factory.mktemp(f"vt-home-{request.module.__name__}")


@pytest.fixture
def shared_cache(isolated_home, module_home, monkeypatch):
    """One decoded-dataset cache for a test module whose exports each re-read their run's dataset to verify, in place
    of each test's own: `pytestmark = pytest.mark.usefixtures("shared_cache")`."""
    monkeypatch.setenv("VISIONTRAIN_HOME", str(module_home))


@pytest.fixture(scope="session")
def fashion_dir() -> Path:
    """The folder of Fashion-MNIST's IDX files (Debian's copy, else the user's visiontrain cache), found once."""
    try:
        return realdata.fashion_dir()
    except realdata.MissingData as error:
        message = str(error)
    pytest.fail(message, pytrace=False)


@pytest.fixture(scope="session")
def fashion_folder(tmp_path_factory, fashion_dir) -> Path:
    """A slice of Fashion-MNIST (2,000 train, 500 test) as PNG files in root/{train,test}/<class>/."""
    return realdata.write_fashion_folder(tmp_path_factory.mktemp("fashion-png"), 2000, 500)


@pytest.fixture(scope="session")
def digits_small(tmp_path_factory) -> Path:
    """400 train + 100 test handwritten digits (scikit-learn's, 28x28; every digit in both) as PNG files in
    root/{train,test}/<digit>/, for tests that need a real run folder but assert no accuracy: training on it
    takes a fifth of the time fashion_folder takes."""
    return realdata.write_digits_folder(tmp_path_factory.mktemp("digits-small"), 400, 100)


@pytest.fixture(scope="session")
def digits_idx(tmp_path_factory) -> Path:
    """All of scikit-learn's digits (1,297 train + 500 test, 28x28) as the four MNIST IDX files (gzip)."""
    return realdata.write_digits_idx(tmp_path_factory.mktemp("digits-idx"))


@pytest.fixture
def mnist_stand_in(digits_idx, monkeypatch):
    """The named dataset `mnist` in this process, its files replaced by scikit-learn's digits (digits_idx): the
    registry entry keeps everything else (no flips, black padding, its classes). Real MNIST is not in a clone and
    its entry verifies the upstream checksums, which these files cannot pass; the checksum stays as it is."""
    return realdata.install_mnist_stand_in(digits_idx, monkeypatch)


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
# longest are handed out first, so that none of them starts last while the other worker sits idle (a module not
# listed comes after these, in collection order).
# (`--dist loadgroup` with xdist_group marks would be finer, but pytest-xdist 3.8's loadgroup has no effect under
# pytest 9: it renames Item._nodeid, which pytest 9 no longer reads.)
XDIST_LONGEST_FIRST = (  # measured with the data of realdata.py: seconds per module summed over its tests, -n 2
    "tests/test_transfer.py",  # 145
    "tests/test_own_model.py",  # ~140 (300 on a machine busy enough that test_transfer.py took 312)
    "tests/test_reliability.py",  # 136
    "tests/test_fashion_acceptance.py",  # 105
    "tests/test_timm_models.py",  # 94
    "tests/test_distributed_resume.py",  # 88
    "tests/test_cli.py",  # 86
    "tests/test_learning.py",  # 78
    "tests/test_loggers.py",  # ~70 (150 on that busy machine)
    "tests/test_export.py",  # 65
    "tests/test_train.py",  # 58
    "tests/test_distributed.py",  # 48
    "tests/test_eject.py",  # 48
    "tests/test_report.py",  # 41
    "tests/test_memmap_cache.py",  # 32
    "tests/test_fastnet.py",  # 27
    "tests/test_lrfind.py",  # 24
    "tests/test_sweep.py",  # 23
    "tests/test_explain.py",  # 22
    "tests/test_environment.py",  # 18
    "tests/test_inference_path.py",  # 17
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
