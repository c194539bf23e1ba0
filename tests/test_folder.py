"""Image folders: layouts, class mapping by name, every kind of image file, bad files found before training."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from visiontrain.data import load_dataset
from visiontrain.data.decode import DecodeError, DecodePolicy, decode_image
from visiontrain.errors import DataError


def make_folder(root: Path, classes=("cat", "dog"), per_class=6, size=(20, 16), mode="RGB") -> Path:
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for index, name in enumerate(classes):
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                shape = (size[1], size[0], 3) if mode == "RGB" else (size[1], size[0])
                pixels = rng.integers(0, 256, shape, dtype=np.uint8)
                Image.fromarray(pixels).convert(mode).save(folder / f"{i}.png")
    return root


def test_train_test_layout_and_labels_by_name(tmp_path):
    root = make_folder(tmp_path, classes=("2", "10", "100", "cat"))
    data = load_dataset(str(root), val_fraction=0)
    assert data.classes == ["2", "10", "100", "cat"]  # natural order, not '10' < '100' < '2'
    index = data.test.sources.index(str(root / "test" / "cat" / "0.png"))
    assert data.classes[int(data.test.labels[index])] == "cat"
    assert data.train.images.shape == (24, 3, 16, 16)  # mixed 20x16 -> centre-cropped squares of the short side


def test_single_folder_gets_a_stratified_seeded_validation_split(tmp_path):
    root = tmp_path / "photos"
    for name in ("a", "b"):
        (root / name).mkdir(parents=True)
        for i in range(10):
            Image.new("L", (8, 8), i * 20).save(root / name / f"{i}.png")
    first = load_dataset(str(root), val_fraction=0.2, seed=3)
    second = load_dataset(str(root), val_fraction=0.2, seed=3)
    assert first.test is None and first.val_source == "train"
    assert sorted(first.val.labels.tolist()) == [0, 0, 1, 1]
    assert first.val.sources == second.val.sources
    assert first.in_channels == 1  # all grayscale -> one channel


def test_val_class_missing_in_train_is_an_error_naming_the_folder(tmp_path):
    root = make_folder(tmp_path)
    (root / "test" / "wolf").mkdir()
    Image.new("RGB", (8, 8)).save(root / "test" / "wolf" / "w.png")
    with pytest.raises(DataError, match="wolf"):
        load_dataset(str(root))


def test_hidden_and_checkpoint_folders_are_ignored(tmp_path):
    root = make_folder(tmp_path)
    (root / "train" / ".ipynb_checkpoints").mkdir()
    (root / "train" / "cat" / ".ipynb_checkpoints").mkdir()
    (root / "train" / "cat" / ".ipynb_checkpoints" / "x.png").write_bytes(b"junk")
    (root / "train" / "cat" / ".DS_Store").write_bytes(b"junk")
    data = load_dataset(str(root), val_fraction=0)
    assert data.classes == ["cat", "dog"] and len(data.train) == 12


def test_all_bad_files_are_listed_before_training_and_skip_bad_trains_on_the_rest(tmp_path):
    root = make_folder(tmp_path)
    cat = root / "train" / "cat"
    good = (cat / "0.png").read_bytes()
    (cat / "truncated.png").write_bytes(good[: len(good) // 2])
    (cat / "empty.png").write_bytes(b"")
    (cat / "text.jpg").write_text("this is not an image")
    jpeg = cat / "cut.jpg"
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(jpeg, quality=90)
    jpeg.write_bytes(jpeg.read_bytes()[:600])
    with pytest.raises(DataError) as error:
        load_dataset(str(root))
    message = str(error.value)
    for name in ("truncated.png", "empty.png", "text.jpg", "cut.jpg"):
        assert name in message
    assert "4 unreadable" in message and "--strict" in message
    data = load_dataset(str(root), skip_bad=True, val_fraction=0)
    assert len(data.train) == 12 and len(data.bad_files) == 4


def test_decompression_bomb_is_refused_from_the_header(tmp_path):
    import resource
    import time

    path = tmp_path / "bomb.png"
    Image.new("1", (30000, 30000)).save(path)  # a small file that declares 900 M pixels
    assert path.stat().st_size < 200_000
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    with pytest.raises(DecodeError, match="pixels.*limit"):
        decode_image(path, DecodePolicy())
    assert time.perf_counter() - start < 1.0
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 100_000  # KiB: < 100 MB


def test_sixteen_bit_is_scaled_not_clipped(tmp_path):
    ramp = np.linspace(0, 65535, 256 * 4).astype(np.uint16).reshape(32, 32)
    path = tmp_path / "ramp16.png"
    Image.fromarray(ramp).save(path)
    pixels = decode_image(path, DecodePolicy())
    assert pixels.shape == (1, 32, 32) and pixels.min() == 0 and pixels.max() == 255
    assert len(np.unique(pixels)) == 256


def test_exif_orientation_is_applied(tmp_path):
    pixels = np.zeros((20, 40, 3), dtype=np.uint8)
    pixels[:, :10] = 255  # a white band on the left of a landscape image
    image = Image.fromarray(pixels)
    exif = image.getexif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    path = tmp_path / "phone.jpg"
    image.save(path, exif=exif, quality=95)
    upright = decode_image(path, DecodePolicy())
    raw = decode_image(path, DecodePolicy(exif_transpose=False))
    assert upright.shape == (3, 40, 20) and raw.shape == (3, 20, 40)
    expected = np.rot90(raw, k=-1, axes=(1, 2))
    assert np.abs(upright.astype(int) - expected.astype(int)).mean() < 2


@pytest.mark.parametrize("mode, expected", [
    ("L", [81]), ("LA", [81]),  # grey: 0.299 * 200 + 0.587 * 30 + 0.114 * 30 = 80.8
    ("I;16", [156]),  # 16-bit 40000 -> 8-bit: 40000 / 257 = 155.6
    ("RGB", [200, 30, 30]), ("RGBA", [200, 30, 30]), ("CMYK", [200, 30, 30]),
    ("P", None),  # a palette image is colour: its palette's RGB, as Pillow reads it
])
def test_every_mode_decodes_to_one_or_three_channels(tmp_path, mode, expected):
    image = Image.new("RGB", (12, 12), (200, 30, 30)).convert(mode) if mode != "I;16" else Image.new("I;16", (12, 12), 40000)
    path = tmp_path / ("x.tif" if mode in ("CMYK", "I;16") else "x.png")
    image.save(path)
    pixels = decode_image(path, DecodePolicy())
    assert pixels.dtype == np.uint8 and pixels.shape[1:] == (12, 12)
    if expected is None:
        with Image.open(path) as palette:
            np.testing.assert_array_equal(pixels, np.asarray(palette.convert("RGB")).transpose(2, 0, 1))
    else:
        np.testing.assert_array_equal(pixels, np.broadcast_to(np.array(expected, np.uint8)[:, None, None],
                                                              (len(expected), 12, 12)))


def test_unicode_spaces_and_symlinks(tmp_path):
    root = make_folder(tmp_path / "data set é")
    Image.new("RGB", (16, 16)).save(root / "train" / "cat" / "ünï côde.png")
    (root / "train" / "dog" / "link.png").symlink_to(root / "train" / "dog" / "0.png")
    data = load_dataset(str(root), val_fraction=0)
    assert len(data.train) == 14


def test_data_check_finds_duplicates_across_splits(tmp_path):
    import shutil

    from visiontrain.data.inspect import inspect_dataset

    root = tmp_path / "photos"
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for name in ("a", "b"):
            (root / split / name).mkdir(parents=True)
    for i in range(10):
        coarse = Image.fromarray(rng.integers(30, 230, (8, 9, 3), dtype=np.uint8))
        smooth = coarse.resize((144, 128), Image.Resampling.BICUBIC)  # photo-like gradients, no flat regions
        smooth.save(root / "train" / ("a" if i % 2 else "b") / f"{i}.png")
    for i in range(4):
        shutil.copy(root / "train" / ("a" if i % 2 else "b") / f"{i}.png", root / "test" / ("a" if i % 2 else "b") / f"copy{i}.png")
    Image.open(root / "train" / "a" / "5.png").save(root / "test" / "a" / "reencoded.jpg", quality=90)
    (root / "test" / "a" / "notes.txt").write_text("not an image")
    report = inspect_dataset(str(root))
    cross_exact = [g for g in report["exact_duplicates"] if g["cross_split"]]
    assert len(cross_exact) == 4
    assert any(g["cross_split"] and any("reencoded.jpg" in n for _, n in g["images"]) for g in report["near_duplicates"])
    assert report["splits"]["train"]["per_class"] == {"a": 5, "b": 5}
    assert any("notes.txt" in path for path, _ in report["ignored_files"])


def test_train_lists_and_skips_a_bad_file_by_default_and_strict_stops_before_training(tmp_path, capsys):
    from conftest import run_main

    root = make_folder(tmp_path)
    (root / "train" / "cat" / "broken.png").write_bytes(b"not a png")
    common = ["--dataset", root, "--model", "mlp", "--epochs", "1", "--batch-size", "4", "--runs-dir",
              tmp_path / "runs", "--progress", "none", "--no-report"]
    strict = run_main(capsys, "train", *common, "--strict", "--name", "strict")
    assert strict.returncode == 2 and "broken.png" in strict.stderr and "Traceback" not in strict.stderr
    assert not (tmp_path / "runs" / "strict").exists()
    default = run_main(capsys, "train", *common, "--name", "lenient")
    assert default.returncode == 0, default.stderr
    assert "skipped 1 unreadable file" in default.stderr and "broken.png" in default.stderr
    summary = json.loads((tmp_path / "runs" / "lenient" / "summary.json").read_text())
    assert [Path(p).name for p in summary["dataset"]["skipped_files"]] == ["broken.png"]


def test_an_old_config_yaml_with_skip_bad_still_loads(tmp_path):
    from visiontrain.config import load_yaml

    (tmp_path / "c.yaml").write_text("format_version: 1\nskip_bad: true\nepochs: 2\n")
    assert load_yaml(tmp_path / "c.yaml") == {"strict": False, "epochs": 2}
