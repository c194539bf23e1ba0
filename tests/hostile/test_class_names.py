"""Class folders with hostile names, through every verb: markup, Markdown links, matplotlib math, spreadsheet
formulas, a backslash, spaces at either end. Each name is shown as written (text, never markup or code), and a run
that has them trains, resumes, evaluates, explains, exports and reports."""
from __future__ import annotations

import csv
import json
import re

import pytest

from visiontrain._csv import FORMULA_START

from .builders import class_folder
from .verbs import QUICK, main

CLASSES = {"<img src=x onerror=alert(1)>": 0, "$\\frac$ x": 60, "=HYPERLINK(\"http:x\",\"y\")": 120,
           "[x](javascript:alert(1))": 180, "a\\b": 30, "trail ": 90, " lead": 150, "-1": 210}


@pytest.fixture(scope="module")
def hostile_run(tmp_path_factory):
    base = tmp_path_factory.mktemp("hostile-names")
    root = class_folder(base / "data" / "train", CLASSES, per_class=3).parent
    class_folder(root / "test", CLASSES, per_class=2, seed=1)
    return root, base


def cells(path) -> list[str]:
    with open(path, newline="") as handle:
        return [cell for row in csv.reader(handle) for cell in row]


def test_a_run_with_hostile_class_names_trains_resumes_evaluates_explains_and_reports(hostile_run, tmp_path,
                                                                                       capsys):
    root, base = hostile_run
    run = tmp_path / "runs" / "h"
    trained = main(capsys, "train", "--dataset", root, *QUICK[:-1], "--val-fraction", "0.34", "--runs-dir",
                   tmp_path / "runs", "--name", "h")
    assert trained.returncode == 0, trained.stderr
    assert set(json.loads((run / "summary.json").read_text())["dataset"]["classes"]) == set(CLASSES)
    resumed = main(capsys, "train", "--resume", run, "--epochs", "2")  # reads its split.csv back
    assert resumed.returncode == 0, resumed.stderr
    for split in ("val", "train"):
        evaluated = main(capsys, "eval", run, "--split", split)
        assert evaluated.returncode == 0, evaluated.stderr
    page = (run / "report.html").read_text()  # rewritten by eval, with the per-class table and the plots
    assert "<img src=x" not in page and "&lt;img src=x" in page
    for plot in ("confusion_matrix.png", "confusion_matrix_train.png", "gradcam.png"):
        assert (run / "plots" / plot).is_file(), plot  # $...$ drawn as text, not as math
    for name in ("per_class.csv", "predictions.csv", "confusion_matrix.csv"):
        assert all(cell[:1] not in FORMULA_START for cell in cells(run / "eval" / "train" / name))
    assert all(cell[:1] not in FORMULA_START for cell in cells(run / "split.csv"))
    explained = main(capsys, "explain", run, root / "train" / "$\\frac$ x", "-o", tmp_path / "cams")
    assert explained.returncode == 0 and len(list((tmp_path / "cams").glob("*.png"))) == 3, explained.stderr
    predicted = main(capsys, "predict", run, root, "--format", "csv", "-o", tmp_path / "rows.csv")
    assert predicted.returncode == 0 and all(c[:1] not in FORMULA_START for c in cells(tmp_path / "rows.csv"))
    exported = main(capsys, "export", run, "-o", tmp_path / "bundle")
    assert exported.returncode == 0, exported.stderr
    reported = main(capsys, "report", run, run, "-o", tmp_path / "c.html", "--markdown", tmp_path / "c.md")
    assert reported.returncode == 0, reported.stderr
    markdown = (tmp_path / "c.md").read_text()
    assert "<img" not in markdown and "&lt;img src=x onerror=alert(1)&gt;" in markdown  # no HTML when rendered
    assert not re.search(r"(?<!\\)\]\(javascript", markdown) and "\\[x\\]" in markdown  # no link either


def test_data_shows_hostile_names_as_text(hostile_run, tmp_path, capsys):
    root, _ = hostile_run
    result = main(capsys, "data", root, "-o", tmp_path / "page.html", "--json", tmp_path / "r.json")
    assert result.returncode == 0, result.stdout  # a clean folder, however its classes are named
    page = (tmp_path / "page.html").read_text()
    assert "<img src=x" not in page and set(json.loads((tmp_path / "r.json").read_text())["classes"]) == set(CLASSES)
