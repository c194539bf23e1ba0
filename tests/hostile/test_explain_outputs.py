"""explain never writes over an input or a file of the user's: `-o .` beside digit.png, `-o` set to the input folder
or inside it, a foreign file where a figure would go: one sentence each, before any image is decoded, and every file
is left as it was. A figure explain wrote before is replaced (a rerun works)."""
from __future__ import annotations

import shutil

from .verbs import digests, main, refused


def test_explaining_an_image_into_its_own_folder_is_refused_and_the_image_kept(clean_run, clean_root, tmp_path,
                                                                              capsys, monkeypatch):
    shutil.copy(clean_root / "cat" / "img0.png", tmp_path / "digit.png")
    monkeypatch.chdir(tmp_path)
    before = digests(tmp_path)
    refused(main(capsys, "explain", clean_run, "digit.png", "-o", "."), "digit.png", "over the input image")
    assert digests(tmp_path) == before


def test_the_input_folder_or_a_folder_inside_it_is_refused_as_output(clean_run, clean_copy, capsys):
    before = digests(clean_copy)
    refused(main(capsys, "explain", clean_run, clean_copy, "-o", clean_copy), str(clean_copy), "inside the input")
    refused(main(capsys, "explain", clean_run, clean_copy, "-o", clean_copy / "cat" / "cams"), "inside the input")
    assert digests(clean_copy) == before and not (clean_copy / "cat" / "cams").exists()


def test_a_file_of_the_users_is_not_replaced_and_explains_own_figures_are(clean_run, clean_root, tmp_path, capsys):
    out = tmp_path / "out"
    first = main(capsys, "explain", clean_run, clean_root / "cat", "-o", out)
    assert first.returncode == 0 and len(list(out.glob("*.png"))) == 6, first.stderr
    again = main(capsys, "explain", clean_run, clean_root / "cat", "-o", out)  # its own figures: replaced
    assert again.returncode == 0, again.stderr
    (out / "img3.png").write_bytes((clean_root / "dog" / "img0.png").read_bytes())  # now a photo of the user's
    before = digests(out)
    refused(main(capsys, "explain", clean_run, clean_root / "cat", "-o", out), str(out / "img3.png"),
            "not a Grad-CAM figure")
    assert digests(out) == before
