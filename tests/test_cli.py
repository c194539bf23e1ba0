"""The CLI as a user meets it: one sentence and exit 2 for every bad input, no traceback; real runs work."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

import visiontrain
from conftest import REPO, run_cli, run_main


def test_help_does_not_import_torch():
    code = "import sys; from visiontrain.cli import build_parser; build_parser().format_help(); print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert result.stdout.strip() == "False"


@pytest.mark.parametrize("args, words", [
    (["train", "--batch-size", "0"], ["batch_size", "out of range"]),
    (["train", "--lr", "-0.1"], ["lr", "out of range"]),
    (["train", "--epochs", "two"], ["epochs", "whole number"]),
    (["train", "--model", "lenett"], ["did you mean 'lenet'"]),
    (["train", "--dataset", "cifar11"], ["did you mean 'cifar10'"]),
    (["train", "--dataset", "./missing/photos"], ["does not exist"]),
    (["train", "--data-dir", "/no/such/dir"], ["data_dir", "not a folder"]),
    (["train", "--config", "/no/such.yaml"], ["does not exist"]),
    (["train", "--resume", "/no/such/run"], ["does not exist"]),
    (["train", "--weights", "/no/such.pt", "--model", "lenet"], ["weights", "does not exist"]),
    (["eval", "/no/such/run"], ["does not exist"]),
])
def test_bad_input_is_one_sentence_exit_2_no_traceback(args, words, capsys):
    result = run_main(capsys, *args)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr and result.stderr.startswith("visiontrain: error:")
    for word in words:
        assert word in result.stderr


def test_eval_on_a_folder_that_is_not_a_run(tmp_path, capsys):
    result = run_main(capsys, "eval", tmp_path)
    assert result.returncode == 2 and "not a visiontrain run folder" in result.stderr


def test_lists(tmp_path):
    models = run_cli("models")
    assert models.returncode == 0 and "lenet" in models.stdout and "resnet18" in models.stdout
    datasets = run_cli("datasets")
    assert "fashion-mnist" in datasets.stdout and "cifar100" in datasets.stdout


def test_train_eval_and_refusing_to_overwrite(digits_small, tmp_path, capsys):
    common = ["--dataset", digits_small, "--model", "lenet", "--epochs", "1", "--batch-size", "64", "--optimizer",
              "adam", "--lr", "0.003", "--runs-dir", tmp_path, "--name", "r1", "--augment", "none"]
    result = run_cli("train", *common, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "run: " in result.stdout and "test accuracy" in result.stdout
    assert "epoch 1/1" in result.stdout  # a plain line per epoch when stdout is not a terminal
    again = run_main(capsys, "train", *common)
    assert again.returncode == 2 and "already exists" in again.stderr and "--resume" in again.stderr
    evaluation = run_cli("eval", tmp_path / "r1")
    assert evaluation.returncode == 0 and "accuracy" in evaluation.stdout and "precision" in evaluation.stdout
    repeat = run_cli("train", "--config", tmp_path / "r1" / "config.yaml", "--runs-dir", tmp_path, cwd=tmp_path)
    assert repeat.returncode == 0, repeat.stderr
    first = (tmp_path / "r1" / "metrics.csv").read_text().splitlines()[1].split(",")
    second_dir = next(p for p in tmp_path.iterdir() if p.name.startswith("digits-small") and p.is_dir())
    second = (second_dir / "metrics.csv").read_text().splitlines()[1].split(",")
    assert first[2:] == second[2:]  # the saved config repeats the run exactly (apart from wall seconds)


def test_eval_names_a_missing_checkpoint_and_foreign_classes_and_takes_a_plain_folder(digits_small, tmp_path, capsys):
    import shutil

    result = run_main(capsys, "train", "--dataset", digits_small, "--model", "mlp", "--epochs", "1", "--runs-dir",
                      tmp_path, "--name", "r", "--progress", "none", "--no-report")
    assert result.returncode == 0, result.stderr
    shutil.copytree(tmp_path / "r", tmp_path / "bare")
    shutil.rmtree(tmp_path / "bare" / "checkpoints")
    bare = run_main(capsys, "eval", tmp_path / "bare")
    assert bare.returncode == 2 and "has no checkpoint" in bare.stderr and "Traceback" not in bare.stderr
    shutil.copytree(digits_small / "test", tmp_path / "renamed")
    (tmp_path / "renamed" / "9").rename(tmp_path / "renamed" / "nine")
    foreign = run_main(capsys, "eval", tmp_path / "r", "--data", tmp_path / "renamed")
    assert foreign.returncode == 2 and "it lacks 9" in foreign.stderr and "it has nine" in foreign.stderr
    plain = run_main(capsys, "eval", tmp_path / "r", "--data", digits_small / "test")  # a plain folder of class sub-folders
    assert plain.returncode == 0, plain.stderr
    metrics = json.loads((tmp_path / "r" / "eval" / "data-test" / "metrics.json").read_text())
    own = json.loads((tmp_path / "r" / "eval" / "test" / "metrics.json").read_text())
    assert metrics["accuracy"] == own["accuracy"]  # the same 100 test images, written beside, not over, eval/test


def test_summary_prints_the_layer_table(capsys):
    result = run_cli("summary", "--model", "simple-cnn", "--input", "1x28x28")
    assert result.returncode == 0 and "[32, 7, 7]" in result.stdout and "206,922 parameters" in result.stdout
    bad = run_main(capsys, "summary", "--model", "lenet", "--input", "28x28")
    assert bad.returncode == 2 and "--input" in bad.stderr


def test_data_check_lists_bad_files_without_crashing(tmp_path, capsys, monkeypatch):
    from PIL import Image

    for name in ("cat", "dog"):
        (tmp_path / "d" / name).mkdir(parents=True)
        for i in range(3):
            Image.new("RGB", (16, 16), (i * 60, 0, 0)).save(tmp_path / "d" / name / f"{i}.png")
    (tmp_path / "d" / "cat" / "broken.jpg").write_bytes(b"\xff\xd8 not really")
    monkeypatch.chdir(tmp_path)
    result = run_main(capsys, "data", tmp_path / "d")
    assert result.returncode == 1 and "broken.jpg" in result.stdout and "unreadable files: 1" in result.stdout  # 1: found


def test_export_and_predict_from_the_command_line(digits_small, tmp_path):
    # the run (trained through the command line in test_train_eval_and_refusing_to_overwrite) made in this process
    visiontrain.train(dataset=str(digits_small), model="lenet", epochs=1, batch_size=64, augment="none",
                      runs_dir=str(tmp_path), name="r", report=False, progress="none")
    exported = run_cli("export", tmp_path / "r", "--format", "onnx")
    assert exported.returncode == 0, exported.stderr
    assert "top-1 agreement 100%" in exported.stdout and (tmp_path / "r" / "export" / "onnx" / "model.onnx").is_file()
    (tmp_path / "bad.png").write_bytes(b"not a png")
    digits = digits_small / "test" / "7"
    for source in (tmp_path / "r", tmp_path / "r" / "export" / "onnx"):
        predicted = run_cli("predict", source, digits, tmp_path / "bad.png", "--format", "csv", "-o", tmp_path / "p.csv")
        assert predicted.returncode == 0, predicted.stderr
        assert "skipped" in predicted.stderr and "bad.png" in predicted.stderr
        lines = (tmp_path / "p.csv").read_text().splitlines()
        assert lines[0].startswith("path,predicted") and len(lines) == 1 + len(list(digits.iterdir()))


@pytest.mark.parametrize("args", [
    ["eval", "/no/such/run"], ["predict", "/no/such/run", "x.png"], ["export", "/no/such/run"],
    ["report", "/no/such/run"], ["eject", "/no/such/run"], ["data", "/no/such/folder"],
    ["summary", "--model", "no-such-model"], ["train", "--resume", "/no/such/run"],
])
def test_every_verb_names_a_missing_path_or_name_exit_2(args, capsys):
    # in this process; through a real process only for `report`, whose only such test this is (every other verb
    # has one above or in its own module)
    result = run_cli(*args) if args[0] == "report" else run_main(capsys, *args)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    missing = next(arg for arg in args if arg.startswith("/no/such") or arg == "no-such-model")
    assert missing in result.stderr  # the very path or name the user gave


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="this machine has a GPU")
def test_a_gpu_preset_on_a_machine_without_one_says_what_to_do(capsys, tmp_path):
    result = run_main(capsys, "train", "--preset", "cifar10-gpu", "--runs-dir", tmp_path / "runs")
    assert result.returncode == 2 and "internal error" not in result.stderr
    assert "sees no CUDA GPU" in result.stderr and "the cifar10-gpu preset is for a GPU: add --device cpu" in result.stderr
    assert not (tmp_path / "runs").exists()  # stopped before any data loading or run folder


def test_the_cli_is_a_table_and_its_choices_come_from_the_registries(capsys):
    """Every command of cli.COMMANDS is listed by --help and dispatched through the table; --format of export accepts
    exactly the registered export formats, so a new format needs no change to the CLI; --help imports neither torch
    nor numpy (it answers at once)."""
    import subprocess
    import sys

    from visiontrain._registry import EXPORTERS
    from visiontrain.cli import COMMANDS, build_parser

    result = run_main(capsys, "--help")
    assert result.returncode == 0 and all(name in result.stdout for name in COMMANDS)
    export = next(a for a in build_parser()._subparsers._group_actions[0].choices["export"]._actions
                  if a.dest == "format")
    assert list(export.choices) == EXPORTERS.names()  # every registered format, however many there are
    assert {"onnx", "pt2", "safetensors", "torchscript"} <= set(export.choices)
    EXPORTERS.register("made-up")(EXPORTERS.get("onnx"))
    try:
        assert "made-up" in export.choices
    finally:
        del EXPORTERS._items["made-up"]
    code = ("import sys; from visiontrain.cli import main\n"
            "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "print('torch' in sys.modules, 'numpy' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "False False"
