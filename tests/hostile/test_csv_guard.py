"""CSV injection: names that spreadsheets would run as formulas are written as text, and visiontrain reads its own
split files back exactly, whatever the names (a formula, a backslash, spaces at either end, a quote)."""
from __future__ import annotations

import csv
import io

import pytest

from visiontrain._csv import FORMULA_START, csv_text, guard, unguard
from visiontrain.data import load_dataset
from visiontrain.data.splitfile import read_split_file, write_split_file
from visiontrain.errors import DataError

from .builders import class_folder

NASTY = ["=HYPERLINK(\"http://x\",\"y\")", "+1", "-1", "@SUM(A1)", "\tx", "\rx", "'=1", "''+2", "'", "''", "'plain",
         "plain", "", "a=b", "=", "x\\y", " lead", "trail ", "new\nline", "\"quoted\"", "ünï"]
HOSTILE_CLASSES = {"=1+2": 0, "-rf": 40, "@x": 80, "+y": 120, "a\\b": 160, "trail ": 200, " lead": 20,
                   "'=q": 60, "plain": 100}


def test_guard_is_undone_exactly_and_no_guarded_cell_starts_a_formula():
    for text in NASTY:
        assert unguard(guard(text)) == text
        assert not guard(text)[:1] or guard(text)[:1] not in FORMULA_START
    cells = next(csv.reader(io.StringIO(csv_text(NASTY, []), newline="")))
    assert [unguard(cell) for cell in cells] == NASTY  # quoting of commas, quotes and line breaks still applies


def test_a_split_file_of_hostile_names_reads_back_as_the_same_split(tmp_path):
    root = class_folder(tmp_path / "names", HOSTILE_CLASSES, per_class=3)
    for name in ("car\rriage.png", "new\nline.png", "=cmd|' \\C calc'!A0.png"):
        (root / "plain" / name).write_bytes((root / "plain" / "img0.png").read_bytes())
    data = load_dataset(str(root), val_fraction=0.34, verbose=False)
    split_file = tmp_path / "split.csv"
    write_split_file(split_file, root, {"train": data.train, "val": data.val})
    text = split_file.read_text()
    formula = [row for row in list(csv.reader(io.StringIO(text)))[1:] if row[1] == "'=1+2"]  # the class =1+2, guarded
    assert len(formula) == 3 and all(row[0].startswith("'=1+2/img") for row in formula)  # text in a spreadsheet
    assert all(row[0][:1] not in FORMULA_START for row in csv.reader(io.StringIO(text)))
    again = load_dataset(str(root), split_file=split_file, verbose=False)
    assert again.train.sources == data.train.sources and again.val.sources == data.val.sources
    assert {row["class"] for row in read_split_file(split_file)} == set(HOSTILE_CLASSES)


@pytest.mark.parametrize("content, expected", [
    ("path,class,split\n" + "x" * 200_000 + ",cat,train\n", "line 2"),  # over csv's field size limit
    ("path,class,split\ncat/a.png,cat,train\n" + "y" * 200_000 + ",cat,train\n", "line 3"),
    ("pa" + "t" * 200_000 + "h,class,split\n", "line 1"),
])
def test_a_malformed_split_file_is_one_sentence_naming_it(tmp_path, content, expected):
    path = tmp_path / "split.csv"
    path.write_text(content)
    with pytest.raises(DataError) as error:
        read_split_file(path)
    assert str(path) in str(error.value) and expected in str(error.value) and len(str(error.value)) < 400
