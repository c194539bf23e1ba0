"""data_report.html of `visiontrain data`: one self-contained page naming every bad file, the duplicates side by
side (leakage across splits first) and the odd images, with thumbnails from the decoded tensors, capped per section.
"""
from __future__ import annotations

import html
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import run_cli, run_main
from realdata import digits_slice, write_digits_folder
from helpers import CHROMIUM, Page, browser_verdict, embedded_images

from visiontrain.data.decode import DecodePolicy, decode_image, to_channels
from visiontrain.data.inspect import ODD_KINDS, check_dataset, format_report
from visiontrain.report.data_report import MAX_GROUP_MEMBERS, MAX_TILES, write_data_report

UNICODE_NAME = "ünï côde <img src=x> & 'copy'.png"  # spaces, non-ASCII letters and HTML that must stay text


def make_problem_folder(root: Path) -> dict[str, str]:
    """A folder of real handwritten digits (40 train + 20 test, scikit-learn's at 28x28) with one file of each
    problem. Returns {role: path}."""
    write_digits_folder(root, 40, 20)
    train3, test3 = root / "train" / "3", root / "test" / "3"
    test3.mkdir(parents=True, exist_ok=True)
    source = next(p for p in sorted((root / "train").rglob("*.png")) if p.parent.name == "3")
    files = {"unicode copy": test3 / UNICODE_NAME}
    shutil.copy(source, files["unicode copy"])  # an exact duplicate across train/test, under an awkward name
    rng = np.random.default_rng(0)
    photo = Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8))
    files["truncated"] = train3 / "cut.jpg"
    photo.save(files["truncated"], quality=90)
    files["truncated"].write_bytes(files["truncated"].read_bytes()[:600])
    files["text"] = train3 / "notes as image.jpg"
    files["text"].write_text("this is not an image")
    files["empty"] = train3 / "empty.png"
    files["empty"].write_bytes(b"")
    files["16-bit"] = train3 / "ramp16.png"
    Image.fromarray(np.linspace(0, 65535, 28 * 28).astype(np.uint16).reshape(28, 28)).save(files["16-bit"])
    files["alpha"] = train3 / "alpha.png"
    rgba = np.zeros((28, 28, 4), dtype=np.uint8)
    rgba[..., 0], rgba[..., 3] = 200, np.linspace(0, 255, 28, dtype=np.uint8)[None, :]
    Image.fromarray(rgba, "RGBA").save(files["alpha"])
    files["cmyk"] = train3 / "print.tif"
    Image.new("RGB", (28, 28), (30, 120, 200)).convert("CMYK").save(files["cmyk"])
    files["exif"] = train3 / "phone.jpg"
    upright = Image.fromarray(rng.integers(0, 255, (28, 40, 3), dtype=np.uint8))
    exif = upright.getexif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    upright.save(files["exif"], exif=exif, quality=95)
    files["readme"] = test3 / "README.txt"
    files["readme"].write_text("not an image")
    return {role: str(path) for role, path in files.items()}


@pytest.fixture(scope="module")
def checked(tmp_path_factory):
    """The folder above, checked once from the command line (the page in the current folder, and --json)."""
    base = tmp_path_factory.mktemp("data-report")
    root = base / "photo set é"
    files = make_problem_folder(root)
    cwd = base / "cwd"
    cwd.mkdir()
    result = run_cli("data", root, "--json", cwd / "report.json", cwd=cwd, env={"VISIONTRAIN_HOME": str(base / "home")})
    return root, files, cwd, result


def tiles(page_text: str, section_id: str) -> str:
    """The HTML of one <section> of the page."""
    start = page_text.index(f'<section id="{section_id}">')
    return page_text[start:page_text.index("</section>", start)]


def odd_blocks(page_text: str) -> dict[str, str]:
    """The HTML under each <h3 id=...> of the odd-images section, by id."""
    section = tiles(page_text, "odd-images")
    return {block.split('"', 1)[0]: block for block in section.split('<h3 id="')[1:]}


def test_data_check_writes_the_page_to_the_current_folder_and_keeps_the_terminal_table(checked):
    root, files, cwd, result = checked
    assert result.returncode == 1, result.stderr  # 1: it found problems (exit 0 is for a clean folder)
    page_path = cwd / "data_report.html"
    report = json.loads((cwd / "report.json").read_text())  # --json still works beside the page
    # the terminal shows the same table as before, plus one line saying where the page went
    assert result.stdout == format_report(report) + "\nwrote data_report.html\n"
    assert "unreadable files: 3" in result.stdout
    assert len(report["bad_files"]) == 3 and report["sizes"]["modes"]["L"] == 61
    text = page_path.read_text()
    page = Page(text)
    assert not {tag for tag, _ in page.tags} & {"script", "link", "iframe", "object", "embed"}
    links = [value for _, attrs in page.tags for name, value in attrs.items() if name in ("src", "href", "srcset")]
    assert links and all(value.startswith("data:image/png;base64,") for value in links)  # nothing fetched
    assert "url(" not in text and "@import" not in text
    counts = page.tables["class-counts"]
    assert counts[0] == ["class", "train", "test"] and page.row("class-counts", "total") == ["44", "21"]
    assert len(embedded_images(page)) >= 10


def test_every_bad_file_is_named_with_its_reason_on_a_placeholder_tile(checked):
    root, files, cwd, _ = checked
    text = (cwd / "data_report.html").read_text()
    section = tiles(text, "bad-files-section")
    assert "<img" not in section  # nothing to show: placeholder tiles, never a broken image
    figures = [Page(figure).text for figure in section.split("<figure")[1:]]
    assert len(figures) == 3 and all("cannot be shown" in figure for figure in figures)
    for role, reason in (("truncated", "truncated or corrupt"), ("text", "not a readable image"),
                         ("empty", "empty file (0 bytes)")):
        name = str(Path(files[role]).relative_to(root))  # train/3/notes as image.jpg: relative to the dataset
        assert any(name in figure and reason in figure and "train" in figure for figure in figures), role
    assert Page(section).row("ignored-files", "test/3/README.txt") == ["not an image file extension (.txt)"]


def test_the_cross_split_duplicate_is_shown_first_side_by_side(checked):
    root, files, cwd, _ = checked
    text = (cwd / "data_report.html").read_text()
    section = tiles(text, "exact-duplicates")
    group = section.split('<div class="group')[1]  # the first group shown
    assert group.startswith(' leak">')  # leakage before any within-split group
    group_page = Page(group)
    assert "across splits: train ↔ test" in group_page.text
    assert f"test/3/{html.escape(UNICODE_NAME)}</span>" in group  # escaped text: renders as the name, not a tag
    assert 'alt="test test/3/ünï côde &lt;img src=x&gt; &amp; &#x27;copy&#x27;.png"' in group
    assert len(embedded_images(group_page)) == 2
    left, right = embedded_images(group_page)
    assert left == right  # identical decoded pixels, one thumbnail each
    assert "1 group, 1 of them across splits" in Page(section).text


def test_odd_images_are_shown_as_training_decodes_them(tmp_path, monkeypatch):
    import visiontrain.data.workers as workers

    root = tmp_path / "odd"
    files = make_problem_folder(root)
    calls = []
    real = workers.decode_image  # decoded in this process: the folder is under POOL_MIN_FILES
    monkeypatch.setattr(workers, "decode_image", lambda path, *a, **k: calls.append(path) or real(path, *a, **k))
    check = check_dataset(str(root))
    out = write_data_report(check, tmp_path / "out dir" / "é report.html")
    images = sum(1 for p in root.rglob("*") if p.suffix in (".png", ".jpg", ".tif"))
    assert len(calls) == images  # each file decoded once, by the check; the page reuses its tensors
    blocks = odd_blocks(out.read_text())
    assert list(blocks) == ["odd-16-bit", "odd-cmyk", "odd-alpha", "odd-exif", "odd-tiny"]
    for anchor, role in (("odd-16-bit", "16-bit"), ("odd-cmyk", "cmyk"), ("odd-alpha", "alpha"), ("odd-exif", "exif")):
        assert Page(blocks[anchor]).text.count("<figure") == 1 and Path(files[role]).name in Page(blocks[anchor]).text
    assert check.report["kinds"]["tiny (< 32 px)"] == 65  # 61 digits (one copied) and 4 odd files are 28 px
    assert "Tiny images (shorter side under 32 px): 65" in Page(blocks["odd-tiny"]).text
    # the 16-bit file's thumbnail is its decode under the training policy (value / 257), not a clipped copy
    [png] = embedded_images(Page(blocks["odd-16-bit"]))
    expected = to_channels(decode_image(files["16-bit"], DecodePolicy()), 3)  # the folder is RGB: one colour file
    with Image.open(io.BytesIO(png)) as thumb:
        assert np.array_equal(np.asarray(thumb.convert("RGB")).transpose(2, 0, 1), expected)
    assert check.report["kinds"]["16-bit"] == 1 and check.report["kinds"]["cmyk"] == 1


def test_thumbnails_are_capped_per_section_with_a_count_of_the_rest(tmp_path):
    root = write_digits_folder(tmp_path / "many", 40, 10)
    train = sorted((root / "train").rglob("*.png"))
    for index, path in enumerate(train[:30]):  # 30 train images copied into test: 30 leaking groups
        target = root / "test" / path.parent.name / f"leak{index}.png"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, target)
    check = check_dataset(str(root))
    assert len(check.report["exact_duplicates"]) >= 30
    text = write_data_report(check, tmp_path / "page.html").read_text()
    duplicates = tiles(text, "exact-duplicates")
    assert duplicates.count('<div class="group') == MAX_TILES
    assert f"and {len(check.report['exact_duplicates']) - MAX_TILES:,} more groups not shown" in duplicates
    assert len(embedded_images(Page(duplicates))) == 2 * MAX_TILES  # pairs: one thumbnail per copy
    tiny = odd_blocks(text)["odd-tiny"]  # every digit is 28x28: 80 tiny images
    assert tiny.count('<figure class="tile">') == MAX_TILES and "and 56 more files of this kind" in tiny
    bound = 1 + 2 * MAX_TILES * MAX_GROUP_MEMBERS + MAX_TILES * len(ODD_KINDS)  # chart, duplicates, odd images
    assert len(embedded_images(Page(text))) <= bound


def test_a_named_dataset_shows_its_duplicates_as_pixelated_28px_thumbnails(tmp_path, monkeypatch):
    import torch

    from visiontrain.data.registry import DATASETS, DatasetSource
    from visiontrain.data.tensors import ImageTensors

    train_x, train_y, test_x, test_y = (array.copy() for array in digits_slice(50, 20))
    test_x[3] = train_x[7]  # a leaked test digit, as index '#3' of test and '#7' of train

    def read(data_dir, policy):
        return {"train": ImageTensors(torch.from_numpy(train_x)[:, None], torch.from_numpy(train_y).long(), digits),
                "test": ImageTensors(torch.from_numpy(test_x)[:, None], torch.from_numpy(test_y).long(), digits)}, []

    digits = [str(d) for d in range(10)]
    stand_in = tmp_path / "stand-in.bin"
    stand_in.write_bytes(b"x")
    monkeypatch.setitem(DATASETS._items, "tiny-digits",
                        DatasetSource("tiny-digits", "a slice of scikit-learn's digits", read, lambda data_dir: [stand_in], False,
                                      "constant"))
    text = write_data_report(check_dataset("tiny-digits"), tmp_path / "digits.html").read_text()
    section = tiles(text, "exact-duplicates")
    group = Page(section)
    assert "train ↔ test" in group.text and "#7" in group.text and "#3" in group.text
    pictures = embedded_images(group)
    assert len(pictures) == 2
    with Image.open(io.BytesIO(pictures[0])) as thumb:
        assert thumb.size == (28, 28) and thumb.mode == "L"  # the decoded size, scaled up by the browser
    assert 'class="pic px"' in section and "image-rendering: pixelated" in text
    assert 'id="odd-images"' not in text and "70 images decoded to 1x28x28 uint8" in Page(text).text


def test_html_flag_writes_where_asked_and_a_folder_is_one_sentence_exit_2(tmp_path, capsys, monkeypatch):
    root = tmp_path / "two"
    for name in ("cat", "dog"):
        (root / name).mkdir(parents=True)
        for i in range(3):
            Image.new("RGB", (16, 16), (i * 60, 0, 0)).save(root / name / f"{i}.png")
    monkeypatch.chdir(tmp_path)  # in this process: the `data` command's real-process test is the `checked` fixture
    refused = run_main(capsys, "data", root, "-o", tmp_path)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert str(tmp_path) in refused.stderr and "is a folder" in refused.stderr and refused.stderr.count("\n") == 1
    target = tmp_path / "pages" / "ü page.html"
    written = run_main(capsys, "data", root, "--html", target)
    assert written.returncode == 1, written.stderr  # 1: cat and dog hold the same three images (duplicates)
    assert written.stdout.splitlines()[-1] == f"wrote {target}" and target.is_file()
    assert not (tmp_path / "data_report.html").exists()


@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs /usr/bin/chromium")
def test_data_report_renders_in_headless_chromium_without_broken_images(checked, tmp_path):
    _, _, cwd, _ = checked
    verdict = browser_verdict(cwd / "data_report.html", tmp_path)
    assert verdict.startswith("IMAGES OK") and int(verdict.split()[-1]) >= 10, verdict

