"""`visiontrain sweep`: a grid of runs, resumable, ending in one comparison page.

Any config field given several values (comma-separated on the command line, a list in a YAML file) is an axis;
the grid is their Cartesian product and every other field is shared. The runs go to
RUNS_DIR/sweep-NAME/<field-value_...>/, next to sweep.yaml (the manifest: the shared fields, the grid, and each
run's status), compare.html, compare.md and sweep.png (accuracy against each swept value, also in compare.html).

Every grid point's config is validated before the first run trains, so a typo in the last value costs nothing.
Running the same command again skips the finished runs (summary.json), resumes an interrupted one from its
newest checkpoint, and skips runs whose loss diverged (a result of their settings, not an accident; the same
settings would diverge again). A different grid under the same name is refused rather than mixed in.
"""
from __future__ import annotations

import itertools
import json
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from . import fit
from ._io import atomic_write_bytes, atomic_write_text
from .config import FORMAT_VERSION, Config, ConfigError, build_config, check_folder_name
from .engine.loop import NonFiniteLoss
from .errors import TrainingStopped
from .report import compare_runs
from .report.sweep_plot import sweep_png
from .run import RunDir
from .windows import split_windows

MANIFEST = "sweep.yaml"
ONE_VALUE_FIELDS = ("name", "runs_dir")  # the sweep's own name and folder; a run's name is made from its values
# Fields that change how the runs execute, not their results: a rerun may change them and still be the same sweep
# (runs_dir too: it only locates the folder, which may have been moved or named by another relative path).
HOW_NOT_WHAT = ("progress", "threads", "report", "checkpoint_every", "checkpoint_minutes", "eval_batch_size",
                "runs_dir")


@dataclass
class Point:
    name: str  # the run's folder name, made of the varied values
    values: dict[str, Any]  # the varied fields, as given
    config: Config


@dataclass
class Sweep:
    path: Path  # RUNS_DIR/sweep-NAME
    shared: dict[str, Any]
    axes: dict[str, list[Any]]
    points: list[Point]
    rows: list[dict[str, Any]] = field(default_factory=list)  # per run: name, values, status, results

    compare_html = property(lambda self: self.path / "compare.html")
    compare_md = property(lambda self: self.path / "compare.md")
    plot = property(lambda self: self.path / "sweep.png")


def plan(values: dict[str, Any]) -> Sweep:
    """The sweep of `values` (config fields; `name` is the sweep's name), every grid point validated.

    Raises ConfigError (naming the field) for any bad value, before anything is written.
    """
    values = dict(values)
    name = values.pop("name", None)
    shared, axes = {}, {}
    for key, value in values.items():
        items = _values(key, value)
        if len(items) > 1 and key in ONE_VALUE_FIELDS:
            raise ConfigError(f"{key}: a sweep has one {key}; give one value, not {value!r}")
        if len(items) > 1:
            axes[key] = items
        else:
            shared[key] = items[0]
    name = _default_name(shared, axes) if name is None else str(name)
    check_folder_name("name", name)  # the sweep's folder is sweep-NAME
    path = Path(str(shared.get("runs_dir") or Config.runs_dir)).expanduser() / f"sweep-{name}"
    points = []
    for combination in itertools.product(*axes.values()):
        varied = dict(zip(axes, combination))
        run_name = "_".join(f"{key.replace('_', '-')}-{_slug(value, path=key == 'dataset')}"
                            for key, value in varied.items()) or "run"
        config = build_config(shared | varied | {"name": run_name, "runs_dir": str(path)})  # raises, naming the field
        points.append(Point(run_name, varied, config))
    _check_distinct(points)
    return Sweep(path, shared, axes, points)


def _values(key: str, value: Any) -> list[Any]:
    """A field's values: a list, or text split at commas (unless the text is an existing path that has commas)."""
    if isinstance(value, (list, tuple)):
        items = list(value)
    elif key == "window" and isinstance(value, str):  # "40,400" is one window: numbers pair up, presets stand alone
        items = split_windows(value)
    elif key == "logger" and isinstance(value, str):  # "tensorboard,mlflow": one list of loggers for every run
        return [value]
    elif isinstance(value, str) and "," in value and not Path(value).expanduser().exists():
        items = [item.strip() for item in value.split(",")]
    else:
        return [value]
    if not items or any(item == "" for item in items):
        raise ConfigError(f"{key}: {value!r} has an empty value; separate the values with commas, e.g. 0.01,0.001")
    return items


def _slug(value: Any, path: bool = False) -> str:
    text = str(value)
    text = Path(text).name if path and "/" in text else text  # a dataset path: its folder name (timm/x: timm-x)
    return re.sub(r"[^A-Za-z0-9.+]+", "-", text).strip("-.") or "x"


def _default_name(shared: dict[str, Any], axes: dict[str, list[Any]]) -> str:
    """<dataset>-<varied fields>: the same command always finds the same folder."""
    dataset = "datasets" if "dataset" in axes else _slug(shared.get("dataset") or Config.dataset, path=True)
    return "-".join([dataset, *(key.replace("_", "-") for key in axes)])


def _check_distinct(points: list[Point]) -> None:
    """Two grid points that are the same run, or would share a folder, come from a value listed twice."""
    seen: dict[str, Point] = {}
    for point in points:
        key = json.dumps(point.config.to_dict() | {"name": None}, sort_keys=True, default=str)
        for other in (seen.get(key), seen.get(point.name)):
            if other is not None:
                differ = next((k for k in point.values if point.values[k] != other.values[k]), next(iter(point.values)))
                raise ConfigError(f"{differ}: the values {other.values[differ]!r} and {point.values[differ]!r} give "
                                  f"the same run ({point.name}); list each value once")
        seen[key] = seen[point.name] = point


# -- running ------------------------------------------------------------------------------------------------------
def run_sweep(values: dict[str, Any], *, out: Callable[[str], None] = print) -> Sweep:
    """Plan, validate and run the sweep (skipping finished runs), then write compare.html and compare.md."""
    sweep = plan(values)
    manifest = _open_manifest(sweep)
    status = {run["name"]: run.get("status", "pending") for run in manifest["runs"]}
    for index, point in enumerate(sweep.points, 1):
        run, label = RunDir(sweep.path / point.name), f"[{index}/{len(sweep.points)}] {point.name}"
        if run.summary_path.is_file():
            out(f"{label}: finished earlier, skipped")
            status[point.name] = "done"
        elif status[point.name].startswith("diverged") and run.path.is_dir():
            out(f"{label}: skipped, it {status[point.name]}")
        else:
            status[point.name] = _train_point(point, run, label, out)
        for entry in manifest["runs"]:
            entry["status"] = status[entry["name"]]
        _write_manifest(sweep.path, manifest)  # after each run: an interrupted sweep keeps what it learnt
    for point in sweep.points:
        summary = RunDir(sweep.path / point.name).read_summary()
        sweep.rows.append({"run": point.name, "values": point.values, "status": status[point.name],
                           "best_val_acc": summary.get("best_val_acc"), "test_acc": summary.get("test_acc"),
                           "seconds": summary.get("wall_seconds")})
    plot = write_plot(sweep)
    started = [sweep.path / p.name for p in sweep.points if (sweep.path / p.name / "config.yaml").is_file()]
    compare_runs(started, sweep.compare_html, sweep.compare_md,
                 figures=[("Accuracy per swept value", plot)] if plot else ())
    return sweep


def write_plot(sweep: Sweep) -> Path | None:
    """sweep.png (report/sweep_plot.py): accuracy against each axis's values, the values as the config parsed them
    (numbers as numbers, so that lr gets a log axis); None for a grid of one run."""
    runs = [{"values": {key: getattr(point.config, key) for key in sweep.axes}, "best_val_acc": row["best_val_acc"],
             "test_acc": row["test_acc"]} for point, row in zip(sweep.points, sweep.rows)]
    axes = {key: list({repr(run["values"][key]): run["values"][key] for run in runs}.values()) for key in sweep.axes}
    png = sweep_png(axes, runs, title=sweep.path.name)
    if png is None:
        return None
    atomic_write_bytes(sweep.plot, png)
    return sweep.plot


def _train_point(point: Point, run: RunDir, label: str, out: Callable[[str], None]) -> str:
    """Train (or resume) one grid point; its status: 'done' or 'diverged: ...'."""
    try:
        if run.last.is_file() or run.best.is_file():
            out(f"{label}: resuming from its checkpoint")
            fit.resume(run.path, start_time=time.perf_counter())
        else:
            if run.path.exists():  # started but killed before its first checkpoint: nothing in it is worth keeping
                shutil.rmtree(run.path)
            out(f"{label}: training")
            fit.train(point.config, start_time=time.perf_counter())
    except TrainingStopped as error:
        # Fit re-raises a non-finite loss as TrainingStopped `from None`; the NonFiniteLoss stays its __context__.
        cause = error if isinstance(error, NonFiniteLoss) else error.__context__
        if isinstance(cause, NonFiniteLoss):  # a result of this point's settings (e.g. an lr too high): go on
            out(f"{label}: diverged: {cause}")
            return f"diverged: {cause}"
        if error.exit_code >= 128:  # a signal: stop the sweep; the same command continues it
            raise TrainingStopped(f"{error}; or rerun the same sweep command to continue the whole sweep",
                                  error.exit_code) from None
        raise
    return "done"


def _manifest(sweep: Sweep) -> dict[str, Any]:
    return {"format_version": FORMAT_VERSION, "shared": _plain(sweep.shared), "grid": _plain(sweep.axes),
            "runs": [{"name": p.name, "values": _plain(p.values), "status": "pending"} for p in sweep.points]}


def _plain(value: Any) -> Any:
    """YAML-safe (paths given through the Python API become text)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return str(value) if isinstance(value, Path) else value


def _open_manifest(sweep: Sweep) -> dict[str, Any]:
    """The folder's manifest, or a new one; a folder holding another grid is refused, not mixed into."""
    import yaml

    manifest, path = _manifest(sweep), sweep.path / MANIFEST
    if not path.is_file():
        _write_manifest(sweep.path, manifest)
        return manifest
    try:
        saved = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise ConfigError(f"name: {path} is not valid YAML ({error}); repair or remove it") from None
    def what(shared: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in shared.items() if k not in HOW_NOT_WHAT}

    if what(saved.get("shared") or {}) != what(manifest["shared"]) or saved.get("grid") != manifest["grid"]:
        raise ConfigError(f"name: {sweep.path} holds a sweep with other settings (see its {MANIFEST}); rerun that "
                          "command to continue it, or give another --name")
    status = {run["name"]: run.get("status", "pending") for run in saved.get("runs") or []}
    for run in manifest["runs"]:
        run["status"] = status.get(run["name"], "pending")
    return manifest


def _write_manifest(folder: Path, manifest: dict[str, Any]) -> None:
    import yaml

    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_text(folder / MANIFEST, yaml.safe_dump(manifest, sort_keys=False))


def format_table(sweep: Sweep) -> str:
    """A plain-text table: run, the varied values, best val accuracy, test accuracy, seconds."""
    def percent(value: float | None) -> str:
        return "—" if value is None else f"{value:.2%}"

    header = ["run", *sweep.axes, "best val acc", "test acc", "seconds"]
    rows = [[row["run"], *(str(row["values"][k]) for k in sweep.axes), percent(row["best_val_acc"]),
             percent(row["test_acc"]) if row["status"] == "done" else row["status"].split(":")[0],
             "—" if row["seconds"] is None else f"{row['seconds']:.0f}"] for row in sweep.rows]
    widths = [max(len(cell) for cell in column) for column in zip(header, *rows)]

    def line(cells: list[str]) -> str:  # text left-aligned, the three number columns right-aligned
        return "  ".join(cell.ljust(width) if i < len(cells) - 3 else cell.rjust(width)
                         for i, (cell, width) in enumerate(zip(cells, widths)))

    return "\n".join([line(header), line(["-" * w for w in widths]), *map(line, rows)])
