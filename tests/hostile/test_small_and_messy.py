"""Small and messy folders (issue 16 part D): `visiontrain data` reports every problem in one pass and exits 1 (0 for a
clean folder), training refuses what it cannot use in one sentence, and the smallest folders train end to end."""
from __future__ import annotations

import json
import os

from .builders import NOT_UTF8, bomb_png, class_folder, tiny_folder
from .verbs import QUICK, main, refused


def problem_folder(root):
    """train/ with an empty class folder and the usual bad files; test/ with a class train lacks and without one
    of train's classes; a duplicate across the splits."""
    class_folder(root / "train", {"cat": 0, "dog": 120, "fox": 60}, per_class=4)
    class_folder(root / "test", {"cat": 0, "dog": 120, "wolf": 200}, per_class=2, seed=1)
    (root / "train" / "empty-class").mkdir()
    (root / "train" / "cat" / "zero.png").write_bytes(b"")
    (root / "train" / "dog" / "bomb.png").write_bytes(bomb_png())
    (root / "train" / "dog" / "text.jpg").write_text("not an image")
    (root / "test" / "cat" / "leak.png").write_bytes((root / "train" / "cat" / "img1.png").read_bytes())
    return root


def test_data_reports_every_problem_in_one_pass_and_exits_1(tmp_path, capsys):
    root = problem_folder(tmp_path / "p")
    result = main(capsys, "data", root, "--json", tmp_path / "r.json", "-o", tmp_path / "page.html")
    assert result.returncode == 1, result.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    problems = "\n".join(report["problems"])
    assert "empty-class" in problems and "hold no images" in problems  # training would stop here first
    assert "wolf" in problems and "the training split" in problems  # a class only test/ has
    assert "test split" in problems and "fox" in problems  # a class test/ lacks
    assert {os.path.basename(p) for p, _ in report["bad_files"]} == {"zero.png", "bomb.png", "text.jpg"}
    assert any(group["cross_split"] for group in report["exact_duplicates"])
    out = result.stdout
    assert "problems: 7 (exit status 1): 3 about the folder, 3 unreadable files, 1 exact duplicate groups" in out
    page = (tmp_path / "page.html").read_text()
    assert all(word in page for word in ("empty-class", "wolf", "fox", "bomb.png"))


def test_training_refuses_the_same_folder_in_one_sentence_before_decoding(tmp_path, capsys):
    root = problem_folder(tmp_path / "p")
    refused(main(capsys, "train", "--dataset", root, *QUICK, "--runs-dir", tmp_path / "runs"), "wolf")
    assert not (tmp_path / "runs").exists()


def test_a_clean_folder_exits_0(clean_root, tmp_path, capsys):
    result = main(capsys, "data", clean_root, "-o", tmp_path / "page.html")
    assert result.returncode == 0 and "problems: none" in result.stdout


def test_images_loose_in_test_and_a_class_folder_named_in_another_encoding(tmp_path, capsys):
    root = tmp_path / "p"
    class_folder(root / "train", {"cat": 0, "dog": 120}, per_class=3)
    class_folder(root / "train", {NOT_UTF8: 60}, per_class=3)
    class_folder(root / "test", {"x": 0}, per_class=2, seed=1)
    for image in (root / "test" / "x").iterdir():
        image.rename(root / "test" / image.name)
    (root / "test" / "x").rmdir()
    result = main(capsys, "data", root, "-o", tmp_path / "page.html", "--json", tmp_path / "r.json")
    problems = json.loads((tmp_path / "r.json").read_text())["problems"]
    assert result.returncode == 1 and len(problems) == 2
    assert "caf\\xe9" in problems[0] and "not valid UTF-8" in problems[0]
    assert "holds 2 images but no class folders" in problems[1]
    refused(main(capsys, "train", "--dataset", root, *QUICK, "--runs-dir", tmp_path / "runs"), "caf\\xe9")
    single = class_folder(tmp_path / "single", {"cat": 0, "dog": 120, NOT_UTF8: 60}, per_class=2)  # no train/
    refused(main(capsys, "train", "--dataset", single, *QUICK, "--runs-dir", tmp_path / "runs"), "caf\\xe9")


def test_two_images_per_class_train_end_to_end(tmp_path, capsys):
    root = tiny_folder(tmp_path / "tiny", per_class=2)
    trained = main(capsys, "train", "--dataset", root, *QUICK, "--runs-dir", tmp_path, "--name", "t")
    assert trained.returncode == 0, trained.stderr
    for verb in (["eval", tmp_path / "t", "--split", "val"], ["predict", tmp_path / "t", root],
                 ["export", tmp_path / "t"], ["explain", tmp_path / "t", root / "a", "-o", tmp_path / "cams"]):
        assert main(capsys, *verb).returncode == 0, verb


def test_two_images_per_class_train_with_the_default_batch_size(tmp_path, capsys):
    """Needs the batch size clamped to the split (the lead's half of issue 16)."""
    root = tiny_folder(tmp_path / "tiny", per_class=2)
    trained = main(capsys, "train", "--dataset", root, "--model", "simple-cnn", "--epochs", "1", "--progress",
                   "none", "--no-report", "--runs-dir", tmp_path, "--name", "t")
    assert trained.returncode == 0, trained.stderr


def test_every_class_with_a_single_image_trains_without_a_validation_split(tmp_path, capsys):
    root = tiny_folder(tmp_path / "single", per_class=1, classes=("a", "b", "c"))
    trained = main(capsys, "train", "--dataset", root, *QUICK[:-1], "--batch-size", "1", "--runs-dir", tmp_path,
                   "--name", "s")
    assert trained.returncode == 0, trained.stderr
    assert "no validation split could be held out" in trained.stderr
    summary = json.loads((tmp_path / "s" / "summary.json").read_text())
    assert summary["dataset"]["val"] == 0 and summary["model_kept"] == "last epoch"
    assert main(capsys, "eval", tmp_path / "s", "--split", "train").returncode == 0
    refused(main(capsys, "eval", tmp_path / "s", "--split", "val"), "no val split")
