"""Where outputs go: a folder, a name too long, a file where a folder should be: one sentence each, exit 2, before
any work; and a name just under the limit works (the temp file beside it must not be the one that is too long).
Inputs named directly that are not regular files (a device, a FIFO, a dangling or looping link) are never read."""
from __future__ import annotations

import os

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


def test_inputs_that_are_not_regular_files_are_skipped_with_their_reason_never_read(clean_run, tmp_path, capsys):
    os.mkfifo(tmp_path / "pipe.png")
    os.symlink("nowhere.png", tmp_path / "gone.png")
    os.symlink("self.png", tmp_path / "self.png")
    inputs = ["/dev/zero", tmp_path / "pipe.png", tmp_path / "gone.png", tmp_path / "self.png", tmp_path / "no.png"]
    for verb in (["predict", clean_run], ["explain", clean_run, "-o", tmp_path / "cams"]):
        result = main(capsys, *verb[:2], *inputs, *verb[2:])
        refused(result, "no readable image among the inputs")
        reasons = [line.split(": ", 2)[-1] for line in result.stderr.splitlines() if "skipped" in line]
        assert ["device" in reasons[0], "FIFO" in reasons[1], "dangling" in reasons[2], "loop" in reasons[3],
                reasons[4] == "does not exist"] == [True] * 5, reasons
