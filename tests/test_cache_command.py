"""`visiontrain cache`: what visiontrain keeps under VISIONTRAIN_HOME (dataset, size, last use), and `cache clear
[NAME]`, which removes only that; eval and predict read the training's decoded copy instead of writing a second."""
from __future__ import annotations

import os
import time

from conftest import run_cli, run_main
from visiontrain.data import cache

QUICK = ["--model", "lenet", "--epochs", "1", "--batch-size", "64", "--threads", "1", "--progress", "none",
         "--no-report"]


def _decoded() -> list[cache.Entry]:
    return [entry for entry in cache.entries() if entry.kind.startswith("decoded")]


def test_train_eval_and_predict_share_one_cached_copy(tmp_path, capsys, digits_small):
    assert run_main(capsys, "train", "--dataset", digits_small, *QUICK, "--runs-dir", tmp_path, "--name", "r"
                    ).returncode == 0
    [entry] = _decoded()
    assert entry.name == digits_small.name and len(entry.keys) == 1 and len(entry.paths) == 1
    for args in (("eval", tmp_path / "r"), ("eval", tmp_path / "r", "--split", "val"),
                 ("predict", tmp_path / "r", digits_small / "test" / "3")):
        result = run_main(capsys, *args)
        assert result.returncode == 0, result.stderr
    assert [(e.name, e.keys, e.paths) for e in _decoded()] == [(entry.name, entry.keys, entry.paths)]


def test_a_named_dataset_has_one_copy_whatever_the_image_size(tmp_path, capsys, mnist_stand_in):
    for size in ("28", "32"):
        result = run_main(capsys, "train", "--dataset", "mnist", *QUICK, "--image-size", size, "--limit", "100",
                          "--runs-dir", tmp_path, "--name", f"mnist-{size}")
        assert result.returncode == 0, result.stderr
    assert run_main(capsys, "eval", tmp_path / "mnist-32").returncode == 0
    [entry] = _decoded()
    assert entry.name == "mnist" and len(entry.keys) == 1


def test_the_list_shows_dataset_size_and_last_use_and_clear_removes_only_that(tmp_path, capsys, digits_small,
                                                                              isolated_home):
    assert run_main(capsys, "train", "--dataset", digits_small, *QUICK, "--runs-dir", tmp_path).returncode == 0
    [entry] = _decoded()
    os.utime(entry.paths[0], (1e9, 1e9))  # 2001; loading the copy again marks it used now
    assert run_main(capsys, "eval", next(tmp_path.glob("digits-small*-lenet"))).returncode == 0
    [entry] = _decoded()
    assert time.time() - entry.last_used < 600

    # what is not visiontrain's: a file of the user's in the home, a link to a folder elsewhere named like a download,
    # a link named like a decoded copy: listed never, removed never, followed never
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.pt").write_bytes(b"the user's")
    (isolated_home / "notes.txt").write_text("mine")
    (isolated_home / "fashion-mnist").symlink_to(outside, target_is_directory=True)
    (isolated_home / "cache" / f"evil-{'0' * 20}.pt").symlink_to(outside / "keep.pt")

    listing = run_cli("cache")
    assert listing.returncode == 0, listing.stderr
    lines = listing.stdout.splitlines()
    assert lines[0] == f"visiontrain's cache: {isolated_home} (VISIONTRAIN_HOME)"
    assert lines[1].split() == ["dataset", "what", "size", "last", "use"]
    assert lines[2].split()[:3] == [digits_small.name, "decoded", "images"]
    assert lines[2].split()[-2] == time.strftime("%Y-%m-%d") and lines[3].startswith("total ")
    assert len(lines) == 4  # nothing else is listed

    unknown = run_main(capsys, "cache", "clear", "cifar10")
    assert unknown.returncode == 2
    assert unknown.stderr == (f"visiontrain: error: nothing named 'cifar10' is cached in {isolated_home}; what is "
                              f"cached: {digits_small.name} (see `visiontrain cache`)\n")
    cleared = run_main(capsys, "cache", "clear")
    assert cleared.returncode == 0 and f"removed {digits_small.name}: decoded images" in cleared.stdout
    assert not _decoded() and not entry.paths[0].exists()
    assert (outside / "keep.pt").read_bytes() == b"the user's" and (isolated_home / "notes.txt").exists()
    assert (isolated_home / "fashion-mnist").is_symlink()
    assert run_main(capsys, "cache").stdout.splitlines()[1] == "nothing is cached"
