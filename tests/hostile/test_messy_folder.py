"""Every verb on one messy folder (builders.messy_folder): every kind of bad or odd file real folders hold.

Each verb finishes with a result, or refuses in one sentence naming the file; none ends in an internal error, hangs
(each process runs under a 60 s limit), or writes over anything in the folder.
"""
from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from .verbs import QUICK, cli, digests, main

# file name -> what the reason must say, for every entry of the messy folder that cannot be read
UNREADABLE = {"truncated.jpg": "truncated or corrupt", "empty.png": "empty file", "notes.jpg": "not a readable image",
              "bad-crc.png": "not a readable image", "bomb.png": "declares", "vector.png": "not a readable image",
              "gone.png": "dangling", "self.png": "loop", "pipe.png": "FIFO", "zeros.png": "device",
              "caf\\xe9.png": "not valid UTF-8"}
IGNORED = {"__MACOSX": "__MACOSX", ".DS_Store": "hidden", ".hidden.png": "hidden", "Thumbs.db": "not an image",
           "README.txt": "outside any class folder", "loose.png": "outside any class folder"}
CLASSES = ["__init__", "cat", "dog", "ünï côde"]


@pytest.fixture(scope="module")
def messy_run(messy_root, tmp_path_factory):
    """The messy folder trained on from the command line (1 epoch, batch 2), with its report."""
    root, _ = messy_root
    base = tmp_path_factory.mktemp("messy-run")
    env = {"VISIONTRAIN_HOME": str(base / "home")}
    before = digests(root)
    trained = cli("train", "--dataset", root, *QUICK[:-1], "--runs-dir", base / "runs", "--name", "messy", env=env)
    assert trained.returncode == 0, trained.stderr
    assert digests(root) == before
    return base / "runs" / "messy", env, trained


def reasons_in(text: str) -> dict[str, str]:
    """{file name: reason} of the '  PATH: REASON' lines `visiontrain data` and `train` print."""
    found = {}
    for line in text.replace("; /", "\n/").splitlines():
        line = line.strip()
        for name in UNREADABLE:
            if f"/{name}: " in line:
                found[name] = line.split(f"/{name}: ", 1)[1]
    return found


def test_data_reports_every_problem_in_one_pass_exits_1_and_writes_its_page(messy_root, tmp_path):
    root, _ = messy_root
    before = digests(root)
    result = cli("data", root, "--json", tmp_path / "report.json", "-o", tmp_path / "page.html",
                 env={"VISIONTRAIN_HOME": str(tmp_path / "home")})
    assert result.returncode == 1, result.stderr  # problems found: a script can tell
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["classes"] == CLASSES  # __init__ is a class like any other: only __MACOSX is special
    reasons = reasons_in(result.stdout)
    assert set(reasons) == set(UNREADABLE)
    for name, expected in UNREADABLE.items():
        assert expected in reasons[name], (name, reasons[name])
    loops = [problem for problem in report["problems"] if "loop" in problem]
    assert len(loops) == 2 and any("/cat/again" in p for p in loops) and any("/dog/up" in p for p in loops)
    ignored = {Path(path).name: reason for path, reason in report["ignored_files"]}
    for name, expected in IGNORED.items():
        assert expected in ignored[name], (name, ignored.get(name))
    copies = [sorted(Path(n).name for _, n in group["images"]) for group in report["exact_duplicates"]]
    assert ["copy of img0.png", "img0.png"] in copies and ["img0.png", "link.png"] in copies
    assert "problems: " in result.stdout.splitlines()[-2] and "exit status 1" in result.stdout
    page = (tmp_path / "page.html").read_text()
    assert "<script" not in page and 'id="problems"' in page and "caf\\xe9.png" in page
    assert digests(root) == before


def test_train_skips_and_records_what_it_could_not_read(messy_run):
    run, _, trained = messy_run
    reasons = reasons_in(trained.stderr)
    assert len(reasons) == 10 and "and 1 more (all in summary.json)" in trained.stderr  # listed before training
    summary = json.loads((run / "summary.json").read_text())
    dataset = summary["dataset"]
    assert dataset["classes"] == CLASSES and dataset["bad_files"] == len(UNREADABLE)
    assert {Path(p).name for p in dataset["skipped_files"]} == set(UNREADABLE)
    assert set(IGNORED) <= {Path(p).name for p, _ in dataset["ignored_files"]} and dataset["ignored"] >= len(IGNORED)
    assert (run / "report.html").is_file() and (run / "split.csv").is_file()


def test_eval_predict_explain_export_report_on_the_messy_run(messy_root, messy_run, tmp_path, capsys, monkeypatch):
    root, odd = messy_root
    run, env, _ = messy_run
    monkeypatch.setenv("VISIONTRAIN_HOME", env["VISIONTRAIN_HOME"])
    before = digests(root)
    assert main(capsys, "eval", run, "--split", "val").returncode == 0
    evaluated = main(capsys, "eval", run, "--split", "train")
    assert evaluated.returncode == 0, evaluated.stderr
    predictions = (run / "eval" / "train" / "predictions.csv").read_text()
    assert "'=1+2.png" not in predictions and "/=1+2.png" in predictions  # a path that does not start with '='
    predicted = main(capsys, "predict", run, root, "--format", "csv", "-o", tmp_path / "rows.csv")
    assert predicted.returncode == 0, predicted.stderr
    rows = list(csv.DictReader((tmp_path / "rows.csv").open(newline="")))
    assert len(rows) == 38  # the images the scan decoded and the loose one (hidden ones and __MACOSX not)
    assert any(row["path"].endswith("/new\nline.png") for row in rows)
    skipped = {Path(line.split("skipped ", 1)[1].split(": ")[0]).name for line in predicted.stderr.splitlines()
               if "skipped " in line}
    assert set(UNREADABLE) - {"caf\\xe9.png"} <= skipped and "up" in skipped and "again" in skipped
    explained = main(capsys, "explain", run, root / "cat", odd["strip"], "-o", tmp_path / "cams")
    assert explained.returncode == 0, explained.stderr
    figures = {p.relative_to(tmp_path / "cams").as_posix() for p in (tmp_path / "cams").rglob("*.png")}
    assert len(figures) == 13 and "sub/deeper/nested.png" in figures  # cat's readable images; the strip once
    exported = main(capsys, "export", run, "--format", "onnx", "-o", tmp_path / "bundle")
    assert exported.returncode == 0, exported.stderr
    bundled = main(capsys, "predict", tmp_path / "bundle", root / "dog", "--format", "json")
    paths = [row["path"] for row in json.loads(bundled.stdout)]
    assert bundled.returncode == 0 and len(paths) == len(set(paths)) == 16  # dog's own: dog/up leads to the root,
    assert "dog/up: a symbolic link to" in bundled.stderr and "contains" in bundled.stderr  # which holds dog
    ejected = main(capsys, "eject", run, "-o", tmp_path / "plain.py")
    assert ejected.returncode == 0, ejected.stderr  # simple-cnn on a folder: a script, however messy the folder
    assert (tmp_path / "plain.py").is_file()
    reported = main(capsys, "report", run, run, "-o", tmp_path / "compare.html", "--markdown", tmp_path / "c.md")
    assert reported.returncode == 0, reported.stderr
    assert digests(root) == before  # nothing in the folder was written over


def test_sweep_lr_find_and_show_batch_on_the_messy_folder(messy_root, tmp_path, capsys):
    root, _ = messy_root
    swept = main(capsys, "sweep", "--dataset", root, *QUICK, "--lr", "0.01,0.001", "--runs-dir", tmp_path)
    assert swept.returncode == 0, swept.stderr
    assert len(list(tmp_path.glob("sweep-*/*/summary.json"))) == 2
    found = main(capsys, "lr-find", "--dataset", root, "--model", "simple-cnn", "--batch-size", "2", "--steps", "8",
                 "-o", tmp_path / "lr")
    assert found.returncode == 0, found.stderr
    shown = main(capsys, "show-batch", root, "-n", "8", "-o", tmp_path / "batch.png")
    assert shown.returncode == 0 and (tmp_path / "batch.png").is_file(), shown.stderr
