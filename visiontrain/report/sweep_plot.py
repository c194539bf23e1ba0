"""sweep.png: the sweep's accuracy against each swept value, one panel per axis of the grid.

Each run is a dot at its value of the panel's field (the other fields vary among the dots at one value); the line
(numbers) or bar (names) is the best run at each value, which is what a sweep is read for. Numbers spanning more
than a decade, and lr and weight_decay always, are drawn on a log axis (a symmetric-log one when 0 is among them,
e.g. weight_decay 0 and 5e-4); anything else (model names, true/false, presets) is categorical. A run without a
result (diverged, interrupted) is a red x on the floor of the panel, so no grid point silently disappears.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ..figures import figure_png, literal, new_figure

METRICS = (("best_val_acc", "best val accuracy", "tab:blue"), ("test_acc", "test accuracy", "tab:orange"))
LOG_FIELDS = ("lr", "weight_decay")  # swept in factors, never in steps
DECADE = 10.0  # max / min of positive values above which an axis is drawn logarithmic
PANEL_COLUMNS = 3
BAR_WIDTH = 0.38  # of the distance between two categories, per metric

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def is_numeric(values: Sequence[Any]) -> bool:
    """True when every value is a real number (not a bool: true/false is two categories)."""
    return all(_finite(value) for value in values)


def axis_scale(field: str, values: Sequence[Any]) -> str:
    """'log', 'symlog' (log with 0 among the values) or 'linear' for a numeric axis; 'category' otherwise."""
    if not is_numeric(values):
        return "category"
    positive = [float(v) for v in values if v > 0]
    if any(v < 0 for v in values) or not positive:
        return "linear"
    wide = max(positive) / min(positive) > DECADE
    if field in LOG_FIELDS or wide:
        return "log" if len(positive) == len(values) else "symlog"
    return "linear"


def sweep_png(axes: Mapping[str, Sequence[Any]], runs: Sequence[Mapping[str, Any]], title: str = "") -> bytes | None:
    """The PNG, or None for a sweep without axes or runs.

    Args:
        axes: field -> its values in grid order, as the config holds them (numbers as numbers).
        runs: per run {"values": {field: value}, "best_val_acc": float | None, "test_acc": float | None}.
        title: the heading (a user's sweep name: drawn as written).
    """
    if not axes or not runs:
        return None
    return figure_png(sweep_figure(axes, runs, title))


def sweep_figure(axes: Mapping[str, Sequence[Any]], runs: Sequence[Mapping[str, Any]], title: str = "") -> Figure:
    """The matplotlib Figure of sweep_png: one panel (Axes) per field, in the order of `axes`."""
    metrics = [metric for metric in METRICS if any(_finite(run.get(metric[0])) for run in runs)]
    columns = min(PANEL_COLUMNS, len(axes))
    rows = math.ceil(len(axes) / columns)
    figure = new_figure(max(7.5, 4.6 * columns), 3.6 * rows + 0.8)  # room for the legend
    panels = figure.subplots(rows, columns, squeeze=False).ravel()
    for panel, (field, values) in zip(panels, axes.items()):
        _panel(panel, field, list(values), runs, metrics)
    for panel in panels[len(axes):]:
        panel.set_visible(False)
    legend = {}  # label -> handle, over all panels: one legend under the panels, covering no data
    for panel in panels[:len(axes)]:
        legend |= {label: handle for handle, label in zip(*panel.get_legend_handles_labels()) if label not in legend}
    figure.legend(list(legend.values()), list(legend.keys()), loc="outside lower center", ncols=min(3, len(legend)),
                  fontsize=8, frameon=False)
    figure.suptitle(literal(f"{title}: " if title else "") + "accuracy per swept value", fontsize=10)
    return figure


def _panel(panel, field: str, values: list[Any], runs: Sequence[Mapping[str, Any]],  # noqa: ANN001
           metrics: list[tuple[str, str, str]]) -> None:
    from matplotlib.ticker import NullLocator, PercentFormatter

    scale = axis_scale(field, values)
    positions = {_key(v): (float(v) if scale != "category" else float(i)) for i, v in enumerate(values)}
    for number, (name, label, colour) in enumerate(metrics):
        offset = (number - (len(metrics) - 1) / 2) * BAR_WIDTH if scale == "category" else 0.0
        best_x, best_y = [], []
        for value in values:
            scores = [float(run[name]) for run in runs if _key(run["values"].get(field)) == _key(value)
                      and _finite(run.get(name))]
            x = positions[_key(value)] + offset
            if scores:
                panel.scatter([x] * len(scores), scores, s=16, color=colour, alpha=0.45, zorder=3,
                              label=f"{label} (each run)")
                best_x.append(x)
                best_y.append(max(scores))
        if scale == "category":
            panel.bar(best_x, best_y, BAR_WIDTH, color=colour, alpha=0.35, label=f"{label} (best run)", zorder=2)
        elif best_x:
            panel.plot(best_x, best_y, marker="o", color=colour, label=f"{label} (best run)", zorder=4)
    failed = [positions[_key(run["values"].get(field))] for run in runs
              if _key(run["values"].get(field)) in positions and not any(_finite(run.get(m[0])) for m in metrics)]
    if failed:
        panel.scatter(failed, [0.0] * len(failed), marker="x", s=40, color="tab:red", label="no result (diverged)",
                      zorder=5)
    if scale in ("log", "symlog"):
        positive = [float(v) for v in values if v > 0]
        panel.set_xscale(scale, **({"linthresh": min(positive)} if scale == "symlog" else {}))
    panel.set_xticks(list(positions.values()))
    panel.set_xticklabels([literal(_label(v)) for v in values], rotation=30 if _long(values) else 0,
                          ha="right" if _long(values) else "center")
    panel.xaxis.set_minor_locator(NullLocator())  # the swept values are the only ticks worth reading
    panel.set_xlabel(literal(field) + (" (log scale)" if scale in ("log", "symlog") else ""))
    panel.set_ylabel("accuracy")
    panel.yaxis.set_major_formatter(PercentFormatter(1.0))
    panel.grid(alpha=0.3)


def _key(value: Any) -> str:
    """Grid values compared as text: config values of one field can be 0.01 and '0.01' (a YAML file vs flags)."""
    return repr(float(value)) if _finite(value) else str(value)


def _label(value: Any) -> str:
    return f"{value:g}" if _finite(value) else str(value)


def _long(values: Sequence[Any]) -> bool:
    return sum(len(_label(v)) for v in values) > 28
