"""visiontrain sweep: a grid of real runs, the comparison page, validation before training, and resuming."""
from __future__ import annotations

import csv
import shutil

import pytest
import yaml

from conftest import run_cli, run_main
from visiontrain.config import ConfigError
from visiontrain.sweep import plan, run_sweep

GRID = {"model": "mlp,simple-cnn", "lr": "0.01,0.003"}
SHARED = {"epochs": "1", "batch_size": "64", "augment": "none", "progress": "none", "report": False}
NAMES = ["model-mlp_lr-0.01", "model-mlp_lr-0.003", "model-simple-cnn_lr-0.01", "model-simple-cnn_lr-0.003"]


def sweep_values(fashion_folder, runs_dir, /, **changes) -> dict:
    return {"dataset": str(fashion_folder), **GRID, **SHARED, "runs_dir": str(runs_dir), "name": "grid"} | changes


def cli_args(values: dict) -> list[str]:
    """The flags for `values`, with one thread per run (in-process tests leave torch's thread count alone)."""
    args = ["--threads", "1"]
    for key, value in values.items():
        flag = "--" + key.replace("_", "-")
        args += [flag if value else "--no-" + flag[2:]] if isinstance(value, bool) else [flag, str(value)]
    return args


@pytest.fixture(scope="module")
def finished_sweep(digits_small, tmp_path_factory):
    """The 2 x 2 sweep, run once through the command line: (values, its folder, the command's result)."""
    runs = tmp_path_factory.mktemp("sweep-runs")
    values = sweep_values(digits_small, runs)
    return values, runs / "sweep-grid", run_cli("sweep", *cli_args(values), cwd=runs)


def test_a_2x2_sweep_writes_4_runs_the_manifest_and_the_comparison(finished_sweep):
    _, folder, result = finished_sweep
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in folder.iterdir() if p.is_dir()) == sorted(NAMES)
    for name in NAMES:
        assert (folder / name / "summary.json").is_file() and (folder / name / "checkpoints" / "last.pt").is_file()
    manifest = yaml.safe_load((folder / "sweep.yaml").read_text())
    assert manifest["grid"] == {"model": ["mlp", "simple-cnn"], "lr": ["0.01", "0.003"]}
    assert manifest["shared"]["epochs"] == "1" and [r["name"] for r in manifest["runs"]] == NAMES
    assert all(r["status"] == "done" for r in manifest["runs"])
    html, markdown = (folder / "compare.html").read_text(), (folder / "compare.md").read_text()
    assert all(name in html and name in markdown for name in NAMES)
    assert "Config fields that differ" in html and "| lr | 0.01 | 0.003 | 0.01 | 0.003 |" in markdown
    table = result.stdout[result.stdout.index("best val acc"):]
    assert "test acc" in table and "seconds" in table and all(name in table for name in NAMES)
    assert table.count("%") == 8  # best val and test accuracy of each run


def test_rerunning_the_sweep_skips_the_finished_runs(finished_sweep, capsys):
    values, folder, first = finished_sweep
    assert first.returncode == 0, first.stderr
    checkpoints = {p: p.stat().st_mtime_ns for p in folder.glob("*/checkpoints/*.pt")}
    again = run_main(capsys, "sweep", *cli_args(values | {"progress": "line"}))  # how the runs show progress: the same sweep
    assert again.returncode == 0, again.stderr
    assert again.stdout.count("finished earlier, skipped") == 4 and ": training" not in again.stdout
    assert "epoch 1/1" not in again.stdout  # nothing trained
    assert {p: p.stat().st_mtime_ns for p in folder.glob("*/checkpoints/*.pt")} == checkpoints


def test_an_interrupted_run_resumes_and_one_killed_before_its_first_checkpoint_restarts(finished_sweep, tmp_path):
    values, folder, first = finished_sweep
    assert first.returncode == 0, first.stderr
    copy = tmp_path / "moved" / folder.name  # a sweep folder can move: runs_dir only locates it
    shutil.copytree(folder, copy)
    before = yaml.safe_load((copy / NAMES[0] / "summary.json").read_text())
    (copy / NAMES[0] / "summary.json").unlink()  # killed after its last checkpoint, before the summary
    shutil.rmtree(copy / NAMES[1] / "checkpoints")  # killed before its first checkpoint
    for extra in ("metrics.csv", "summary.json", "eval", "status.json"):
        path = copy / NAMES[1] / extra
        shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
    lines = []
    sweep = run_sweep(values | {"runs_dir": str(tmp_path / "moved")}, out=lines.append)
    assert lines == [f"[1/4] {NAMES[0]}: resuming from its checkpoint", f"[2/4] {NAMES[1]}: training",
                     f"[3/4] {NAMES[2]}: finished earlier, skipped", f"[4/4] {NAMES[3]}: finished earlier, skipped"]
    after = yaml.safe_load((copy / NAMES[0] / "summary.json").read_text())
    assert after["test_acc"] == before["test_acc"]  # the same kept model, not a new run
    assert [row["status"] for row in sweep.rows] == ["done"] * 4
    for row in sweep.rows:  # each run's test accuracy, recomputed from its own per-image predictions
        with open(copy / row["run"] / "eval" / "test" / "predictions.csv", newline="") as handle:
            predictions = list(csv.DictReader(handle))
        right = sum(p["true"] == p["predicted"] for p in predictions)
        assert row["test_acc"] == pytest.approx(right / len(predictions), abs=1e-12), row["run"]


def test_a_diverging_grid_point_is_recorded_and_the_sweep_goes_on(fashion_folder, tmp_path):
    values = sweep_values(fashion_folder, tmp_path, model="simple-cnn", lr="0.01,90", optimizer="sgd",
                          schedule="constant")
    lines = []
    sweep = run_sweep(values, out=lines.append)
    assert [row["status"][:8] for row in sweep.rows] == ["done", "diverged"]
    assert "loss is nan" in sweep.rows[1]["status"] or "loss is inf" in sweep.rows[1]["status"]
    assert (sweep.path / "compare.html").is_file()
    lines.clear()
    run_sweep(values, out=lines.append)  # the same settings would diverge again: not retried
    assert "skipped, it diverged" in lines[1]


@pytest.mark.parametrize("changes, words", [
    ({"batch_size": "64,0"}, ["batch_size", "out of range"]),  # the bad value is in the last grid point
    ({"lr": "0.01,fast"}, ["lr", "not a number"]),
    ({"model": "mlp,lenett"}, ["model", "did you mean 'lenet'"]),
    ({"lr": "0.01,1e-2"}, ["lr", "same run", "list each value once"]),
    ({"lr": "0.01,"}, ["lr", "empty value"]),
    ({"runs_dir": "a,b"}, ["runs_dir", "one runs_dir"]),
])
def test_a_bad_grid_value_names_the_field_before_anything_is_written(fashion_folder, tmp_path, changes, words):
    values = sweep_values(fashion_folder, tmp_path / "runs", **changes)
    with pytest.raises(ConfigError) as error:
        run_sweep(values)
    for word in words:
        assert word in str(error.value)
    assert not (tmp_path / "runs").exists()


def test_the_command_line_exits_2_with_one_sentence_and_trains_nothing(fashion_folder, tmp_path, capsys):
    result = run_main(capsys, "sweep", *cli_args(sweep_values(fashion_folder, tmp_path / "runs", batch_size="64,0")))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.startswith("visiontrain: error: batch_size: 0 is out of range")
    assert not (tmp_path / "runs").exists() and result.stdout == ""


def test_another_grid_under_the_same_name_is_refused(finished_sweep):
    values, folder, first = finished_sweep
    assert first.returncode == 0, first.stderr
    with pytest.raises(ConfigError, match="other settings"):
        run_sweep(values | {"lr": "0.01,0.1"})


def test_the_plan_names_runs_by_their_values_and_takes_lists_and_paths(digits_small, tmp_path):
    sweep = plan({"dataset": str(digits_small), "model": ["mlp", "lenet"], "batch_size": "32, 64", "epochs": 1,
                  "runs_dir": str(tmp_path)})
    assert sweep.path == tmp_path / f"sweep-{digits_small.name}-model-batch-size"
    assert [p.name for p in sweep.points] == ["model-mlp_batch-size-32", "model-mlp_batch-size-64",
                                              "model-lenet_batch-size-32", "model-lenet_batch-size-64"]
    assert [p.config.batch_size for p in sweep.points] == [32, 64, 32, 64] and sweep.points[0].config.epochs == 1
    assert {p.config.runs_dir for p in sweep.points} == {str(sweep.path)}
    comma_path = tmp_path / "a,b"
    shutil.copytree(digits_small, comma_path)  # an existing path with a comma is one value, not two
    assert len(plan({"dataset": str(comma_path), "model": "mlp", "runs_dir": str(tmp_path)}).points) == 1


def test_the_sweep_draws_sweep_png_and_shows_it_in_the_comparison(finished_sweep):
    import base64
    import re

    from PIL import Image

    _, folder, result = finished_sweep
    assert result.returncode == 0, result.stderr
    png = (folder / "sweep.png").read_bytes()
    width, height = Image.open(folder / "sweep.png").size
    assert png.startswith(b"\x89PNG") and width > 1.5 * height  # two panels side by side: model, lr
    assert f"{folder / 'sweep.png'}" in result.stdout
    html = (folder / "compare.html").read_text()
    embedded = re.search(r'id="figure-1"><h2>Accuracy per swept value</h2><img src="data:image/png;base64,([^"]+)"',
                         html)
    assert embedded and base64.b64decode(embedded.group(1)) == png
    assert "![Accuracy per swept value](sweep.png)" in (folder / "compare.md").read_text()
