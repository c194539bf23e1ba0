"""Habits people bring from other tools: --print-config (the resolved YAML and where each value came from), shell
completion for bash and zsh, and a first line naming the recipe, device, precision and threads of every run."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import REPO, run_cli, run_main
from visiontrain.config import build_config
from visiontrain.engine.precision import cpu_has_native_bf16

QUICK = ["--epochs", "1", "--batch-size", "64", "--threads", "1", "--progress", "none", "--no-report", "--device",
         "cpu"]
CPU_PRECISION = "bf16 (native)" if cpu_has_native_bf16() else "fp32"  # what --precision auto picks on this CPU


def _commented(text: str) -> tuple[dict, dict]:
    """(values, sources) of --print-config's output: YAML, each line's comment naming where its value came from."""
    values = yaml.safe_load(text)
    sources = {line.split(":", 1)[0]: line.split("  # ", 1)[1] for line in text.splitlines()
               if "  # " in line and not line.startswith("#")}
    return values, sources


def test_print_config_shows_each_value_and_where_it_came_from(tmp_path, capsys):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("epochs: 3\nlr: 0.01\nlabel_smoothing: 0.1\n")
    result = run_main(capsys, "train", "--preset", "cifar10", "--config", recipe, "--lr", "0.5", "--print-config",
                      "--runs-dir", tmp_path / "runs")
    assert result.returncode == 0, result.stderr
    values, sources = _commented(result.stdout)
    expected = build_config({"preset": "cifar10", "epochs": 3, "lr": 0.5, "label_smoothing": 0.1,
                             "runs_dir": str(tmp_path / "runs")})
    assert values == {"format_version": 1} | expected.to_dict()
    assert sources["lr"] == "flag --lr" and sources["runs_dir"] == "flag --runs-dir"  # the flag beats the file
    assert sources["epochs"] == f"file {recipe}" and sources["label_smoothing"] == f"file {recipe}"
    assert sources["width"] == "preset cifar10" and sources["preset"] == "flag --preset"
    assert sources["seed"] == "default" and sources["tta"] == "preset cifar10"
    assert not (tmp_path / "runs").exists() and result.stderr == ""  # nothing was trained, nothing was said

    # the output is a config file: read back, it resolves to the same config
    (tmp_path / "resolved.yaml").write_text(result.stdout)
    again = run_main(capsys, "train", "--config", tmp_path / "resolved.yaml", "--print-config")
    assert _commented(again.stdout)[0] == values

    plain, sources = _commented(run_main(capsys, "train", "--print-config").stdout)
    assert plain["preset"] == "fashion-mnist" and sources["preset"].startswith("default: the dataset's own")
    assert sources["model"] == "preset fashion-mnist"


def test_print_config_of_a_resume_names_the_run(tmp_path, capsys, digits_small):
    assert run_main(capsys, "train", "--dataset", digits_small, "--model", "lenet", *QUICK, "--runs-dir", tmp_path,
                    "--name", "r").returncode == 0
    result = run_main(capsys, "train", "--resume", tmp_path / "r", "--epochs", "2", "--print-config")
    values, sources = _commented(result.stdout)
    assert values["epochs"] == 2 and sources["epochs"] == "flag --epochs"
    assert values["model"] == "lenet" and sources["model"] == f"run {tmp_path / 'r' / 'config.yaml'}"


def test_every_run_starts_with_its_recipe_device_precision_and_threads(tmp_path, capsys, mnist_stand_in):
    common = ["--dataset", "mnist", "--limit", "100", *QUICK, "--runs-dir", tmp_path]
    named = run_main(capsys, "train", "--model", "lenet", *common)
    assert named.returncode == 0, named.stderr
    assert named.stderr.splitlines()[0] == (
        "visiontrain: no preset: --model given, so plain defaults; add --preset mnist for the tuned recipe (flags "
        f"still override it) \u00b7 cpu \u00b7 {CPU_PRECISION} \u00b7 1 thread")
    tuned = run_main(capsys, "train", *common, "--threads", "2", "--precision", "fp32")
    assert tuned.returncode == 0, tuned.stderr
    assert tuned.stderr.splitlines()[0] == "visiontrain: preset mnist \u00b7 cpu \u00b7 fp32 \u00b7 2 threads"


def test_a_folder_has_no_preset_to_miss(tmp_path, capsys, digits_small):
    result = run_main(capsys, "train", "--dataset", digits_small, "--model", "lenet", *QUICK, "--runs-dir", tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines()[0] == f"visiontrain: no preset \u00b7 cpu \u00b7 {CPU_PRECISION} \u00b7 1 thread"


def test_the_small_data_preset_trains_your_folder_with_trivialaugment_and_asks_for_one(tmp_path, capsys,
                                                                                      digits_small):
    """`--preset small-data` names no dataset (presets.py: a recipe for a few thousand images of one's own, where
    TrivialAugmentWide pays over a hundred epochs): without --dataset it says so before anything runs, instead of
    training the default Fashion-MNIST for a hundred epochs; with a folder it trains it with the policy on."""
    bare = run_main(capsys, "train", "--preset", "small-data", "--runs-dir", tmp_path)
    assert bare.returncode == 2 and "preset small-data" in bare.stderr and "--dataset FOLDER" in bare.stderr
    assert not any(tmp_path.iterdir())
    listed = run_main(capsys, "presets").stdout.splitlines()
    where = next(i for i, line in enumerate(listed) if line.startswith("small-data "))
    assert "--auto-augment trivial" in listed[where] and "--dataset FOLDER" in listed[where + 1]
    result = run_main(capsys, "train", "--preset", "small-data", "--dataset", digits_small, *QUICK, "--runs-dir",
                      tmp_path, "--name", "small")
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines()[0].startswith("visiontrain: preset small-data \u00b7 cpu")
    saved = yaml.safe_load((tmp_path / "small" / "config.yaml").read_text())
    assert (saved["auto_augment"], saved["model"], saved["width"], saved["dataset"]) == (
        "trivial", "fastnet-s1", 0.5, str(digits_small))


def test_onednn_capped_below_bf16_trains_in_fp32_on_any_cpu(tmp_path, digits_small):
    """ONEDNN_MAX_CPU_ISA=AVX2 makes oneDNN emulate bf16 (a bf16 matmul ran 400x slower than fp32 on a CPU with
    AMX): auto precision must then choose fp32, as on a CPU without bf16. Capped at AMX, the CPU's own answer."""
    capped = run_cli("train", "--dataset", digits_small, "--model", "lenet", *QUICK, "--runs-dir", tmp_path,
                     "--limit", "64", env={"ONEDNN_MAX_CPU_ISA": "avx2"})
    assert capped.returncode == 0, capped.stderr
    assert capped.stderr.splitlines()[0] == "visiontrain: no preset \u00b7 cpu \u00b7 fp32 \u00b7 1 thread"
    check = "from visiontrain.engine.precision import cpu_has_native_bf16 as f; print(f())"
    for isa, expected in (("AVX512_CORE_VNNI", False), ("AVX512_CORE_AMX", cpu_has_native_bf16()), ("", None)):
        result = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, check=True,
                                env=os.environ | {"PYTHONPATH": str(REPO), "ONEDNN_MAX_CPU_ISA": isa})
        assert result.stdout.strip() == str(cpu_has_native_bf16() if expected is None else expected), isa


# -- shell completion ----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def scripts(tmp_path_factory):
    """The bash and zsh scripts as a user gets them (`visiontrain completion SHELL`), and a folder to complete in."""
    folder = tmp_path_factory.mktemp("completion")
    for shell in ("bash", "zsh"):
        result = run_cli("completion", shell, cwd=folder)
        assert result.returncode == 0, result.stderr
        (folder / f"visiontrain.{shell}").write_text(result.stdout)
    (folder / "work" / "photos").mkdir(parents=True)
    (folder / "work" / "runs").mkdir()
    (folder / "work" / "recipe.yaml").write_text("epochs: 1\n")
    return folder


CASES = [  # (command line, what is offered)
    ("visiontrain tr", ["train"]),
    ("visiontrain --debug pre", ["predict", "presets"]),
    ("visiontrain train --optim", ["--optimizer"]),
    ("visiontrain train --optimizer ", ["sgd", "adam", "adamw"]),
    ("visiontrain train --model resnet1", ["resnet101", "resnet152", "resnet18"]),
    ("visiontrain train --preset cifar10-", ["cifar10-airbench", "cifar10-gpu"]),
    ("visiontrain train --dataset ", ["cifar10", "cifar100", "fashion-mnist", "mnist", "photos", "runs"]),
    ("visiontrain train --config rec", ["recipe.yaml"]),
    ("visiontrain train --runs-dir ", ["photos", "runs"]),
    ("visiontrain train --lr ", []),  # a number: nothing to offer
    ("visiontrain completion ", ["bash", "zsh"]),
    ("visiontrain cache ", ["list", "clear"]),
    ("visiontrain eval runs --split ", ["test", "val", "train"]),
    ("visiontrain predict runs --top-k 3 ", ["photos", "recipe.yaml", "runs"]),  # a value skipped: the inputs
]


def _words(line: str) -> list[str]:
    return line.split(" ")  # a trailing space: the word being typed is empty


def test_the_bash_script_is_valid_and_completes_commands_options_and_values(scripts):
    script = scripts / "visiontrain.bash"
    assert subprocess.run(["bash", "-n", script]).returncode == 0
    driver = ('source "$1"; shift; complete -p visiontrain >/dev/null || exit 3; COMP_WORDS=("$@"); '
              'COMP_CWORD=$(($# - 1)); _visiontrain; printf "%s\\n" "${COMPREPLY[@]}"')
    for line, offered in CASES:
        result = subprocess.run(["bash", "-c", driver, "bash", script, *_words(line)], capture_output=True, text=True,
                                cwd=scripts / "work")
        assert result.returncode == 0, (line, result.stderr)
        assert sorted(filter(None, result.stdout.splitlines())) == sorted(offered), line


ZSH = shutil.which("zsh")


@pytest.mark.skipif(ZSH is None, reason="needs zsh")
def test_the_zsh_script_completes_in_zsh(scripts):
    script = scripts / "visiontrain.zsh"
    assert subprocess.run([ZSH, "-n", script]).returncode == 0
    root = Path(ZSH).resolve().parents[1]  # "/" or "/usr" for an installed zsh; the unpacked folder of a .deb's
    root = Path("/") if root in (Path("/"), Path("/usr")) else root
    for line, offered in CASES:
        if line.endswith("--lr "):
            continue  # zsh shows a message there, not matches
        result = subprocess.run([ZSH, "-f", REPO / "tests" / "drivers" / "zsh_complete.zsh", script, line,
                                 "" if root == Path("/") else root], capture_output=True, text=True,
                                cwd=scripts / "work", timeout=60)
        matches = {text[2:-2] for text in result.stdout.replace("\r", "").split() if text.startswith("<<")}
        assert matches == set(offered), line


@pytest.mark.parametrize("args, hint", [
    (["train", "--subset", "5000"], "--subset 5000 (did you mean --limit N (a quick try) or --fraction F?)"),
    (["train", "--imgsz", "64"], "--imgsz 64 (did you mean --image-size?)"),  # Ultralytics' name
    (["predict", "run", "a.png", "--topk", "3"], "--topk 3 (did you mean --top-k?)"),  # a slip
])
def test_another_tools_flag_names_the_one_visiontrain_has(capsys, args, hint):
    result = run_main(capsys, *args)
    assert result.returncode == 2
    assert result.stderr.splitlines()[-1] == f"visiontrain: error: unrecognized arguments: {hint}"
