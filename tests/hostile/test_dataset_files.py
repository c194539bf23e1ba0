"""Dataset files made or edited by hand: an extracted CIFAR folder with bad labels, a class-names file holding a lone
surrogate or giving two classes one name. Each is a result or one sentence naming the file."""
from __future__ import annotations

import json
import pickle

import numpy as np
import pytest

from .verbs import QUICK, main, refused


def cifar_folder(root, labels=None, data=None, names=None):
    """An extracted cifar-10-batches-py/ of 20 images per batch; `labels`/`data` replace data_batch_1's."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": names or [f"c{i}" for i in range(10)]}))
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {"data": rng.integers(0, 256, (20, 3072), dtype=np.uint8), "labels": list(range(10)) * 2}
        if name == "data_batch_1":
            batch = batch | {k: v for k, v in (("labels", labels), ("data", data)) if v is not None}
        (folder / name).write_bytes(pickle.dumps(batch))
    return root


@pytest.mark.parametrize("edit, expected", [
    ({"labels": [10] * 20}, "labels from 10 to 10"),
    ({"labels": [-1] + [0] * 19}, "labels from -1"),
    ({"labels": ["cat"] * 20}, "not whole numbers"),
    ({"labels": [0.5] * 20}, "not whole numbers"),
    ({"data": np.full((20, 3072), 300, dtype=np.int64)}, "0 to 255"),
    ({"names": [1, 2, 3]}, "no list of class names"),
])
def test_an_extracted_cifar_folder_with_bad_values_is_refused_naming_the_file(tmp_path, capsys, edit, expected):
    root = cifar_folder(tmp_path / "d", **edit)
    sentence = refused(main(capsys, "data", "cifar10", "--data-dir", root, "-o", tmp_path / "p.html"))
    assert "cifar-10-batches-py" in sentence and expected in sentence


def test_a_class_names_file_with_a_lone_surrogate_is_refused_naming_it(clean_root, tmp_path, capsys):
    names = tmp_path / "names.json"
    names.write_text('{"cat": "\\ud800", "dog": "hound"}')  # valid JSON, but the escape is no character
    result = main(capsys, "train", "--dataset", clean_root, *QUICK, "--class-names", names, "--runs-dir", tmp_path)
    assert "lone surrogate" in refused(result, str(names)) and not (tmp_path / "runs").exists()


@pytest.mark.parametrize("content", ["cat,x\ndog,x\n", "cat,dog\ndog,cat\n", "cat,dog\n"])
def test_classes_given_the_same_display_name_stay_distinct_in_every_verb(clean_root, tmp_path, capsys, content):
    names = tmp_path / "names.csv"
    names.write_text(content)
    trained = main(capsys, "train", "--dataset", clean_root, *QUICK, "--class-names", names, "--runs-dir", tmp_path,
                   "--name", "r")
    assert trained.returncode == 0, trained.stderr
    classes = json.loads((tmp_path / "r" / "summary.json").read_text())["dataset"]["classes"]
    assert len(set(classes)) == 2
    assert main(capsys, "eval", tmp_path / "r", "--split", "val").returncode == 0
    assert main(capsys, "export", tmp_path / "r", "-o", tmp_path / "b").returncode == 0
    predicted = main(capsys, "predict", tmp_path / "b", clean_root / "cat", "--format", "json")
    assert predicted.returncode == 0 and {p["class"] for p in json.loads(predicted.stdout)[0]["top"]} == set(classes)
