"""`visiontrain eject` reproduces the run's data and habits offline: the files the run read, its class order, its
validation split (best epoch chosen there, the test split used once), and nothing from a name runs as code."""
from __future__ import annotations

import ast
import runpy
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import visiontrain
from conftest import run_main
from realdata import write_digits_folder

# Run the ejected script with every network connection refused: it must never download.
OFFLINE = ("import runpy, socket, sys\n"
           "def refuse(*args, **kwargs):\n"
           "    raise OSError('the network is blocked in this test')\n"
           "connect = socket.socket.connect\n"
           "def local_only(self, address):  # DataLoader's workers talk over Unix sockets\n"
           "    if self.family in (socket.AF_INET, socket.AF_INET6):\n"
           "        refuse()\n"
           "    return connect(self, address)\n"
           "socket.socket.connect, socket.create_connection, socket.getaddrinfo = local_only, refuse, refuse\n"
           "sys.argv = sys.argv[1:]\n"
           "runpy.run_path(sys.argv[0], run_name='__main__')\n")


def run_offline(script: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-I", "-c", OFFLINE, str(script), *args], capture_output=True, text=True,
                          cwd=script.parent, timeout=600)


def script_module(script: Path) -> dict:
    """The ejected script's globals, without running its main()."""
    return runpy.run_path(str(script), run_name="ejected")


def test_an_idx_run_from_a_flat_folder_ejects_to_those_files_and_its_validation_split(fashion_dir, tmp_path):
    run = visiontrain.train(dataset="fashion-mnist", data_dir=str(fashion_dir), model="mlp", epochs=1,
                            batch_size=256, progress="none", report=False, runs_dir=str(tmp_path / "runs"))
    script = tmp_path / "train_plain.py"
    assert run_main_eject(run.path, script) == 0
    text = script.read_text()
    assert "download" not in text and "datasets.FashionMNIST" not in text
    ejected = script_module(script)
    assert sorted(ejected["FILES"].values()) == sorted(str(p.resolve()) for p in fashion_dir.glob("*.gz"))
    train, val, test = ejected["make_datasets"](ejected["train_transform"], ejected["test_transform"])
    dataset = run.summary["dataset"]
    assert (len(train), len(val), len(test)) == (dataset["train"], dataset["val"], dataset["test"]) == (54000, 6000, 10000)
    from visiontrain.data import load_dataset  # the run's own validation split: the same images, in the same order

    reference = load_dataset("fashion-mnist", data_dir=str(fashion_dir), verbose=False)
    assert torch.equal(val.labels, reference.val.labels) and torch.equal(val.images[:, None], reference.val.images)
    assert ejected["CLASSES"] == run.summary["dataset"]["classes"]

    trained = run_offline(script, "--epochs", "2", "--limit", "3000")
    assert trained.returncode == 0, trained.stderr[-2000:]
    assert trained.stdout.count("val accuracy") == 2  # the best epoch is chosen on validation ...
    assert trained.stdout.count("test accuracy") == 1  # ... and the test split is used once, at the end
    assert float(trained.stdout.split("best model: test accuracy ")[1].split("%")[0]) > 50


def run_main_eject(run_path: Path, script: Path) -> int:
    from visiontrain.cli import main

    return main(["eject", str(run_path), "-o", str(script)])


@pytest.fixture(scope="module")
def one_to_ten(tmp_path_factory):
    """Real digits in class folders named 1..10 (digit d in folder d+1): natural order '2' before '10', where a text
    sort (ImageFolder's) puts '10' second."""
    digits = write_digits_folder(tmp_path_factory.mktemp("digits"), 300, 60)
    root = tmp_path_factory.mktemp("one-to-ten")
    for split in ("train", "test"):
        for folder in (digits / split).iterdir():
            folder.rename(root / split / str(int(folder.name) + 1)) if (root / split).is_dir() else (
                (root / split).mkdir(), folder.rename(root / split / str(int(folder.name) + 1)))
    return root


def test_an_image_folder_run_ejects_with_its_class_order_and_its_files(one_to_ten, tmp_path):
    run = visiontrain.train(dataset=str(one_to_ten), model="simple-cnn", epochs=1, batch_size=32, progress="none",
                            report=False, runs_dir=str(tmp_path / "runs"))
    assert run.summary["dataset"]["classes"] == [str(n) for n in range(1, 11)]
    script = tmp_path / "out" / "train_plain.py"
    script.parent.mkdir()
    assert run_main_eject(run.path, script) == 0
    ejected = script_module(script)
    assert ejected["CLASSES"] == [str(n) for n in range(1, 11)]
    train, val, test = ejected["make_datasets"](ejected["train_transform"], ejected["test_transform"])
    assert (len(train), len(val), len(test)) == (270, 30, 60)
    split_rows = (run.path / "split.csv").read_text().splitlines()[1:]
    run_val = sorted(row.split(",")[0] for row in split_rows if row.split(",")[2] == "val")
    assert sorted(str(Path(p).relative_to(one_to_ten)) for p, _ in val.items) == run_val  # the run's own split
    for items in (train.items, val.items, test.items):  # each image's label names its class folder, as in the run
        assert all(ejected["CLASSES"][label] == Path(path).parent.name for path, label in items)
    trained = run_offline(script, "--epochs", "1")
    assert trained.returncode == 0, trained.stderr[-2000:]
    assert "best model: test accuracy" in trained.stdout and "        10 " in trained.stdout


def test_nothing_from_a_folder_or_class_name_runs_when_the_script_does(tmp_path):
    """A dataset folder and class folders named with quotes and code: the script holds them as strings."""
    payload = '"""+__import__("os").system("touch PWNED")+"""'
    digits = write_digits_folder(tmp_path / "digits", 40, 0)
    root = tmp_path / f"data{payload}"
    root.mkdir()
    for index, folder in enumerate(sorted((digits / "train").iterdir())[:2]):
        folder.rename(root / (f"class{payload}" if index else "it's"))
    run = visiontrain.train(dataset=str(root), model="mlp", epochs=1, batch_size=8, progress="none", report=False,
                            runs_dir=str(tmp_path / "runs"))
    script = tmp_path / "train_plain.py"
    assert run_main_eject(run.path, script) == 0
    text = script.read_text()
    ast.parse(text)
    classes = next(node.value for node in ast.parse(text).body if isinstance(node, ast.Assign)
                   and getattr(node.targets[0], "id", "") == "CLASSES")
    assert ast.literal_eval(classes) == run.summary["dataset"]["classes"]
    result = subprocess.run([sys.executable, "-I", str(script), "--help"], capture_output=True, text=True,
                            cwd=tmp_path, timeout=120)
    assert result.returncode == 0, result.stderr
    assert not (tmp_path / "PWNED").exists() and not list(tmp_path.rglob("PWNED"))


def test_eject_never_writes_over_a_file_it_did_not_write(tmp_path, capsys):
    digits = write_digits_folder(tmp_path / "digits", 60, 20)
    run = visiontrain.train(dataset=str(digits), model="mlp", epochs=1, batch_size=16, progress="none", report=False,
                            runs_dir=str(tmp_path / "runs"))
    precious = tmp_path / "notes.py"
    precious.write_text("my own work\n")
    result = run_main(capsys, "eject", run.path, "-o", precious)
    assert result.returncode == 2 and precious.read_text() == "my own work\n"
    assert result.stderr.strip() == (f"visiontrain: error: eject -o {precious}: the file exists and was not written "
                                     "by eject; choose another name")
    script = tmp_path / "plain.py"
    assert run_main(capsys, "eject", run.path, "-o", script).returncode == 0
    assert run_main(capsys, "eject", run.path, "-o", script).returncode == 0  # its own script: replaced
