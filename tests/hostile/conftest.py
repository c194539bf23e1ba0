"""Fixtures of the hostile-input suite: the messy folder, a tiny clean folder, and a guard against hangs."""
from __future__ import annotations

import shutil
import signal
from pathlib import Path

import pytest

from .builders import class_folder, messy_folder

HANG_SECONDS = 120  # a test that runs verbs in this process fails (TimeoutError) instead of hanging the suite


@pytest.fixture(autouse=True)
def no_hang():
    """A walk into a link loop or a read of a FIFO would block for ever: turn that into a failure."""
    def expire(signum, frame):  # noqa: ANN001
        raise TimeoutError(f"the test ran past {HANG_SECONDS} s: something hangs")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(HANG_SECONDS)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


@pytest.fixture(scope="session")
def messy_root(tmp_path_factory) -> tuple[Path, dict[str, Path]]:
    """The messy folder (builders.messy_folder), written once; tests must not change it (see `pristine`)."""
    root = tmp_path_factory.mktemp("messy") / "photos"
    return root, messy_folder(root)


@pytest.fixture(scope="session")
def clean_root(tmp_path_factory) -> Path:
    """Two classes of 6 small images each, nothing odd."""
    return class_folder(tmp_path_factory.mktemp("clean") / "clean", {"cat": 0, "dog": 120}, per_class=6)


@pytest.fixture
def clean_copy(clean_root, tmp_path) -> Path:
    """A private copy of the clean folder, to add something hostile to."""
    return Path(shutil.copytree(clean_root, tmp_path / "clean"))


@pytest.fixture(scope="session")
def clean_run(clean_root, tmp_path_factory) -> Path:
    """A run trained on the clean folder (simple-cnn, 1 epoch): something to eval, predict, explain and export."""
    import visiontrain

    base = tmp_path_factory.mktemp("clean-run")
    with pytest.MonkeyPatch.context() as patch:  # session fixtures come before the per-test VISIONTRAIN_HOME
        patch.setenv("VISIONTRAIN_HOME", str(base / "home"))
        run = visiontrain.train(dataset=str(clean_root), model="simple-cnn", epochs=1, batch_size=2,
                                runs_dir=str(base / "runs"), name="clean", report=False, progress="none")
    return run.path
