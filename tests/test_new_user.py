"""The small things a new user hit first: each one as the user met it."""
from __future__ import annotations

import json
import re
import time

import pytest

import visiontrain
from conftest import run_cli, run_main
from realdata import write_digits_folder


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    return write_digits_folder(tmp_path_factory.mktemp("digits"), 300, 60)


def test_an_overfit_batch_run_reads_as_the_sanity_check_it_is(digits, tmp_path, capsys):
    result = run_main(capsys, "train", "--dataset", digits, "--model", "simple-cnn", "--overfit-batch", "32",
                      "--overfit-steps", "60", "--runs-dir", tmp_path / "runs", "--progress", "none")
    assert result.returncode == 0, result.stderr
    first = result.stdout.splitlines()[0]
    assert "an overfit-batch sanity check, not a model to use" in first and "test accuracy" not in result.stdout
    assert "imbalance" not in result.stderr  # 32 images drawn at random are not the data's class balance
    (run,) = (tmp_path / "runs").iterdir()
    assert run.name == f"{digits.name}-simple-cnn-overfit-check"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["test_acc"] is None and not (run / "eval" / "test").exists()
    assert "overfit-batch sanity check" in (run / "report.html").read_text()


def test_resume_prints_the_commands_own_time_and_the_runs_total(digits, tmp_path):
    first = run_cli("train", "--dataset", digits, "--model", "mlp", "--epochs", "1", "--runs-dir", tmp_path,
                    "--name", "r", "--no-report")
    assert first.returncode == 0, first.stderr
    started = time.perf_counter()
    again = run_cli("train", "--resume", tmp_path / "r", "--epochs", "2")
    took = time.perf_counter() - started
    assert again.returncode == 0, again.stderr
    own, total = map(float, re.search(r"\((\d+) s; (\d+) s in all\)", again.stdout).groups())
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert own <= took + 1 and total == round(summary["wall_seconds"]) and total > own


@pytest.mark.parametrize("flag, value, field, expected", [("--optimizer", "SGD", "optimizer", "sgd"),
                                                          ("--precision", "FP32", "precision", "fp32"),
                                                          ("--schedule", "OneCycle", "schedule", "onecycle")])
def test_choices_are_not_case_sensitive(flag, value, field, expected):
    from visiontrain.cli import _flag_values, build_parser
    from visiontrain.config import build_config

    args = build_parser().parse_args(["train", flag, value])
    assert getattr(build_config(_flag_values(args)), field) == expected


@pytest.mark.parametrize("command", ["summary", "explain-shapes"])
def test_summary_needs_the_input_shape_instead_of_assuming_one(command, capsys):
    result = run_main(capsys, command, "--model", "vgg-cifar")
    assert result.returncode == 2
    assert result.stderr.strip() == ("visiontrain: error: --input: give one image's shape as C x H x W, e.g. --input "
                                     "1x28x28 (MNIST, Fashion-MNIST) or --input 3x32x32 (CIFAR)")


def test_models_lists_whole_descriptions(capsys):
    from visiontrain.models import MODELS

    result = run_main(capsys, "models")
    lines = {line.split()[0]: line for line in result.stdout.splitlines()}
    assert lines["vgg-cifar"].endswith("Dropout(0.5)-Linear(256*4*4,512)-ReLU-Dropout(0.5)-Linear(512,K).")
    for name in MODELS.names():
        doc = " ".join((MODELS.get(name).__doc__ or "").strip().split("\n\n")[0].split())
        assert lines[name].split(None, 1)[1] == doc


def test_the_compare_page_lists_augment_only_when_the_augmentation_differs(digits, tmp_path, capsys):
    runs = [visiontrain.train(dataset=str(digits), model="mlp", epochs=1, augment=augment, lr=lr, progress="none",
                              report=False, runs_dir=str(tmp_path), name=f"{augment.replace('+', '-')}-{lr}")
            for augment, lr in (("auto", 0.002), ("crop+flip", 0.003), ("crop", 0.002))]
    assert runs[0].summary["augmentation"] == runs[1].summary["augmentation"] == ("crop +-2 px (reflect border), "
                                                                                  "horizontal flip")
    markdown = tmp_path / "compare.md"
    result = run_main(capsys, "report", runs[0].path, runs[1].path, "-o", tmp_path / "c.html", "--markdown", markdown)
    assert result.returncode == 0, result.stderr
    rows = [line for line in markdown.read_text().splitlines() if line.startswith("|")]
    assert any(row.startswith("| lr ") for row in rows) and not any(row.startswith("| augment ") for row in rows)
    result = run_main(capsys, "report", runs[0].path, runs[2].path, "-o", tmp_path / "c2.html", "--markdown", markdown)
    rows = [line for line in markdown.read_text().splitlines() if line.startswith("| augment ")]
    assert rows == ["| augment | crop +-2 px (reflect border), horizontal flip | crop +-2 px (reflect border) |"]


def test_the_class_count_legend_never_covers_a_bar():
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from visiontrain.report.data_report import class_counts_figure

    classes = [f"class {i}" for i in range(12)]
    report = {"dataset": "photos", "classes": classes,
              "splits": {split: {"per_class": dict.fromkeys(classes, 500), "imbalance_ratio": 1.0}
                         for split in ("train", "val", "test")}}
    figure = class_counts_figure(report)
    FigureCanvasAgg(figure).draw()
    (legend,), (axis,) = figure.legends, figure.axes
    assert not legend.get_window_extent().overlaps(axis.get_window_extent())
