"""report.html of one run, a page comparing runs, and a plain-language diagnosis of the training curves.

A report is ONE self-contained file: every image is embedded as a base64 `data:image/png` URI and the CSS is
inline, so it can be mailed, attached to an issue or opened offline, and it needs no JavaScript.
"""
from __future__ import annotations

import base64
import html
import json
import math
import os
from pathlib import Path
from typing import Any, Mapping, Sequence
from urllib.parse import quote

from .._io import atomic_write_bytes, atomic_write_text
from ..config import load_yaml
from ..errors import RunError
from ..run import RunDir
from .plots import comparison_png, eval_splits, number, read_eval, series, write_run_plots

# Thresholds of diagnose(); heuristics, stated in every message so the reader can judge them.
OVERFIT_GAP = 0.05  # train acc - val acc at the last epoch above which the model fits the train set too well
OVERFIT_RISING_EPOCHS = 2  # epochs in a row of rising val loss (while train loss falls) that count as overfitting
DIVERGE_RISE = 0.10  # train loss this much (10%) above its best earlier epoch: the steps overshoot
UNDERFIT_ACC = 0.70  # final train accuracy below this: the model has not even learnt the train set
STILL_RISING = 0.01  # accuracy gain in the last epoch (1 point) that says training had not converged
UNFREEZE_DROP = 0.02  # val accuracy this far (2 points) below the head-only epochs' best when the backbone trains

PLOT_CAPTIONS = {  # plots another module may write into plots/; anything else is shown under its file name
    "augmented_batch.png": "A training batch after augmentation",
    "misclassified.png": "The test images with the highest loss",
}

CSS = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #222; margin: 2em auto;
       max-width: 1200px; padding: 0 1em; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; }
h2 { border-bottom: 1px solid #ddd; padding-bottom: 0.2em; margin-top: 2em; }
table { border-collapse: collapse; margin: 0.6em 0; font-variant-numeric: tabular-nums; }
th, td { border: 1px solid #ddd; padding: 0.25em 0.6em; text-align: left; vertical-align: top; }
th { background: #f4f4f4; } td.num { text-align: right; }
table.matrix td, table.matrix th { padding: 0.15em 0.35em; font-size: 0.85em; text-align: right; }
img { max-width: 100%; height: auto; display: block; margin: 0.6em 0; }
ul.diagnosis li { margin: 0.3em 0; } .muted { color: #777; } code { background: #f4f4f4; padding: 0 0.2em; }
details summary { cursor: pointer; color: #345; }
"""


# -- small HTML helpers ----------------------------------------------------------------------------------------
def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _cell(value: Any, header: bool = False, first: bool = False) -> str:
    tag = "th" if header else "td"
    numeric = not (header or first) and _looks_numeric(str(value))  # the first column names the row: left-aligned
    return f"<{tag}{' class=num' if numeric else ''}>{_e(value)}</{tag}>"


def _looks_numeric(text: str) -> bool:
    return bool(text) and text.replace(",", "").replace(".", "").replace("%", "").replace("-", "").strip().isdigit()


def _table(header: Sequence[Any], rows: Sequence[Sequence[Any]], table_id: str | None = None) -> str:
    head = "<tr>" + "".join(_cell(h, header=True) for h in header) + "</tr>"
    body = "".join("<tr>" + "".join(_cell(v, first=i == 0) for i, v in enumerate(row)) + "</tr>" for row in rows)
    return f"<table{f' id={table_id!r}' if table_id else ''}><thead>{head}</thead><tbody>{body}</tbody></table>"


def _image(png: bytes, alt: str) -> str:
    return f'<img src="data:image/png;base64,{base64.b64encode(png).decode()}" alt="{_e(alt)}">'


def _section(title: str, body: str, section_id: str) -> str:
    return f'<section id="{section_id}"><h2>{_e(title)}</h2>{body}</section>'


def _page(title: str, subtitle: str, sections: Sequence[str], css: str = "") -> str:
    """The whole page; `css` is appended to the shared CSS (a page's own rules, e.g. the data report's tiles)."""
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>{_e(title)}</title>"
            f"<style>{CSS}{css}</style></head>\n<body><h1>{_e(title)}</h1><p class=\"muted\">{_e(subtitle)}</p>\n"
            + "\n".join(s for s in sections if s) + "\n</body></html>\n")


# -- formatting numbers ----------------------------------------------------------------------------------------
def _percent(value: Any) -> str:
    return "—" if value is None else f"{float(value):.2%}"


def _decimal(value: Any, digits: int = 4) -> str:
    return "—" if value is None else f"{float(value):.{digits}f}"


def _count(value: Any) -> str:
    return "—" if value is None else f"{int(value):,}"


def _duration(seconds: Any) -> str:
    if seconds is None:
        return "—"
    seconds = float(seconds)
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest} s" if minutes < 60 else f"{minutes // 60} h {minutes % 60:02d} min"


def _plain(value: Any) -> str:
    """A config or environment value as text; dicts as 'key value, ...'."""
    if isinstance(value, dict):
        return ", ".join(f"{k} {_plain(v)}" for k, v in value.items() if v is not None and v is not False and v != "")
    return "—" if value is None else str(value)


# -- diagnosis -------------------------------------------------------------------------------------------------
def diagnose(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """Plain-language findings from the per-epoch rows of metrics.csv, each with the numbers that triggered it.

    Args:
        rows: one mapping per epoch with keys epoch, train_loss, train_acc, val_loss, val_acc (numbers or the
            strings csv.DictReader gives; '' or None where there is no validation split).

    Returns:
        Sentences starting with "Learning rate too high:", "Unfreezing the backbone hurt:", "Overfitting:",
        "Underfitting:", or a single "No problem detected: ..." line. Thresholds are the module constants
        OVERFIT_GAP, OVERFIT_RISING_EPOCHS, DIVERGE_RISE, UNDERFIT_ACC, STILL_RISING and UNFREEZE_DROP. Train
        accuracy is the running mean over each epoch on augmented images, so it lags behind the val accuracy
        measured at the epoch's end. A fine-tuning run's rows also say which part learnt (stage: probe, head or all;
        older runs: backbone_lr 0 while frozen); the probe's train loss (a head fitted to convergence on unaugmented
        features) is not compared with the epochs' running means.
    """
    if not rows:
        return ["No epochs in metrics.csv yet: nothing to diagnose."]
    epochs = [int(number(r.get("epoch")) or i + 1) for i, r in enumerate(rows)]
    curves = {key: series(rows, key) for key in ("train_loss", "train_acc", "val_loss", "val_acc")}
    probe = [r.get("stage") == "probe" for r in rows]
    trained_loss = [None if p else loss for p, loss in zip(probe, curves["train_loss"])]
    diverged = _lr_too_high(epochs, trained_loss)
    unfreeze = _unfreeze_drop(epochs, rows, curves["val_acc"])
    overfit = _overfitting(epochs, curves | {"train_loss": trained_loss})
    underfit = [] if diverged or unfreeze else _underfitting(epochs, curves, overfitting=bool(overfit))
    return diverged + unfreeze + overfit + underfit or [_no_problem(epochs, curves)]


def _frozen(row: Mapping[str, Any]) -> bool | None:
    """Whether the backbone was frozen in this epoch (True), trained (False), or the run says nothing of it."""
    if row.get("stage"):
        return row["stage"] in ("probe", "head")
    backbone = number(row.get("backbone_lr"))
    return None if backbone is None else backbone == 0


def _unfreeze_drop(epochs: list[int], rows: Sequence[Mapping[str, Any]], val_acc: list[float | None]) -> list[str]:
    """The val accuracy of the epochs after the backbone unfroze, against the best of the head-only ones: a fall
    of more than UNFREEZE_DROP that the rest of the run never made up means the backbone's updates spoiled its
    pretrained features (too high a backbone lr for this data, or a head not yet fitted when they began)."""
    frozen = [_frozen(row) for row in rows]
    start = next((i for i in range(1, len(rows)) if frozen[i - 1] and frozen[i] is False), None)
    if start is None:
        return []
    head = [(val_acc[i], -i) for i in range(start) if frozen[i] and val_acc[i] is not None]  # ties: the first
    after = [(val_acc[i], -i) for i in range(start, len(rows)) if val_acc[i] is not None]
    if not head or not after:
        return []
    (best_head, head_index), best_after = max(head), max(after)
    first, first_index = after[0][0], -after[0][1]
    if first >= best_head - UNFREEZE_DROP or best_after[0] >= best_head - UNFREEZE_DROP / 2:
        return []  # no fall, or one the rest of the run made up
    head_epoch, first_epoch, after_epoch = epochs[-head_index], epochs[first_index], epochs[-best_after[1]]
    stage = "the probe's head" if rows[-head_index].get("stage") == "probe" else "the head alone"
    backbone = number(rows[start].get("backbone_lr"))
    at = f" at lr {backbone:.3g}" if backbone else ""
    return [f"Unfreezing the backbone hurt: the val accuracy fell from {best_head:.2%} (epoch {head_epoch}, "
            f"{stage}) to {first:.2%} (epoch {first_epoch}, the backbone training{at}) and reached only "
            f"{best_after[0]:.2%} after (epoch {after_epoch}); its updates spoiled the pretrained features faster "
            "than the data could retrain them. Lower the backbone's lr (--backbone-lr, a fraction of --lr: try a "
            "third or a tenth), fit the head before it (--finetune probe, or more --head-epochs), or keep the "
            "backbone frozen (--finetune head). The run keeps its best epoch's weights, so nothing is lost."]


def _lr_too_high(epochs: list[int], train_loss: list[float | None]) -> list[str]:
    best: tuple[float, int] | None = None  # (lowest train loss so far, its epoch)
    for epoch, loss in zip(epochs, train_loss):
        if loss is None:
            continue
        if not math.isfinite(loss):
            return [f"Learning rate too high: the train loss became {loss} at epoch {epoch} (training diverged); "
                    "use a tenth of the lr, a warm-up, or gradient clipping."]
        if best is not None and loss > (1 + DIVERGE_RISE) * best[0]:
            return [f"Learning rate too high: the train loss rose from {best[0]:.4g} (epoch {best[1]}) to {loss:.4g} "
                    f"(epoch {epoch}), {loss / best[0] - 1:+.0%} (more than {DIVERGE_RISE:.0%}); try a third or a "
                    "tenth of the lr, or a warm-up."]
        best = (loss, epoch) if best is None or loss < best[0] else best
    return []


def _overfitting(epochs: list[int], curves: dict[str, list[float | None]]) -> list[str]:
    findings = []
    start, length = _longest_rise(curves["val_loss"], curves["train_loss"])
    if length >= OVERFIT_RISING_EPOCHS:
        val, train = curves["val_loss"], curves["train_loss"]
        end = start + length
        findings.append(f"Overfitting: the val loss rose for {length} epochs in a row ({val[start]:.4g} at epoch "
                        f"{epochs[start]} -> {val[end]:.4g} at epoch {epochs[end]}) while the train loss fell "
                        f"({train[start]:.4g} -> {train[end]:.4g}); keep the best checkpoint, add augmentation or "
                        "weight decay, or stop earlier (--early-stop).")
    train_acc, val_acc = curves["train_acc"][-1], curves["val_acc"][-1]
    if train_acc is not None and val_acc is not None and train_acc - val_acc > OVERFIT_GAP:
        findings.append(f"Overfitting: at the last epoch the train accuracy is {train_acc:.2%} but the val accuracy "
                        f"{val_acc:.2%}, a gap of {100 * (train_acc - val_acc):.1f} points (more than "
                        f"{100 * OVERFIT_GAP:.0f}); add augmentation or regularisation, or get more data.")
    return findings


def _longest_rise(val_loss: list[float | None], train_loss: list[float | None]) -> tuple[int, int]:
    """(start index, number of epochs) of the longest stretch where val loss rose each epoch and train loss fell."""
    best, start, length = (0, 0), 0, 0
    for index in range(1, len(val_loss)):
        before, after = (val_loss[index - 1], train_loss[index - 1]), (val_loss[index], train_loss[index])
        if None in before + after or not (after[0] > before[0] and after[1] < before[1]):  # type: ignore[operator]
            length = 0
            continue
        start, length = (start, length + 1) if length else (index - 1, 1)
        best = max(best, (start, length), key=lambda stretch: stretch[1])
    return best


def _underfitting(epochs: list[int], curves: dict[str, list[float | None]], overfitting: bool) -> list[str]:
    findings = []
    train_acc = curves["train_acc"][-1]
    if train_acc is not None and train_acc < UNDERFIT_ACC:
        findings.append(f"Underfitting: the train accuracy is only {train_acc:.2%} at the last epoch (below "
                        f"{UNDERFIT_ACC:.0%}); train longer or use a bigger model, and check the lr (both too low "
                        "and too high stall training).")
    name = "val" if curves["val_acc"][-1] is not None else "train"
    accuracy = curves[f"{name}_acc"]
    if len(accuracy) >= 2 and None not in accuracy[-2:] and not overfitting:  # more epochs would not help
        gain = accuracy[-1] - accuracy[-2]  # type: ignore[operator]
        if gain >= STILL_RISING:
            findings.append(f"Underfitting: the {name} accuracy still rose by {100 * gain:.1f} points in the last "
                            f"epoch ({accuracy[-2]:.2%} at epoch {epochs[-2]} -> {accuracy[-1]:.2%} at epoch "
                            f"{epochs[-1]}); train longer (more epochs).")
    return findings


def _no_problem(epochs: list[int], curves: dict[str, list[float | None]]) -> str:
    train_acc, val_acc = curves["train_acc"][-1], curves["val_acc"][-1]
    val = f", val accuracy {val_acc:.2%}" if val_acc is not None else " (no val split, so overfitting is not checked)"
    return (f"No problem detected: after {epochs[-1]} epochs the train accuracy is {_percent(train_acc)}{val}; "
            "the losses did not rise and accuracy has levelled off.")


# -- one run: report.html ----------------------------------------------------------------------------------
def write_report(run_dir: str | Path) -> Path:
    """Write run_dir/report.html: summary, diagnosis, curves, per-class table, confusion matrix, reliability,
    the misclassified gallery and any other PNG in plots/, then the config. Sections whose files are missing (no
    val split, no eval/ folder) are left out. The standard plots are redrawn first so the page never shows plots
    older than the files they come from. Returns the path of report.html."""
    run = RunDir.open(run_dir)
    write_run_plots(run.path)
    summary, rows = run.read_summary(), run.read_metrics()
    split = next(iter(eval_splits(run)), "test")  # the report leads with test; val when only val was evaluated
    metrics = read_eval(run, split)
    shown = {run.plot_path(stem, split) for stem in ("confusion_matrix", "reliability", "misclassified", "gradcam")}
    shown.add(run.path / "plots" / "curves.png")
    sections = [
        _summary_section(summary, metrics, split),
        _section("Diagnosis", _diagnosis_html(rows), "diagnosis") if rows else "",
        _png_section(run.path / "plots" / "curves.png", "Training curves", "curves"),
        _per_class_section(metrics, split) if metrics else "",
        _confusion_section(run, metrics, split) if metrics else "",
        _png_section(run.plot_path("reliability", split), f"Calibration ({split})", "reliability"),
        _png_section(run.plot_path("misclassified", split), f"Highest-loss {split} images", "misclassified"),
        _gradcam_section(run, split),
        _other_plots_section(run, shown),
        _config_section(run),
    ]
    subtitle = f"{run.path}" + ("" if metrics else " · not evaluated yet (no eval/ folder): "
                                f"run `visiontrain eval {run.path}` for the per-class results")
    path = run.path / "report.html"
    atomic_write_text(path, _page(f"visiontrain run {run.path.name}", subtitle, sections))
    return path


def _summary_section(summary: dict[str, Any], metrics: dict[str, Any] | None, split: str) -> str:
    rows = _summary_rows(summary) + (_headline_rows(metrics, split) if metrics else [])
    body = _table(["", "value"], [(label, text) for label, text in rows if text not in ("—", "")], "summary")
    if not summary:
        body += "<p class=muted>No summary.json: the run has not finished.</p>"
    return _section("Summary", body, "summary")


def _summary_rows(summary: dict[str, Any]) -> list[tuple[str, str]]:
    """Label and text per summary.json entry; '—' where the run does not have it (such rows are left out)."""
    dataset, best = summary.get("dataset") or {}, summary.get("best_val_acc")
    speed, distributed = summary.get("images_per_second"), summary.get("distributed") or {}
    processes = distributed.get("world_size") or 1
    check = summary.get("overfit_batch") or {}
    return [
        ("overfit-batch sanity check", f"{check['message']}. It trained on one fixed batch: not a model to use, "
                                       "and not evaluated on the test split" if check else "—"),
        ("dataset", f"{dataset.get('name')}: {len(dataset.get('classes', []))} classes, train "
                    f"{_count(dataset.get('train'))}, val {_count(dataset.get('val'))}, "
                    f"test {_count(dataset.get('test'))}" if dataset else "—"),
        ("test accuracy", _percent(summary.get("test_acc"))),
        ("test loss", _decimal(summary.get("test_loss"))),
        ("best val accuracy", "—" if best is None else f"{_percent(best)} at epoch {summary.get('best_epoch')}"),
        ("final train accuracy", _percent(summary.get("final_train_acc"))),
        ("epochs", _plain(summary.get("epochs_completed"))),
        ("model kept", _plain(summary.get("model_kept"))),
        ("calibration", _calibration_text(summary.get("calibration"))),
        ("wall time", _duration(summary.get("wall_seconds"))),
        ("training speed", f"{float(speed):,.0f} images/s" if speed else "—"),
        ("processes", f"{processes} (global batch {distributed.get('global_batch_size')})" if processes > 1 else "—"),
        ("parameters", _count(summary.get("parameters"))),
        ("hardware", _plain(summary.get("hardware"))),
        ("versions", _plain(summary.get("versions"))),
    ]


def _headline_rows(metrics: dict[str, Any], split: str) -> list[tuple[str, str]]:
    rows = [(f"{split} balanced accuracy", _percent(metrics.get("balanced_accuracy"))),
            (f"{split} macro F1", _decimal(metrics.get("macro_f1"))),
            (f"{split} expected calibration error", _ece_text(metrics))]
    if "top5_accuracy" in metrics:
        rows.append((f"{split} top-5 accuracy", _percent(metrics["top5_accuracy"])))
    if metrics.get("most_confused"):
        pairs = (f"{m['true']} → {m['predicted']} ({m['count']})" for m in metrics["most_confused"][:5])
        rows.append(("most confused (true → predicted)", ", ".join(pairs)))
    return rows


def _ece_text(metrics: dict[str, Any]) -> str:
    """'0.0213 (before temperature scaling: 0.1810)' for a calibrated run, else the ECE alone."""
    calibration = metrics.get("calibration") or {}
    if "ece_uncalibrated" not in calibration:
        return _decimal(metrics.get("ece"))
    return f"{_decimal(metrics.get('ece'))} (before temperature scaling: {_decimal(calibration['ece_uncalibrated'])})"


def _calibration_text(calibration: dict[str, Any] | None) -> str:
    """summary.json's calibration: the temperature and what it changed on the validation split, or why there is none."""
    if not calibration:
        return "—"
    if calibration.get("note"):
        return f"none: {calibration['note']}"
    return (f"temperature {calibration['temperature']:.3g} fitted on {calibration['images']:,} validation images "
            f"(their ECE {calibration['ece_before']:.4f} → {calibration['ece_after']:.4f}, NLL "
            f"{calibration['nll_before']:.4f} → {calibration['nll_after']:.4f}); the predicted classes are unchanged")


def _diagnosis_html(rows: list[dict[str, str]]) -> str:
    items = "".join(f"<li>{_e(finding)}</li>" for finding in diagnose(rows))
    return f'<ul class="diagnosis">{items}</ul><p class="muted">From metrics.csv; the thresholds are heuristics.</p>'


def _png_section(path: Path, title: str, section_id: str) -> str:
    return _section(title, _image(path.read_bytes(), title), section_id) if path.is_file() else ""


def _gradcam_section(run: RunDir, split: str) -> str:
    """plots/gradcam.png (explain.write_misclassified_gradcam), or its note of why there is none (e.g. no conv)."""
    path, title = run.plot_path("gradcam", split), f"Grad-CAM of misclassified {split} images"
    if path.is_file():
        return _png_section(path, title, "gradcam")
    note = path.with_suffix(".txt")
    return _section(title, f"<p class=muted>{_e(note.read_text().strip())}</p>", "gradcam") if note.is_file() else ""


def _per_class_section(metrics: dict[str, Any], split: str) -> str:
    rows = [(r["class"], _percent(r["precision"]), _percent(r["recall"]), _decimal(r["f1"], 3), _count(r["support"]))
            for r in metrics["per_class"]]
    table = _table(["class", "precision", "recall (accuracy)", "F1", "images"], rows, "per-class")
    return _section(f"Per class ({split}, n={metrics.get('n', '—')})", table, "per-class-section")


def _confusion_section(run: RunDir, metrics: dict[str, Any], split: str) -> str:
    image_path = run.plot_path("confusion_matrix", split)
    image = _image(image_path.read_bytes(), "confusion matrix") if image_path.is_file() else ""
    classes = [r["class"] for r in metrics["per_class"]]
    table = _confusion_table(classes, metrics["confusion_matrix"])
    opened = " open" if len(classes) <= 20 else ""  # 100x100 cells would bury the rest of the page
    details = f"<details{opened}><summary>Counts (rows: true class, columns: predicted)</summary>{table}</details>"
    return _section(f"Confusion matrix ({split})", image + details, "confusion")


def _confusion_table(classes: list[str], matrix: list[list[int]]) -> str:
    header = "<tr><th>true \\ predicted</th>" + "".join(f"<th>{_e(c)}</th>" for c in classes) + "</tr>"
    body = []
    for name, row in zip(classes, matrix):
        total = max(1, sum(row))
        # background = share of the true class, as in the PNG, so the table reads as a heat map too
        cells = "".join(f'<td style="background: rgba(31, 119, 180, {count / total:.2f})">{count}</td>' if count
                        else "<td>0</td>" for count in row)
        body.append(f"<tr><th>{_e(name)}</th>{cells}</tr>")
    return f'<table class="matrix" id="confusion-matrix"><thead>{header}</thead><tbody>{"".join(body)}</tbody></table>'


def _other_plots_section(run: RunDir, shown: set[Path]) -> str:
    folder = run.path / "plots"
    others = [p for p in sorted(folder.glob("*.png")) if p not in shown] if folder.is_dir() else []
    figures = [f"<h3>{_e(PLOT_CAPTIONS.get(p.name, p.name))}</h3>{_image(p.read_bytes(), p.name)}" for p in others]
    return _section("More plots", "".join(figures), "more-plots") if figures else ""


def _read_config(run: RunDir) -> dict[str, Any]:
    return load_yaml(run.config_path)


def _config_section(run: RunDir) -> str:
    rows = [(name, _plain(value)) for name, value in _read_config(run).items()]
    note = (f"<p class=muted>Repeat this run with <code>visiontrain train --config {_e(run.config_path)}</code>.</p>")
    return _section("Configuration", note + _table(["field", "value"], rows, "config"), "config-section")


# -- several runs: comparison page -------------------------------------------------------------------------
def compare_runs(run_dirs: Sequence[str | Path], out_html: str | Path, out_md: str | Path | None = None, *,
                 figures: Sequence[tuple[str, str | Path]] = ()) -> Path:
    """Write one HTML page comparing runs: the config fields that differ, best/final metrics, wall time, speed and
    size, val curves overlaid (one line per run), and per-class F1 side by side. With out_md, also a Markdown
    version with the same tables and the curves as a PNG next to it (<stem>_curves.png). `figures`: more PNG files
    (title, path) shown after the results, e.g. the sweep's sweep.png (linked from the Markdown). Returns out_html."""
    if not run_dirs:
        raise RunError("compare_runs needs at least one run folder; give e.g. runs/a runs/b")
    runs = [RunDir.open(path) for path in run_dirs]
    names = _run_names(runs)
    tables = _comparison_tables(runs, names)
    curves = comparison_png(list(zip(names, [run.read_metrics() for run in runs])))
    sections = [_section(title, _table(header, rows, table_id) if rows else f"<p class=muted>{_e(empty)}</p>", table_id)
                for title, header, rows, table_id, empty in tables]
    sections.insert(2, _section("Validation curves", _image(curves, "validation curves"), "curves"))
    figures = [(title, Path(path)) for title, path in figures if Path(path).is_file()]
    for index, (title, path) in enumerate(figures):
        sections.insert(2 + index, _section(title, _image(path.read_bytes(), title), f"figure-{index + 1}"))
    out_html = Path(out_html)
    atomic_write_text(out_html, _page(f"visiontrain: {len(runs)} runs compared", " · ".join(map(str, run_dirs)),
                                      sections))
    if out_md is not None:
        _write_markdown(Path(out_md), tables, curves, len(runs), figures)
    return out_html


def _run_names(runs: list[RunDir]) -> list[str]:
    """Folder names; parent/name where two runs share a folder name (runs/a vs other/a)."""
    names = [run.path.name for run in runs]
    return [f"{run.path.parent.name}/{name}" if names.count(name) > 1 else name for run, name in zip(runs, names)]


def _comparison_tables(runs: list[RunDir], names: list[str]) -> list[tuple[str, list[str], list[list[str]], str, str]]:
    """(title, header, rows, id, text when empty) of the config differences, results and per-class F1."""
    header = ["", *names]
    return [
        ("Config fields that differ", header, _config_differences(runs), "config-diff",
         "The runs share every config field."),
        ("Results", header, _results_rows(runs), "results", ""),
        ("Per-class F1 (test)", ["class", *names], _per_class_f1(runs), "per-class-f1",
         "No run has been evaluated (eval/test/metrics.json)."),
    ]


def _config_differences(runs: list[RunDir]) -> list[list[str]]:
    configs = [_read_config(run) for run in runs]
    for run, config in zip(runs, configs):  # augment compares by what it resolved to (auto = crop+flip on photos)
        resolved = run.read_summary().get("augmentation")
        if resolved is not None and "augment" in config:
            config["augment"] = resolved
    fields = list(dict.fromkeys(name for config in configs for name in config))
    missing = object()
    rows = []
    for field in fields:
        values = [config.get(field, missing) for config in configs]
        if field != "name" and len({json.dumps(v, sort_keys=True, default=str) for v in values}) > 1:
            rows.append([field, *("—" if v is missing else _plain(v) for v in values)])
    return rows


def _results_rows(runs: list[RunDir]) -> list[list[str]]:
    summaries = [run.read_summary() for run in runs]
    evals = [read_eval(run, "test") or {} for run in runs]
    rows = [
        ("test accuracy", [_percent(s.get("test_acc")) for s in summaries]),
        ("test loss", [_decimal(s.get("test_loss")) for s in summaries]),
        ("best val accuracy (epoch)", [f"{_percent(s['best_val_acc'])} ({s.get('best_epoch')})"
                                       if s.get("best_val_acc") is not None else "—" for s in summaries]),
        ("final train accuracy", [_percent(_last(run, "train_acc")) for run in runs]),
        ("final val accuracy", [_percent(_last(run, "val_acc")) for run in runs]),
        ("epochs", [str(len(run.read_metrics())) for run in runs]),
        ("test macro F1", [_decimal(e.get("macro_f1")) for e in evals]),
        ("test ECE", [_decimal(e.get("ece")) for e in evals]),
        ("wall time", [_duration(s.get("wall_seconds")) for s in summaries]),
        ("images/s (training)", [f"{float(s['images_per_second']):,.0f}" if s.get("images_per_second") else "—"
                                 for s in summaries]),
        ("parameters", [_count(s.get("parameters")) for s in summaries]),
    ]
    return [[label, *values] for label, values in rows]


def _last(run: RunDir, column: str) -> float | None:
    values = [v for v in series(run.read_metrics(), column) if v is not None]
    return values[-1] if values else None


def _per_class_f1(runs: list[RunDir]) -> list[list[str]]:
    evals = [read_eval(run, "test") for run in runs]
    f1 = [{r["class"]: r["f1"] for r in e["per_class"]} if e else {} for e in evals]
    classes = list(dict.fromkeys(name for scores in f1 for name in scores))  # union, in the first run's order
    return [[name, *(_decimal(scores.get(name), 3) if scores else "—" for scores in f1)] for name in classes]


def _write_markdown(path: Path, tables: list[tuple[str, list[str], list[list[str]], str, str]], curves: bytes,
                    count: int, figures: Sequence[tuple[str, Path]] = ()) -> None:
    image = path.with_name(f"{path.stem}_curves.png")
    atomic_write_bytes(image, curves)
    parts = [f"# visiontrain: {count} runs compared\n"]
    for index, (title, header, rows, _, empty) in enumerate(tables):
        if index == 2:  # the link target percent-encoded: a file name holding ')' or spaces would end it
            parts += [f"## {markdown_text(title)}\n\n![{markdown_text(title)}]({quote(_relative(figure, path))})\n"
                      for title, figure in figures]
            parts.append(f"## Validation curves\n\n![validation curves]({quote(image.name)})\n")
        parts.append(f"## {title}\n\n" + (_markdown_table(header, rows) if rows else f"_{empty}_\n"))
    atomic_write_text(path, "\n".join(parts))


def _relative(target: Path, page: Path) -> str:
    """`target`'s path as a link from the page `page` (relative where they share a root, else absolute)."""
    try:
        return Path(os.path.relpath(target.resolve(), page.resolve().parent)).as_posix()
    except ValueError:  # another drive (Windows)
        return target.resolve().as_posix()


def _markdown_table(header: list[str], rows: list[list[str]]) -> str:
    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(map(markdown_text, cells)) + " |"

    return "\n".join([line(header), line(["---"] * len(header)), *map(line, rows)]) + "\n"


_MARKDOWN_ESCAPES = {"&": "&amp;", "<": "&lt;", ">": "&gt;", "\n": " ", "\r": " "} | {
    c: "\\" + c for c in "\\`*_[]|~!"}


def markdown_text(value: Any) -> str:
    """`value` as literal text in a Markdown table cell. Renderers pass HTML through, so <, > and & become
    entities (a class folder named <script> stays text); the characters of emphasis, code, links and images
    are backslash-escaped (a run named [x](javascript:...) is no link); | would end the cell and a line break
    the row. An _ between two letters or digits is left as it is: inside a word it is never emphasis, and sweep
    run names (model-mlp_lr-0.01) stay readable in the file."""
    text = str(value)
    return "".join(c if c == "_" and 0 < i < len(text) - 1 and text[i - 1].isalnum() and text[i + 1].isalnum()
                   else _MARKDOWN_ESCAPES.get(c, c) for i, c in enumerate(text))
