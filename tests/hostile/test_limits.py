"""Hangs and unbounded memory: a 1 x 100,000 pixel PNG of a few hundred bytes, a file declaring 400 million pixels,
symbolic link loops. `data` and `train` finish within 60 s each, and the strip costs no more memory than its
output size justifies: under 1 GiB at peak for the whole `visiontrain data` process (importing torch alone takes
most of that), and within 200 MiB of the same folder without the strip. Measured in a child process of its own."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from PIL import Image

from conftest import REPO

from .builders import bomb_png, class_folder, strip_png
from .verbs import QUICK, checked

GIB = 1 << 30


def peak_rss(*args, home: Path) -> tuple[subprocess.CompletedProcess, int]:
    """(result, peak resident bytes) of `visiontrain ARGS`, measured by a parent process of its own (so no other
    child of the test process counts), under a 60 s limit."""
    probe = ("import resource, subprocess, sys, json; r = subprocess.run(sys.argv[1:], capture_output=True, "
             "text=True); print(json.dumps([r.returncode, r.stdout, r.stderr, "
             "resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss]))")
    env = os.environ | {"PYTHONPATH": str(REPO), "VISIONTRAIN_HOME": str(home)}
    out = subprocess.run([sys.executable, "-c", probe, sys.executable, "-m", "visiontrain", *map(str, args)],
                         capture_output=True, text=True, env=env, timeout=60)
    code, stdout, stderr, kib = json.loads(out.stdout)
    return checked(subprocess.CompletedProcess(args, code, stdout, stderr)), kib * 1024


def test_a_one_by_100000_strip_costs_no_more_memory_than_its_output(tmp_path):
    plain = class_folder(tmp_path / "plain", {"cat": 0, "dog": 120}, per_class=4)
    strips = class_folder(tmp_path / "strips", {"cat": 0, "dog": 120}, per_class=4)
    strip_png(strips / "cat" / "strip.png")
    Image.new("RGB", (100_000, 1), (200, 30, 30)).save(strips / "dog" / "wide.png")  # and a wide one, in colour
    assert (strips / "cat" / "strip.png").stat().st_size < 2000  # a few hundred bytes on disk
    base, base_rss = peak_rss("data", plain, "-o", tmp_path / "a.html", home=tmp_path / "h1")
    data, data_rss = peak_rss("data", strips, "-o", tmp_path / "b.html", home=tmp_path / "h2")
    assert base.returncode == 0 and data.returncode == 0, data.stdout + data.stderr
    assert "images 3x16x16" in data.stdout  # decoded and fitted like the others
    print(f"peak RSS of `visiontrain data`: {data_rss / 2**20:.0f} MiB with the strips, {base_rss / 2**20:.0f} MiB "
          "without")
    assert data_rss < GIB and data_rss - base_rss < 200 << 20
    trained, train_rss = peak_rss("train", "--dataset", strips, *QUICK, "--image-size", "64", "--runs-dir",
                                  tmp_path / "runs", home=tmp_path / "h3")
    assert trained.returncode == 0 and train_rss < GIB + (200 << 20), trained.stderr


def test_symbolic_link_loops_neither_hang_nor_fail(tmp_path):
    root = class_folder(tmp_path / "loops", {"cat": 0, "dog": 120}, per_class=3)
    os.symlink("..", root / "cat" / "up")  # two loops: each followed naively doubles the walk, for ever
    os.symlink(".", root / "dog" / "here")
    os.symlink("loop.png", root / "dog" / "loop.png")  # and a link to itself (ELOOP)
    env = {"VISIONTRAIN_HOME": str(tmp_path / "home")}
    for args in (["data", root, "-o", tmp_path / "p.html"], ["train", "--dataset", root, *QUICK,
                                                              "--runs-dir", tmp_path / "runs"]):
        result = subprocess.run([sys.executable, "-m", "visiontrain", *map(str, args)], capture_output=True,
                                text=True, timeout=60, env=os.environ | {"PYTHONPATH": str(REPO)} | env)
        checked(result)
        assert "cat/up: a symbolic link loop" in result.stdout + result.stderr
    assert result.returncode == 0, result.stderr


def test_a_declared_decompression_bomb_is_listed_by_data_and_skipped_by_train(clean_copy, tmp_path, capsys):
    from .verbs import main

    (clean_copy / "cat" / "bomb.png").write_bytes(bomb_png())
    data = main(capsys, "data", clean_copy, "-o", tmp_path / "p.html")
    assert data.returncode == 1 and "bomb.png: declares" in data.stdout
    trained = main(capsys, "train", "--dataset", clean_copy, *QUICK, "--runs-dir", tmp_path / "runs")
    assert trained.returncode == 0 and "bomb.png: declares" in trained.stderr
    strict = main(capsys, "train", "--dataset", clean_copy, *QUICK, "--strict", "--runs-dir", tmp_path / "runs")
    assert strict.returncode == 2 and "bomb.png" in strict.stderr
