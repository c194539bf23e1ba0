"""sweep.png: accuracy against each swept value, one panel per axis; log axes for lr, weight_decay and anything that
spans more than a decade; names as categories; a run without a result is marked, never dropped. Checked on the
matplotlib figure itself (scales, ticks, plotted values), and as the PNG a real sweep writes (tests/test_sweep.py)."""
from __future__ import annotations

import itertools

import pytest

from visiontrain.report.sweep_plot import axis_scale, sweep_figure, sweep_png

MODELS = ["mlp", "simple-cnn", "timm/resnet18"]
LRS = [0.1, 0.01, 0.001]


@pytest.mark.parametrize("field, values, scale", [
    ("lr", [0.01, 0.003], "log"),  # less than a decade, still log: lr is swept in factors
    ("weight_decay", [0.0, 5e-4, 5e-3], "symlog"),  # 0 has no logarithm
    ("batch_size", [32, 64, 128], "linear"),
    ("epochs", [1, 5, 20], "log"),  # spans more than a decade
    ("label_smoothing", [0.0, 0.1], "linear"),
    ("model", MODELS, "category"),
    ("lookahead", [True, False], "category"),  # true/false are two categories, not 1 and 0
    ("window", ["brain", "40,400"], "category"),
])
def test_each_axis_gets_the_scale_its_values_need(field, values, scale):
    assert axis_scale(field, values) == scale


def grid(result=lambda model, lr: 0.5 + MODELS.index(model) / 10 - abs(LRS.index(lr) - 1) / 20):
    """A 3 x 3 grid of runs; (mlp, 0.1) diverged (no results)."""
    runs = []
    for model, lr in itertools.product(MODELS, LRS):
        failed = (model, lr) == ("mlp", 0.1)
        runs.append({"values": {"model": model, "lr": lr}, "best_val_acc": None if failed else result(model, lr),
                     "test_acc": None if failed else result(model, lr) - 0.01})
    return {"model": MODELS, "lr": LRS}, runs


def test_one_panel_per_axis_with_its_values_as_ticks_and_the_best_run_per_value():
    axes, runs = grid()
    figure = sweep_figure(axes, runs, title="sweep-demo")
    panels = [panel for panel in figure.axes if panel.get_visible()]
    assert len(panels) == 2
    model_panel, lr_panel = panels
    assert model_panel.get_xlabel() == "model" and lr_panel.get_xlabel() == "lr (log scale)"
    assert lr_panel.get_xscale() == "log" and model_panel.get_xscale() == "linear"
    assert [t.get_text() for t in model_panel.get_xticklabels()] == MODELS
    assert [t.get_text() for t in lr_panel.get_xticklabels()] == ["0.1", "0.01", "0.001"]
    # lr panel: a line per metric through the best run at each lr (the best model there: timm/resnet18)
    lines = {line.get_label(): line for line in lr_panel.get_lines()}
    best_val = lines["best val accuracy (best run)"]
    assert list(best_val.get_xdata()) == LRS
    assert list(best_val.get_ydata()) == pytest.approx([0.65, 0.7, 0.65])
    # model panel: a bar per model and metric at the best run of that model
    bars = [patch.get_height() for patch in model_panel.patches]
    assert sorted(bars) == pytest.approx([0.49, 0.5, 0.59, 0.6, 0.69, 0.7])
    # the diverged run is a red x at 0 in both panels, not a silent gap
    for panel in panels:
        marks = [c for c in panel.collections if c.get_label() == "no result (diverged)"]
        assert len(marks) == 1 and marks[0].get_offsets().tolist()[0][1] == 0.0
    assert figure.legends and "sweep-demo" in figure.get_suptitle()


def test_a_grid_without_a_test_split_and_a_name_with_dollars_draws():
    axes, runs = grid()
    for run in runs:
        run["test_acc"] = None
    figure = sweep_figure(axes | {"weight_decay": [0.0, 5e-4]},
                          [run | {"values": run["values"] | {"weight_decay": 0.0}} for run in runs], title="$x$ grid")
    labels = {line.get_label() for panel in figure.axes for line in panel.get_lines()}
    assert labels == {"best val accuracy (best run)"}  # no test line where no run has a test accuracy
    assert figure.axes[2].get_xscale() == "symlog"
    png = sweep_png(axes, runs, title="$\\frac$ x")  # drawn as text: matplotlib would fail on this as math
    assert png.startswith(b"\x89PNG") and sweep_png({}, runs) is None
