"""Hostile names: of runs, sweeps, run folders and dataset paths. A name is refused where it cannot be a plain folder
name, and whatever reaches a generated file (the ejected script) is data there, never code."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from visiontrain.config import ConfigError, build_config

from .builders import NOT_UTF8, class_folder
from .verbs import QUICK, main, refused

PAYLOAD = 'e""";__import__("os").system("touch PWNED");"""'  # closes eject's docstring, runs code, reopens one


@pytest.mark.parametrize("name", [PAYLOAD, "two words", ".hidden", "-flag", "=1+2", "a/b", "a\\b", "$HOME", "<b>",
                                  "x" * 201, "tab\tname", "new\nline"])
def test_run_names_that_are_not_plain_folder_names_are_refused(name, clean_root, tmp_path, capsys):
    result = main(capsys, "train", "--dataset", clean_root, *QUICK, "--runs-dir", tmp_path, f"--name={name}")
    assert "not a plain folder name" in refused(result, "name:") and list(tmp_path.iterdir()) == []


def test_a_sweep_name_is_held_to_the_same_rule(clean_root, tmp_path, capsys):
    result = main(capsys, "sweep", "--dataset", clean_root, *QUICK, "--lr", "0.1,0.01", "--runs-dir", tmp_path,
                  "--name", PAYLOAD)
    assert "not a plain folder name" in refused(result, "name:") and list(tmp_path.iterdir()) == []


def test_plain_names_in_any_script_are_accepted():
    for name in ("r", "cifar-resnet_2", "lr-1e+05_model-lenet", "ünï-côde", "日本語", "x" * 200):
        assert build_config({"name": name, "model": "lenet"}, apply_preset=False).name == name


def test_a_default_run_name_from_a_hostile_dataset_folder_is_plain(tmp_path, capsys):
    root = class_folder(tmp_path / "my photos $(rm -rf ~) <b>", {"cat": 0, "dog": 120}, per_class=3)
    result = main(capsys, "train", "--dataset", root, *QUICK, "--runs-dir", tmp_path / "runs")
    assert result.returncode == 0, result.stderr
    (run,) = (tmp_path / "runs").iterdir()
    assert run.name == "my-photos-rm-rf-b-simple-cnn"


def test_paths_that_are_not_utf8_are_refused_naming_the_field(tmp_path):
    root = class_folder(tmp_path / NOT_UTF8, {"cat": 0, "dog": 120}, per_class=2)
    with pytest.raises(ConfigError, match="dataset: .*caf\\\\\\\\xe9.*not valid UTF-8"):
        build_config({"dataset": str(root), "model": "lenet"})
    with pytest.raises(ConfigError, match="runs_dir: .*not valid UTF-8"):
        build_config({"runs_dir": str(tmp_path / NOT_UTF8), "model": "lenet"})


def test_an_ejected_script_runs_no_code_from_a_hostile_run_folder_or_dataset_path(tmp_path, capsys):
    """Needs eject.py to write paths as literals (repr): the lead's half of the fix (issue 17)."""
    hostile = tmp_path / PAYLOAD  # a folder may be named so: only --name is held to the plain-name rule
    root = hostile / "data"
    for split in ("train", "test"):
        class_folder(root / split, {"cat": 0, "dog": 120}, per_class=3)
    trained = main(capsys, "train", "--dataset", root, *QUICK, "--runs-dir", hostile / "runs", "--name", "r")
    assert trained.returncode == 0, trained.stderr
    script = tmp_path / "plain.py"
    assert main(capsys, "eject", hostile / "runs" / "r", "-o", script).returncode == 0
    work = tmp_path / "work"
    work.mkdir()
    subprocess.run([sys.executable, str(script), "--help"], cwd=work, capture_output=True, timeout=60,
                   env=os.environ | {"PYTHONPATH": ""})
    assert not (work / "PWNED").exists(), "the ejected script ran code taken from a path"
