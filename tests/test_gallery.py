"""`visiontrain predict ... --gallery out.png`: the images with their top prediction, wrong ones framed red where
the parent folder names the class, at most GALLERY_MAX of them; refused before any work when it would overwrite an
input, the -o file or a folder; drawn without torch for an ONNX bundle."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO, run_main
from PIL import Image
from realdata import write_digits_folder

import visiontrain
from visiontrain.figures import GRID_CELL, GRID_HEADING, GRID_LINE, GRID_PAD, image_grid
from visiontrain.predict import GALLERY_MAX, WRONG

TINY = {"epochs": 1, "batch_size": 32, "optimizer": "adam", "lr": 2e-3, "augment": "none", "threads": 1,
        "progress": "none", "report": False}
CELL_WIDTH = GRID_CELL + 2 * GRID_PAD


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A lenet run on 300 + 100 real digits, one epoch: wrong often enough to have both kinds of caption."""
    folder = tmp_path_factory.mktemp("gallery")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("VISIONTRAIN_HOME", str(folder / "home"))
        digits = write_digits_folder(folder / "digits", 300, 100)
        run = visiontrain.train(dataset=str(digits), model="lenet", runs_dir=str(folder / "runs"), name="g", **TINY)
    return run.path, digits


def cell_frames(png: Path, count: int, lines: int) -> list[bool]:
    """Per cell of an image_grid with a heading: is its frame (the left edge, mid-height) the WRONG colour?"""
    image = np.asarray(Image.open(png).convert("RGB")).astype(int)
    cell_height = GRID_CELL + GRID_PAD + lines * GRID_LINE + GRID_PAD
    wrong = np.array([int(WRONG[i:i + 2], 16) for i in (1, 3, 5)])
    framed = []
    for index in range(count):
        row, column = divmod(index, 8)
        pixel = image[GRID_HEADING + row * cell_height + cell_height // 2, column * CELL_WIDTH + 2]
        framed.append(bool(np.abs(pixel - wrong).max() < 40))
    return framed


def test_the_gallery_shows_the_first_64_with_the_wrong_ones_framed(trained, tmp_path, capsys):
    run, digits = trained
    gallery = tmp_path / "out" / "gallery.png"
    result = run_main(capsys, "predict", run, digits / "test", "--gallery", gallery, "--format", "json")
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)  # the rows still go to stdout, parseable; the gallery's line to stderr
    assert len(rows) == 100 and f"wrote {gallery}" in result.stderr
    width, height = Image.open(gallery).size
    assert GALLERY_MAX == 64 and width == 8 * CELL_WIDTH  # 64 of 100: 8 rows of 8, two caption lines each
    assert height == GRID_HEADING + 8 * (GRID_CELL + GRID_PAD + 2 * GRID_LINE + GRID_PAD)
    truth = [Path(row["path"]).parent.name for row in rows[:GALLERY_MAX]]
    expected = [row["predicted"] != true for row, true in zip(rows, truth)]
    assert 0 < sum(expected) < GALLERY_MAX  # so that the check below can fail either way
    assert cell_frames(gallery, GALLERY_MAX, lines=2) == expected


def test_without_class_folders_there_is_no_truth_and_no_frame(trained, tmp_path, capsys):
    run, digits = trained
    loose = tmp_path / "loose"
    loose.mkdir()
    for path in sorted((digits / "test").rglob("*.png"))[::10]:
        shutil.copy(path, loose / f"{path.parent.name}-{path.name}")  # the folder names no class
    gallery = tmp_path / "gallery.png"
    result = run_main(capsys, "predict", run, loose, "--gallery", gallery, "-o", tmp_path / "rows.csv")
    assert result.returncode == 0, result.stderr
    assert f"wrote {gallery}" in result.stdout  # with -o, stdout is free for the messages
    width, height = Image.open(gallery).size
    assert (width, height) == (8 * CELL_WIDTH, GRID_HEADING + 2 * (GRID_CELL + GRID_PAD + GRID_LINE + GRID_PAD))
    assert not any(cell_frames(gallery, 10, lines=1))


@pytest.mark.parametrize("where", ["an input file", "a file in an input folder", "a folder", "the -o file"])
def test_a_gallery_that_would_overwrite_something_is_refused_before_any_work(trained, tmp_path, capsys, where):
    run, digits = trained
    inputs = shutil.copytree(digits / "test" / "3", tmp_path / "threes")
    image = sorted(inputs.glob("*.png"))[0]
    before = image.read_bytes()
    target, inputs_given, extra = {
        "an input file": (image, [image], []),
        "a file in an input folder": (image, [inputs], []),
        "a folder": (tmp_path, [inputs], []),
        "the -o file": (tmp_path / "rows.csv", [inputs], ["-o", tmp_path / "rows.csv"]),
    }[where]
    result = run_main(capsys, "predict", run, *inputs_given, "--gallery", target, *extra)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.startswith("visiontrain: error: --gallery ") and result.stderr.count("\n") == 1
    assert image.read_bytes() == before and not (tmp_path / "rows.csv").exists()


def test_an_onnx_bundle_draws_its_gallery_without_torch(trained, tmp_path):
    from visiontrain.export import export_run

    run, digits = trained
    bundle = export_run(run, "onnx", tmp_path / "bundle")
    code = ("import sys; sys.modules['torch'] = None\n"
            "from visiontrain.predict import predict_paths, write_gallery\n"
            "rows, _ = predict_paths(sys.argv[1], sys.argv[2:-1], keep_pixels=64)\n"
            "print(write_gallery(rows, sys.argv[-1]))\n")
    files = [str(p) for p in sorted((digits / "test").rglob("*.png"))[::20]]
    env = os.environ | {"PYTHONPATH": str(REPO)}
    result = subprocess.run([sys.executable, "-c", code, str(bundle), *files, str(tmp_path / "g.png")],
                            capture_output=True, text=True, env=env, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    assert Image.open(tmp_path / "g.png").size == (5 * CELL_WIDTH, GRID_HEADING + GRID_CELL + 2 * GRID_PAD
                                                   + 2 * GRID_LINE)


def test_image_grid_takes_numpy_and_one_colour_per_image(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (3, 1, 28, 28), dtype=np.uint8)
    with pytest.raises(ValueError, match="one per image"):
        image_grid(images, ["a", "b", "c"], tmp_path / "x.png", colors=[None])
    path = image_grid(images, ["a", "b", "c"], tmp_path / "x.png", colors=[None, WRONG, None])
    assert Image.open(path).size == (3 * CELL_WIDTH, GRID_CELL + 2 * GRID_PAD + GRID_LINE)
