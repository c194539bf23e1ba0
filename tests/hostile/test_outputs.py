"""Where outputs go: a folder, a name too long, a file where a folder should be: one sentence each, exit 2, before
any work; and a name just under the limit works (the temp file beside it must not be the one that is too long)."""
from __future__ import annotations

from .verbs import main, refused


def test_report_and_eject_refuse_a_folder_as_the_output_file(clean_run, tmp_path, capsys):
    (tmp_path / "out").mkdir()
    refused(main(capsys, "report", clean_run, clean_run, "-o", tmp_path / "out"), tmp_path / "out")
    refused(main(capsys, "report", clean_run, clean_run, "-o", tmp_path / "c.html", "--markdown", tmp_path / "out"),
            tmp_path / "out")
    refused(main(capsys, "eject", clean_run, "-o", tmp_path / "out"), tmp_path / "out")
    refused(main(capsys, "predict", clean_run, clean_run, "-o", tmp_path / "out"), tmp_path / "out")
    assert list((tmp_path / "out").iterdir()) == [] and not (tmp_path / "c.html").exists()


def test_predict_writes_a_name_just_under_the_limit_and_refuses_one_over_it(clean_run, clean_root, tmp_path, capsys):
    longest = tmp_path / ("p" * 251 + ".csv")  # 255 bytes: the limit of most filesystems
    written = main(capsys, "predict", clean_run, clean_root / "cat", "--format", "csv", "-o", longest)
    assert written.returncode == 0 and longest.read_text().startswith("path,predicted"), written.stderr
    too_long = tmp_path / ("p" * 300 + ".csv")
    sentence = refused(main(capsys, "predict", clean_run, clean_root / "cat", "-o", too_long))
    assert "304 bytes long" in sentence and "choose a shorter name" in sentence
    assert [p.name for p in tmp_path.iterdir()] == [longest.name]


def test_an_output_below_a_file_is_one_sentence(clean_run, clean_root, tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("mine")
    sentence = refused(main(capsys, "predict", clean_run, clean_root / "cat", "-o", tmp_path / "notes.txt" / "p.csv"))
    assert "notes.txt is a file, not a folder" in sentence and (tmp_path / "notes.txt").read_text() == "mine"
