"""The ImageNet layout (train/<wnid>/*.JPEG + val/<wnid>/*.JPEG) as is, and --class-names: display names for folders."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import visiontrain
from conftest import run_cli, run_main
from visiontrain.config import RESUME_UNSAFE_FIELDS, ConfigError, build_config, load_yaml, to_yaml
from visiontrain.data import load_dataset
from visiontrain.data.classnames import display_names, read_class_names
from visiontrain.data.splitfile import read_split_file
from visiontrain.errors import DataError

TENCH, CRANE_BIRD, CRANE_MACHINE = "n01440764", "n02012849", "n03126707"
WNIDS = (TENCH, CRANE_BIRD, CRANE_MACHINE)
NAMED = ["tench", f"crane ({CRANE_BIRD})", f"crane ({CRANE_MACHINE})"]
LOC = (f"{TENCH} tench, Tinca tinca\n"
       "n01443537 goldfish, Carassius auratus\n"
       f"{CRANE_BIRD} crane\n"
       f"{CRANE_MACHINE} crane\n"
       "n03710637 maillot\n")
FAST = ["--model", "mlp", "--epochs", "1", "--batch-size", "8", "--threads", "1", "--progress", "none", "--no-report",
        "--device", "cpu"]


def write_imagenet(root: Path, wnids=WNIDS, train: int = 8, val: int = 4) -> Path:
    """ImageNet's layout: train/<wnid>/<wnid>_<n>.JPEG and val/<wnid>/ILSVRC2012_val_<n>.JPEG (uppercase suffix)."""
    rng = np.random.default_rng(0)
    number = 0
    for index, wnid in enumerate(wnids):
        for split, count in (("train", train), ("val", val)):
            folder = root / split / wnid
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                number += 1
                pixels = np.clip(rng.normal(60 + 70 * index, 20, (20, 24, 3)), 0, 255).astype(np.uint8)
                name = f"{wnid}_{i}.JPEG" if split == "train" else f"ILSVRC2012_val_{number:08d}.JPEG"
                Image.fromarray(pixels).save(folder / name, format="JPEG", quality=90)
    return root


@pytest.fixture(scope="module")
def imagenet(tmp_path_factory) -> Path:
    return write_imagenet(tmp_path_factory.mktemp("imagenet"))


@pytest.fixture(scope="module")
def loc_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("names") / "LOC_synset_mapping.txt"
    path.write_text(LOC)
    return path


@pytest.fixture(scope="module")
def named_run(imagenet, loc_file, tmp_path_factory) -> tuple[Path, dict]:
    """One CLI training run with --class-names (its own cache: module fixtures run before the per-test home)."""
    work = tmp_path_factory.mktemp("work")
    result = run_cli("train", "--dataset", imagenet, "--class-names", loc_file, "--runs-dir", work / "runs",
                     "--name", "named", *FAST, env={"VISIONTRAIN_HOME": str(work / "home")})
    assert result.returncode == 0, result.stderr
    run = work / "runs" / "named"
    return run, {"VISIONTRAIN_HOME": str(work / "home")}


def test_the_imagenet_layout_works_as_is(imagenet):
    data = load_dataset(str(imagenet))
    assert data.classes == list(WNIDS) and data.class_folders is None
    assert (len(data.train), len(data.val), data.test) == (24, 12, None)
    assert data.val_source == "dataset"  # val/ is the validation split; nothing carved from train
    assert all(source.endswith(".JPEG") for source in data.train.sources + data.val.sources)
    index = data.val.sources.index(str(imagenet / "val" / CRANE_BIRD / "ILSVRC2012_val_00000021.JPEG"))
    assert data.val.classes[int(data.val.labels[index])] == CRANE_BIRD


def test_display_names_replace_folder_names_after_the_splits_are_built(imagenet, loc_file):
    data = load_dataset(str(imagenet), class_names=loc_file)
    assert data.classes == NAMED and data.train.classes == NAMED and data.val.classes == NAMED
    assert data.class_folders == list(WNIDS)
    plain = load_dataset(str(imagenet))
    assert data.fingerprint == plain.fingerprint  # the cache and the data are the folder's; only the names differ
    assert data.train.labels.tolist() == plain.train.labels.tolist()


def test_a_cli_run_shows_the_names_in_summary_eval_and_predict(named_run, imagenet, loc_file, capsys, monkeypatch):
    run, env = named_run
    monkeypatch.setenv("VISIONTRAIN_HOME", env["VISIONTRAIN_HOME"])  # eval and predict in this process, the run's cache
    summary = json.loads((run / "summary.json").read_text())
    assert summary["dataset"]["classes"] == NAMED  # in wnid order, the two cranes told apart
    assert load_yaml(run / "config.yaml")["class_names"] == str(loc_file)

    result = run_main(capsys, "eval", run, "--split", "val")  # rebuilds the dataset from config.yaml: same names
    assert result.returncode == 0, result.stderr
    with open(run / "eval" / "val" / "predictions.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 12 and {row["true"] for row in rows} == set(NAMED)
    assert {row["predicted"] for row in rows} <= set(NAMED)
    assert "crane (n03126707)" in result.stdout

    image = imagenet / "val" / TENCH / "ILSVRC2012_val_00000009.JPEG"
    result = run_main(capsys, "predict", run, image, "--top-k", "3", "--format", "csv")
    assert result.returncode == 0, result.stderr
    assert "tench" in result.stdout and f"crane ({CRANE_BIRD})" in result.stdout
    assert TENCH not in result.stdout.replace(str(image), "")  # the folder name appears only in the image path


def test_without_class_names_the_classes_are_the_wnids(imagenet, tmp_path):
    run = visiontrain.train(dataset=str(imagenet), model="mlp", epochs=1, batch_size=8, threads=1, progress="none",
                            report=False, device="cpu", runs_dir=str(tmp_path), name="plain")
    assert run.summary["dataset"]["classes"] == list(WNIDS)


def test_a_carved_split_file_keeps_folder_names_and_eval_reuses_it(imagenet, loc_file, tmp_path):
    import shutil

    train_only = tmp_path / "train-only"
    shutil.copytree(imagenet / "train", train_only / "train")
    run = visiontrain.train(dataset=str(train_only), class_names=str(loc_file), model="mlp", epochs=1, batch_size=8,
                            threads=1, progress="none", report=False, device="cpu", runs_dir=str(tmp_path / "runs"),
                            name="carved")
    assert run.summary["dataset"]["val_source"] == "train"
    assert {row["class"] for row in read_split_file(run.path / "split.csv")} == set(WNIDS)  # matched by folder
    metrics = visiontrain.evaluate(run.path, split="val")  # the run's split.csv, matched by folder, then renamed
    assert [row["class"] for row in metrics["per_class"]] == NAMED


@pytest.mark.parametrize("name, text", [
    ("LOC_synset_mapping.txt", LOC),
    ("names.tsv", f"{TENCH}\ttench\n{CRANE_BIRD}\tcrane\n{CRANE_MACHINE}\tcrane\n"),
    ("names.txt", f"# folder<TAB>name\n{TENCH}\ttench\n\n{CRANE_BIRD}\tcrane\n{CRANE_MACHINE}\tcrane\n"),
    ("names.csv", f"{TENCH},tench\n{CRANE_BIRD},crane\n{CRANE_MACHINE},\"crane\"\n"),
    ("names.txt", f"{TENCH}, tench\n{CRANE_BIRD}, crane\n{CRANE_MACHINE}, crane\n"),
    ("names.json", json.dumps({TENCH: "tench", CRANE_BIRD: "crane", CRANE_MACHINE: "crane"})),
    ("imagenet_class_index.json", json.dumps({"0": [TENCH, "tench"], "1": ["n01443537", "goldfish"],
                                              "134": [CRANE_BIRD, "crane"], "517": [CRANE_MACHINE, "crane"]})),
])
def test_every_format_parses(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    mapping = read_class_names(path)
    assert {key: mapping[key] for key in WNIDS} == {TENCH: "tench", CRANE_BIRD: "crane", CRANE_MACHINE: "crane"}
    assert display_names(list(WNIDS), mapping, path) == (NAMED, [])


def test_folders_missing_from_the_file_keep_their_name_with_one_warning(tmp_path):
    path = tmp_path / "names.json"
    path.write_text(json.dumps({TENCH: "tench"}))
    folders = [TENCH] + [f"n0{i:07d}" for i in range(7)]
    names, warnings = display_names(folders, read_class_names(path), path)
    assert names == ["tench", *folders[1:]]
    assert len(warnings) == 1 and warnings[0].startswith("7 of 8 class folder(s) are not in the class names file")
    assert "n00000000" in warnings[0] and "and 2 more" in warnings[0]


@pytest.mark.parametrize("name, text, words", [
    ("LOC_synset_mapping.txt", f"{TENCH} tench, Tinca tinca\n{CRANE_BIRD}\n", ["line 2", "a folder name, a space"]),
    ("names.csv", f"{TENCH},tench\n{CRANE_BIRD},crane,extra\n", ["line 2", "two columns", "found 3"]),
    ("names.tsv", f"{TENCH}\ttench\n\n{TENCH}\ttinca\n", ["line 3", "named again (first on line 1)"]),
    ("names.json", '{"n01440764": "tench",\n "n02012849": }', ["line 2", "not valid JSON"]),
    ("names.json", '{"n01440764": "tench",\n "n02012849": 7}', ["line 2", "'n02012849'", "[folder, name]"]),
    ("names.json", '["tench", "crane"]', ["line 1", "JSON object"]),
    ("names.txt", "", ["maps no class"]),
])
def test_a_malformed_file_is_one_sentence_naming_file_and_line(tmp_path, name, text, words):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(DataError) as error:
        read_class_names(path)
    message = str(error.value)
    assert message.startswith(f"the class names file {path}") and "\n" not in message
    for word in words:
        assert word in message


def test_a_malformed_file_stops_the_cli_before_decoding(imagenet, tmp_path, capsys, monkeypatch):
    bad = tmp_path / "LOC_synset_mapping.txt"
    bad.write_bytes(f"{TENCH} tench\n{CRANE_BIRD} \xe9crane\n".encode("latin-1"))
    monkeypatch.setenv("VISIONTRAIN_HOME", str(tmp_path / "home"))
    result = run_main(capsys, "train", "--dataset", imagenet, "--class-names", bad, "--runs-dir", tmp_path / "runs",
                      *FAST)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (f"visiontrain: error: the class names file {bad}, line 2: "
                                                      "not UTF-8 text; save it as UTF-8")  # after the run's first line
    assert not (tmp_path / "home" / "cache").exists() and not (tmp_path / "runs").exists()  # nothing was decoded


def test_a_missing_file_is_a_config_error(imagenet, tmp_path, capsys):
    missing = tmp_path / "no_such_mapping.txt"
    result = run_main(capsys, "train", "--dataset", imagenet, "--class-names", missing, "--runs-dir", tmp_path / "runs",
                      *FAST)
    assert result.returncode == 2
    assert result.stderr.strip() == f"visiontrain: error: class_names: the file {str(missing)!r} does not exist"
    with pytest.raises(ConfigError, match="is a folder"):
        build_config({"class_names": str(tmp_path)})


def test_the_field_round_trips_and_is_resume_unsafe(tmp_path, imagenet, loc_file):
    config = build_config({"dataset": str(imagenet), "model": "mlp", "class_names": str(loc_file)})
    path = tmp_path / "config.yaml"
    path.write_text(to_yaml(config))
    assert build_config(load_yaml(path), apply_preset=False) == config
    assert "class_names" in RESUME_UNSAFE_FIELDS


def test_a_flat_val_folder_is_named_not_silently_replaced_by_a_carved_split(tmp_path):
    """ILSVRC2012's val archive unpacks flat; training would otherwise hold out part of train without a word."""
    from PIL import Image

    from visiontrain.data import load_dataset
    from visiontrain.errors import DataError

    for split, folders in (("train", ("n01", "n02")), ("val", ("",))):
        for folder in folders:
            (tmp_path / split / folder).mkdir(parents=True, exist_ok=True)
            for i in range(4):
                Image.new("RGB", (8, 8), (60 * i, 0, 0)).save(tmp_path / split / folder / f"{folder or 'v'}{i}.JPEG")
    with pytest.raises(DataError, match=r"holds 4 images but no class folders; sort them into .*val/<class>/"):
        load_dataset(str(tmp_path), verbose=False)
