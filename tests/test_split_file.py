"""Split files: a carved split is written once as split.csv and reused exactly by later runs, resume and eval."""
from __future__ import annotations

import csv
import hashlib
import json
import re
import shutil

from pathlib import Path

import pytest
from PIL import Image

import visiontrain
from conftest import run_main
from realdata import write_digits_folder
from visiontrain.config import RESUME_UNSAFE_FIELDS, ConfigError, build_config, load_yaml, to_yaml
from visiontrain.data import load_dataset
from visiontrain.data.splitfile import read_split_file
from visiontrain.errors import DataError

FAST = dict(model="simple-cnn", epochs=1, batch_size=32, threads=1, progress="none", report=False)


@pytest.fixture(scope="module")
def digits(tmp_path_factory) -> Path:
    """300 train + 100 test real handwritten digits (scikit-learn's, 28x28) as PNGs in train/ and test/: no val/, so
    visiontrain carves one."""
    return write_digits_folder(tmp_path_factory.mktemp("digits"), 300, 100)


@pytest.fixture(scope="module")
def carved_run(digits, tmp_path_factory) -> Path:
    run = visiontrain.train(dataset=str(digits), runs_dir=str(tmp_path_factory.mktemp("runs")), name="carved", **FAST)
    return run.path


def read_rows(path: Path) -> list[dict]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def copy_folder(source: Path, target: Path) -> Path:
    shutil.copytree(source, target)
    return target


def test_a_carved_split_is_written_once_with_paths_classes_splits_and_hashes(digits, carved_run):
    rows = read_rows(carved_run / "split.csv")
    assert list(rows[0]) == ["path", "class", "split", "sha1"]
    data = load_dataset(str(digits), val_fraction=0.1, seed=0)
    assert [r["split"] for r in rows].count("val") == len(data.val) > 0
    assert [r["split"] for r in rows].count("train") == len(data.train)
    assert [r["split"] for r in rows].count("test") == len(data.test) == 100
    for row in rows[:20] + rows[-20:]:
        assert not Path(row["path"]).is_absolute() and row["path"].split("/")[1] == row["class"]  # train/<class>/x.png
        assert row["sha1"] == hashlib.sha1((digits / row["path"]).read_bytes()).hexdigest()
    val_rows = [r["path"] for r in rows if r["split"] == "val"]
    assert val_rows == [str(Path(s).relative_to(digits).as_posix()) for s in data.val.sources]
    summary = json.loads((carved_run / "summary.json").read_text())
    assert summary["dataset"]["val_source"] == "train" and summary["dataset"]["split_file"] is None

    before = (carved_run / "split.csv").stat().st_mtime_ns, (carved_run / "split.csv").read_bytes()
    resumed = visiontrain.train(resume=carved_run, epochs=2)  # a later process of the same run keeps its split
    assert resumed.summary["epochs_completed"] == 2
    assert ((carved_run / "split.csv").stat().st_mtime_ns, (carved_run / "split.csv").read_bytes()) == before


def test_split_file_reuse_gives_identical_val_even_with_another_seed(digits, carved_run, tmp_path):
    split = carved_run / "split.csv"
    carved = load_dataset(str(digits), val_fraction=0.1, seed=0)
    other_seed = load_dataset(str(digits), val_fraction=0.1, seed=1)
    assert other_seed.val.sources != carved.val.sources  # carving depends on the seed ...
    reused = load_dataset(str(digits), val_fraction=0.1, seed=1, split_file=str(split))  # ... the split file does not
    assert reused.val.sources == carved.val.sources and reused.train.sources == carved.train.sources
    assert reused.val.images.equal(carved.val.images) and reused.val.labels.equal(carved.val.labels)
    assert reused.val_source == "split_file" and reused.split_info["unlisted"] == 0

    run = visiontrain.train(dataset=str(digits), seed=1, split_file=str(split), runs_dir=str(tmp_path), name="again",
                            **FAST)
    assert (run.path / "split.csv").read_bytes() == split.read_bytes()  # the run keeps the split it used
    assert run.summary["dataset"]["val"] == len(carved.val) and run.summary["dataset"]["val_source"] == "split_file"
    assert run.summary["dataset"]["split_file"]["sha256"] == hashlib.sha256(split.read_bytes()).hexdigest()
    assert f"split_file: {split}" in (run.path / "config.yaml").read_text()


def test_changed_and_unlisted_files_are_reported_by_name(digits, carved_run, tmp_path, capsys):
    root = copy_folder(digits, tmp_path / "digits")
    rows = read_rows(carved_run / "split.csv")
    changed = next(r["path"] for r in rows if r["split"] == "val")
    image = Image.open(root / changed)
    image.putpixel((0, 0), 255 - image.getpixel((0, 0)))
    image.save(root / changed)
    for i in range(7):  # new photos added after the split: left out, and said so
        shutil.copy(root / rows[i]["path"], root / "train" / rows[i]["class"] / f"new{i}.png")
    data = load_dataset(str(root), split_file=str(carved_run / "split.csv"))
    err = capsys.readouterr().err
    assert changed in err and "changed since the split file" in err
    assert "7 image file(s)" in err and "new0.png" in err and "and 2 more" in err and "left out" in err
    assert data.split_info["changed_files"] == [changed] and data.split_info["unlisted"] == 7
    assert len(data.train) + len(data.val) + len(data.test) == len(rows)  # the new files are not used
    assert not any("new" in Path(s).name for s in data.train.sources)


def test_a_listed_file_that_is_missing_stops_with_exit_2_naming_it(digits, carved_run, tmp_path, capsys):
    root = copy_folder(digits, tmp_path / "digits")
    gone = read_rows(carved_run / "split.csv")[3]["path"]
    (root / gone).unlink()
    result = run_main(capsys, "train", "--dataset", root, "--model", "simple-cnn", "--epochs", "1", "--split-file",
                      carved_run / "split.csv", "--runs-dir", tmp_path / "runs", "--progress", "none")
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    (error,) = [line for line in result.stderr.splitlines() if "error" in line]  # one sentence that names the file
    assert gone in error and str(carved_run / "split.csv") in error
    assert not (tmp_path / "runs").exists()  # stopped before a run folder was made


def test_eval_of_a_run_with_split_csv_uses_exactly_that_split(digits, carved_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(carved_run, run)
    val_paths = [r["path"] for r in read_rows(run / "split.csv") if r["split"] == "val"]
    shutil.copy(digits / val_paths[0], digits / "train" / "0" / "added-later.png")  # changes what carving would pick
    try:
        metrics = visiontrain.evaluate(run, split="val")
        assert load_dataset(str(digits), val_fraction=0.1, seed=0).val.sources != [str(digits / p) for p in val_paths]
    finally:
        (digits / "train" / "0" / "added-later.png").unlink()
    assert metrics["n"] == len(val_paths)
    predicted = [row["image"] for row in read_rows(run / "eval" / "val" / "predictions.csv")]
    assert [Path(p).relative_to(digits).as_posix() for p in predicted] == val_paths
    test = visiontrain.evaluate(run, split="test")
    assert test["n"] == 100


def test_classes_are_matched_by_name_and_gaps_are_reported(tmp_path, capsys):
    root = tmp_path / "photos"
    for name, count in (("cat", 10), ("dog", 10), ("owl", 1)):
        (root / name).mkdir(parents=True)
        for i in range(count):
            Image.new("L", (8, 8), 20 * i + (100 if name == "dog" else 0)).save(root / name / f"{i}.png")
    data = load_dataset(str(root), val_fraction=0.2, seed=0)
    assert "the val split (carved from train" in capsys.readouterr().err and "owl" in data.classes
    split = tmp_path / "split.csv"
    rows = [f"{name}/{i}.png,{name},{'val' if i < 2 else 'train'},\n" for name in ("cat", "dog") for i in range(10)]
    split.write_text("path,class,split,sha1\n" + "".join(rows) + "owl/0.png,owl,train,\n")
    reordered = load_dataset(str(root), split_file=str(split))
    assert [reordered.classes[int(label)] for label in reordered.val.labels] == ["cat", "cat", "dog", "dog"]
    assert "has no images of class(es) owl" in capsys.readouterr().err

    split.write_text("path,class,split,sha1\ncat/0.png,dog,train,\n")
    with pytest.raises(DataError, match=r"cat/0.png is listed as class 'dog' but lies in the class folder 'cat'"):
        load_dataset(str(root), split_file=str(split))
    split.write_text("path,class,split,sha1\ncat/0.png,cat,validation,\n")
    message = f"{split}, line 2: split 'validation' is not one of train, val, test"
    with pytest.raises(DataError, match=re.escape(message)):
        read_split_file(split)
    split.write_text("file,label\ncat/0.png,cat\n")
    with pytest.raises(DataError, match="has no 'path', 'class', 'split' column"):
        read_split_file(split)


def test_split_file_config_field(tmp_path, digits, carved_run):
    with pytest.raises(ConfigError, match=r"^split_file: the file .*nothing.csv' does not exist"):
        build_config({"dataset": str(digits), "model": "lenet", "split_file": str(tmp_path / "nothing.csv")})
    with pytest.raises(ConfigError, match="^split_file: 'mnist' is a named dataset"):
        build_config({"dataset": "mnist", "model": "lenet", "split_file": str(carved_run / "split.csv")})
    config = build_config({"dataset": str(digits), "model": "lenet", "split_file": str(carved_run / "split.csv")})
    (tmp_path / "config.yaml").write_text(to_yaml(config))
    assert build_config(load_yaml(tmp_path / "config.yaml"), apply_preset=False) == config
    assert "split_file" in RESUME_UNSAFE_FIELDS
