"""lr-find (the learning-rate range test) and --overfit-batch (the "overfit one batch" sanity check), on real
Fashion-MNIST images."""
from __future__ import annotations

import csv
import json
import math
import re

import pytest
import yaml

from conftest import run_cli, run_main
from visiontrain.config import ConfigError, build_config
from visiontrain.lrfind import lr_find, smooth, suggest

TINY = ["--model", "simple-cnn", "--batch-size", "64", "--threads", "1"]


def test_lr_find_writes_its_plot_and_csv_suggests_a_sane_lr_and_writes_no_run(fashion_folder, tmp_path):
    result = run_cli("lr-find", "--dataset", fashion_folder, *TINY, "-o", tmp_path / "out", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "out" / "lr_find.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = list(csv.DictReader(open(tmp_path / "out" / "lr_find.csv")))
    assert list(rows[0]) == ["step", "lr", "loss", "smoothed_loss"]
    lrs = [float(row["lr"]) for row in rows]
    assert lrs[0] == pytest.approx(1e-6) and all(b > a for a, b in zip(lrs, lrs[1:]))
    assert len(rows) < 100 and "4x its best" in result.stdout  # Adam at lr ~1 blows up: the test stops early
    suggested = float(re.search(r"suggested lr: (\S+)", result.stdout).group(1))
    assert 1e-4 <= suggested <= 0.1, result.stdout  # Adam on this CNN trains well from ~1e-3 to ~1e-2
    assert "steepest descent" in result.stdout and "min-loss lr / 10" in result.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "vt-home"]  # no runs/ folder (vt-home: data cache)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["lr_find.csv", "lr_find.png"]  # no checkpoint


def test_lr_find_steps_flags_and_bad_ranges(fashion_folder, tmp_path, capsys):
    config = build_config({"dataset": str(fashion_folder), "model": "mlp", "batch_size": 64})
    result = lr_find(config, start_lr=1e-4, end_lr=1e-2, steps=12, output=tmp_path)
    assert len(result.lrs) == 12 and result.stopped.startswith("reached end_lr")
    assert result.lrs[0] == pytest.approx(1e-4) and result.lrs[-1] == pytest.approx(1e-2)
    assert 1e-4 <= result.suggested_lr <= 1e-2 and result.csv.is_file() and result.plot.is_file()
    for kwargs, field in (({"start_lr": 1.0, "end_lr": 0.1}, "start_lr"), ({"start_lr": 0}, "start_lr"),
                          ({"steps": 2}, "steps")):
        with pytest.raises(ConfigError, match=f"^{field}: "):
            lr_find(config, output=tmp_path / "never", **kwargs)
    assert not (tmp_path / "never").exists()
    bad = run_main(capsys, "lr-find", "--dataset", fashion_folder, "--model", "mlp", "--start-lr", "1", "--end-lr", "0.5")
    assert bad.returncode == 2 and bad.stderr.startswith("visiontrain: error: start_lr:")


def test_smoothing_and_the_suggestion_on_a_known_curve():
    assert smooth([2.0] * 5) == pytest.approx([2.0] * 5)  # bias-corrected: no pull towards 0 at the start
    lrs = [10 ** (-6 + 7 * i / 99) for i in range(100)]
    # a loss that falls fastest at lr 1e-3 (a tanh step in log lr), bottoms out, then rises
    losses = [2.3 - 2 * (1 + math.tanh(2 * (math.log10(lr) + 3))) / 2 + max(0.0, math.log10(lr) + 1) ** 2
              for lr in lrs]
    assert suggest(lrs, losses) == pytest.approx(1e-3, rel=0.2)
    assert suggest(lrs[:3], losses[:3]) == lrs[2] / 10  # too short a fall to tell: min-loss lr / 10


# -- --overfit-batch ----------------------------------------------------------------------------------------------
def test_overfit_batch_reaches_100_percent_on_the_batch(fashion_folder, tmp_path, capsys):
    result = run_main(capsys, "train", "--dataset", fashion_folder, *TINY, "--overfit-batch", "32", "--overfit-steps",
                      "100", "--runs-dir", tmp_path, "--name", "ok", "--no-report", "--progress", "none")
    assert result.returncode == 0, result.stderr
    assert "overfit-batch check: the model can learn: OK" in result.stdout
    summary = json.loads((tmp_path / "ok" / "summary.json").read_text())
    check = summary["overfit_batch"]
    assert check["ok"] and check["accuracy"] == 1.0 and check["loss"] < 0.05 and check["images"] == 32
    assert summary["dataset"]["train"] == 32
    config = yaml.safe_load((tmp_path / "ok" / "config.yaml").read_text())
    assert (config["epochs"], config["batch_size"], config["augment"]) == (1, 32, "none")  # what actually ran
    assert len((tmp_path / "ok" / "metrics.csv").read_text().splitlines()) == 2  # one epoch of 100 steps


def test_overfit_batch_reports_a_model_that_cannot_learn(fashion_folder, tmp_path, capsys):
    result = run_main(capsys, "train", "--dataset", fashion_folder, *TINY, "--overfit-batch", "32", "--overfit-steps",
                      "50", "--lr", "1e-9", "--runs-dir", tmp_path, "--name", "broken", "--no-report", "--progress",
                      "none")
    assert result.returncode == 1, result.stderr
    assert "FAILED, the loss did not go to zero" in result.stdout and "check the lr, labels, model" in result.stdout
    check = json.loads((tmp_path / "broken" / "summary.json").read_text())["overfit_batch"]
    assert not check["ok"] and check["loss"] > 1.0


def test_overfit_batch_is_validated_and_part_of_the_experiment(tmp_path):
    with pytest.raises(ConfigError, match="^overfit_batch: -1 is out of range"):
        build_config({"dataset": "mnist", "model": "mlp", "overfit_batch": -1})
    config = build_config({"dataset": "mnist", "model": "mlp", "overfit_batch": 16, "overfit_steps": 30})
    from visiontrain.config import load_yaml, to_yaml

    (tmp_path / "c.yaml").write_text(to_yaml(config))
    assert build_config(load_yaml(tmp_path / "c.yaml"), apply_preset=False) == config
