"""Plots and reports of real (tiny) runs: valid PNGs, a self-contained report.html, a comparison page, diagnosis."""
from __future__ import annotations

import io
import json
import shutil
from types import SimpleNamespace

import pytest
import torch
from PIL import Image

import visiontrain
from helpers import CHROMIUM, Page, browser_verdict, chromium, embedded_images
from visiontrain.errors import RunError
from visiontrain.run import RunDir
from visiontrain.figures import image_grid
from visiontrain.report import compare_runs, diagnose, plot_misclassified, write_report, write_run_plots
from visiontrain.report.plots import plot_confusion

TINY = dict(model="simple-cnn", epochs=3, batch_size=32, optimizer="adam", lr=2e-3, augment="none", threads=1,
            progress="none")


@pytest.fixture(scope="module")
def runs(digits_small, tmp_path_factory):
    """Two 3-epoch runs that differ only in lr, a 1-epoch run without a val split, and the misclassified gallery
    and a batch grid of the first, on 400 real digits (shared by the module)."""
    from visiontrain.data import load_dataset

    root = tmp_path_factory.mktemp("report-runs")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("VISIONTRAIN_HOME", str(root / "home"))  # the autouse isolated_home is per test, this is not
        first = visiontrain.train(dataset=str(digits_small), runs_dir=str(root), name="lr-2e-3", **TINY)
        second = visiontrain.train(dataset=str(digits_small), runs_dir=str(root), name="lr-5e-3", **TINY | {"lr": 5e-3})
        no_val = visiontrain.train(dataset=str(digits_small), runs_dir=str(root), name="no-val",
                                   **TINY | {"epochs": 1, "val_fraction": 0.0})
        test = load_dataset(str(digits_small)).test
        logits = visiontrain.load(first.path).logits(test.images)
        plot_misclassified(first.path, test.images, test.labels, logits, test.classes)
        image_grid(test.images[:16], [test.classes[int(label)] for label in test.labels[:16]],
                   first.path / "plots" / "augmented_batch.png")  # as training would write it (augment="none")
    return SimpleNamespace(first=first.path, second=second.path, no_val=no_val.path, root=root, test_size=len(test),
                           classes=test.classes)


def assert_png(data: bytes, min_side: int = 200) -> None:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(io.BytesIO(data)) as image:
        image.verify()
    with Image.open(io.BytesIO(data)) as image:
        assert image.format == "PNG" and min(image.size) >= min_side and max(image.size) <= 4000
        assert image.convert("L").getextrema()[0] < 128  # something dark was drawn, not a blank canvas


# -- plots ------------------------------------------------------------------------------------------------------
def test_write_run_plots_draws_every_plot_the_files_allow(runs):
    paths = write_run_plots(runs.first)
    assert [p.name for p in paths] == ["curves.png", "confusion_matrix.png", "reliability.png"]
    for path in [*paths, runs.first / "plots" / "misclassified.png"]:
        assert path.parent == runs.first / "plots" and path.stat().st_size > 10_000, path
        assert_png(path.read_bytes())


def test_plots_skip_what_a_run_lacks(runs, tmp_path):
    no_eval = tmp_path / "no-eval"
    shutil.copytree(runs.second, no_eval, ignore=shutil.ignore_patterns("eval", "plots", "checkpoints"))
    assert [p.name for p in write_run_plots(no_eval)] == ["curves.png"]
    assert [p.name for p in write_run_plots(runs.no_val)] == ["curves.png", "confusion_matrix.png", "reliability.png"]
    with pytest.raises(RunError, match="eval/test/metrics.json"):
        plot_confusion(no_eval)


def test_confusion_matrix_stays_sane_for_100_classes(tmp_path):
    generator = torch.Generator().manual_seed(0)
    classes = [f"class_{i:03d}" for i in range(100)]
    matrix = torch.randint(0, 3, (100, 100), generator=generator) + torch.eye(100, dtype=torch.int64) * 40
    run = tmp_path / "hundred"
    (run / "eval" / "test").mkdir(parents=True)
    (run / "config.yaml").write_text("model: fastnet\n")
    (run / "eval" / "test" / "metrics.json").write_text(json.dumps({
        "n": int(matrix.sum()), "accuracy": 0.5, "confusion_matrix": matrix.tolist(),
        "per_class": [{"class": c, "precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 1} for c in classes]}))
    page = Page(write_report(run).read_text())  # draws plots/confusion_matrix.png on the way
    assert_png((run / "plots" / "confusion_matrix.png").read_bytes(), min_side=1000)
    assert sum(int(v) for row in page.tables["confusion-matrix"][1:] for v in row[1:]) == int(matrix.sum())
    assert ("details", {}) in page.tags  # the 100x100 counts table starts folded


def test_image_grid_takes_grey_and_rgb_uint8_and_refuses_floats(tmp_path):
    grey = torch.randint(0, 256, (5, 1, 28, 28), dtype=torch.uint8)
    rgb = torch.randint(0, 256, (3, 3, 32, 32), dtype=torch.uint8)
    for images in (grey, rgb):
        path = image_grid(images, [f"true: Coat\npred: Shirt 0.{i}" for i in range(len(images))],
                          tmp_path / f"grid{images.shape[1]}.png", ncols=4)
        assert_png(path.read_bytes(), min_side=100)
    with pytest.raises(ValueError, match="uint8"):
        image_grid(grey.float(), ["x"] * 5, tmp_path / "bad.png")
    with pytest.raises(ValueError, match="one title per image"):
        image_grid(grey, ["x"], tmp_path / "bad.png")


# -- report.html --------------------------------------------------------------------------------------------
def test_report_is_one_self_contained_file(runs):
    text = write_report(runs.first).read_text()
    page = Page(text)
    images = embedded_images(page)
    assert len(images) == 6  # curves, confusion matrix, reliability, misclassified gallery, its Grad-CAM, batch grid
    assert "A training batch after augmentation" in page.text
    for png in images:
        assert_png(png)
    links = [value for _, attrs in page.tags for name, value in attrs.items() if name in ("src", "href", "srcset")]
    assert all(value.startswith("data:image/png;base64,") for value in links)  # nothing fetched from disk or web
    assert not {tag for tag, _ in page.tags} & {"script", "link", "iframe", "object", "embed"}
    assert "url(" not in text and "@import" not in text


def test_report_tables_match_the_evaluation(runs):
    page = Page(write_report(runs.first).read_text())
    summary = json.loads((runs.first / "summary.json").read_text())
    assert page.column("per-class") == runs.classes
    confusion = page.tables["confusion-matrix"]
    assert confusion[0][1:] == runs.classes and [row[0] for row in confusion[1:]] == runs.classes
    assert sum(int(v) for row in confusion[1:] for v in row[1:]) == runs.test_size == summary["dataset"]["test"]
    assert page.row("summary", "test accuracy") == [f"{summary['test_acc']:.2%}"]
    assert page.row("config", "lr") == ["0.002"]
    assert all(finding in page.text for finding in diagnose(RunDir(runs.first).read_metrics()))


def test_report_leaves_out_what_a_run_lacks(runs, tmp_path):
    page = Page(write_report(runs.no_val).read_text())
    assert "best val accuracy" not in page.column("summary") and page.column("per-class") == runs.classes
    assert all(finding in page.text for finding in diagnose(RunDir(runs.no_val).read_metrics()))
    no_eval = tmp_path / "no-eval"
    shutil.copytree(runs.first, no_eval, ignore=shutil.ignore_patterns("eval", "plots", "checkpoints"))
    page = Page(write_report(no_eval).read_text())
    assert len(embedded_images(page)) == 1  # the curves only
    assert "per-class" not in page.tables and "confusion-matrix" not in page.tables
    assert "visiontrain eval" in page.text  # says how to get the missing sections


def test_a_folder_that_is_not_a_run_is_a_one_sentence_run_error(tmp_path):
    for call in (write_report, write_run_plots, lambda path: compare_runs([path], tmp_path / "c.html")):
        with pytest.raises(RunError, match=str(tmp_path)) as error:
            call(tmp_path)
        assert str(error.value).count(". ") == 0 and "\n" not in str(error.value)


# -- comparison ---------------------------------------------------------------------------------------------
def test_compare_runs_lists_the_differing_fields_and_both_runs(runs, tmp_path):
    out = compare_runs([runs.first, runs.second, runs.no_val], tmp_path / "compare.html", tmp_path / "compare.md")
    page = Page(out.read_text())
    names = ["lr-2e-3", "lr-5e-3", "no-val"]
    assert page.tables["config-diff"][0][1:] == names
    assert page.row("config-diff", "lr") == ["0.002", "0.005", "0.002"]
    assert page.row("config-diff", "val_fraction") == ["0.1", "0.1", "0.0"]
    assert "model" not in page.column("config-diff")  # shared fields are not repeated
    assert page.row("results", "parameters") == ["206,922"] * 3  # simple-cnn on 28x28 grey digits, by hand (test_models)
    assert page.column("per-class-f1") == runs.classes and len(page.tables["per-class-f1"][0]) == 4
    [curves] = embedded_images(page)
    assert_png(curves)
    markdown = (tmp_path / "compare.md").read_text()
    assert "| lr | 0.002 | 0.005 | 0.002 |" in markdown and "(compare_curves.png)" in markdown
    assert_png((tmp_path / "compare_curves.png").read_bytes())


# -- diagnosis ----------------------------------------------------------------------------------------------
def rows(train_loss, val_loss, train_acc, val_acc):
    return [{"epoch": str(i + 1), "train_loss": str(tl), "val_loss": "" if vl is None else str(vl),
             "train_acc": str(ta), "val_acc": "" if va is None else str(va)}
            for i, (tl, vl, ta, va) in enumerate(zip(train_loss, val_loss, train_acc, val_acc))]


def test_diagnose_flags_overfitting_with_its_numbers():
    findings = diagnose(rows([1.0, 0.6, 0.4, 0.3, 0.2], [0.7, 0.5, 0.55, 0.6, 0.7],
                             [0.7, 0.8, 0.9, 0.95, 0.99], [0.75, 0.82, 0.83, 0.82, 0.81]))
    assert [f.split(":")[0] for f in findings] == ["Overfitting", "Overfitting"]
    assert "3 epochs in a row" in findings[0] and "0.5 at epoch 2 -> 0.7 at epoch 5" in findings[0]
    assert "99.00%" in findings[1] and "81.00%" in findings[1] and "18.0 points" in findings[1]


def test_diagnose_flags_a_learning_rate_that_is_too_high():
    [rising] = diagnose(rows([2.0, 1.5, 2.4, 3.1], [None] * 4, [0.3, 0.5, 0.4, 0.3], [None] * 4))
    assert rising.startswith("Learning rate too high") and "1.5 (epoch 2) to 2.4 (epoch 3)" in rising
    [diverged] = diagnose(rows([2.0, float("nan")], [None] * 2, [0.3, 0.1], [None] * 2))
    assert diverged.startswith("Learning rate too high") and "nan" in diverged


def test_diagnose_flags_underfitting_and_passes_a_healthy_run():
    low = diagnose(rows([2.2, 2.0, 1.9], [2.1, 2.0, 1.95], [0.3, 0.35, 0.36], [0.31, 0.35, 0.355]))
    assert [f.split(":")[0] for f in low] == ["Underfitting"] and "36.00%" in low[0]
    rising = diagnose(rows([0.9, 0.5, 0.3], [0.8, 0.5, 0.35], [0.7, 0.85, 0.9], [0.72, 0.84, 0.89]))
    assert rising[0].startswith("Underfitting") and "train longer" in rising[0] and "5.0 points" in rising[0]
    [fine] = diagnose(rows([0.9, 0.4, 0.3, 0.28], [0.5, 0.35, 0.3, 0.29], [0.8, 0.9, 0.92, 0.925],
                           [0.85, 0.9, 0.915, 0.918]))
    assert fine.startswith("No problem detected") and "91.80%" in fine
    [no_val] = diagnose(rows([0.5, 0.3], [None] * 2, [0.9, 0.905], [None] * 2))
    assert no_val.startswith("No problem detected") and "no val split" in no_val


# -- rendering ----------------------------------------------------------------------------------------------
@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs /usr/bin/chromium")
def test_report_renders_in_headless_chromium(runs, tmp_path):
    report = write_report(runs.first)
    screenshot = tmp_path / "report.png"
    chromium(f"--screenshot={screenshot}", "--window-size=1280,2000", report.resolve().as_uri(),
             profile=tmp_path / "profile")
    assert screenshot.is_file()
    with Image.open(screenshot) as image:
        grey = image.convert("L")
        dark = sum(grey.histogram()[:200])  # pixels clearly darker than the white page
        assert image.size == (1280, 2000) and dark > 0.01 * grey.width * grey.height


@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs /usr/bin/chromium")
def test_report_and_comparison_have_no_broken_image_in_a_real_browser(runs, tmp_path):
    report = write_report(runs.first)
    verdict = browser_verdict(report, tmp_path)
    assert verdict.startswith("IMAGES OK") and int(verdict.split()[-1]) >= 3, verdict
    compare = compare_runs([runs.first, runs.second], tmp_path / "compare.html")
    verdict = browser_verdict(compare, tmp_path)
    assert verdict.startswith("IMAGES OK") and int(verdict.split()[-1]) >= 1, verdict
