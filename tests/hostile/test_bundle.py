"""A hand-edited model.json: every field of the wrong type or out of bounds is one sentence naming model.json and the
field, when the bundle is loaded (predict), never an internal error later; the decode limits are bounded whatever
the file says (they are outside the model file's checksum)."""
from __future__ import annotations

import json
import shutil

import pytest

from .verbs import main, refused

EDITS = {
    "decode_policy": [{"max_pixels": "64000000"}, {"max_pixels": 10**15}, {"max_pixels": 0}, {"max_side": 1e9},
                      {"exif_transpose": "no"}, {"window": 40}, {"window": "soft"}, "all", [1, 2]],
    "input_size": [[1, 100000, 100000], [1, 28], [1, 28, 32], ["1", 28, 28], [2, 28, 28], [True, 28, 28]],
    "mean": [[float("nan")], ["0.5"], [True], []],
    "std": [[0], [-1], [float("inf")]],
    "classes": [["a", 1], [], ["a", "a"], ["\ud800", "b"], "ab"],
    "config": ["tta", {"tta": "false"}],
    "allow_flip": ["yes"],
    "num_classes": ["2", 3],
    "model_file": ["../model.onnx", 5],
}


@pytest.fixture(scope="module")
def bundle(clean_run, tmp_path_factory):
    from visiontrain.export import export_run

    return export_run(clean_run, "onnx", tmp_path_factory.mktemp("bundle") / "onnx")


@pytest.mark.parametrize("field, value", [(field, value) for field, values in EDITS.items() for value in values])
def test_an_edited_model_json_field_is_one_sentence_naming_it(bundle, clean_root, tmp_path, capsys, field, value):
    edited = shutil.copytree(bundle, tmp_path / "edited")
    meta = json.loads((edited / "model.json").read_text())
    if field == "decode_policy" and isinstance(value, dict):
        value = meta[field] | value
    meta[field] = value
    (edited / "model.json").write_text(json.dumps(meta))  # NaN and inf as JSON allows them (Python's json writes them)
    sentence = refused(main(capsys, "predict", edited, clean_root / "cat" / "img0.png"), "model.json")
    assert field in sentence  # model_file too (its old alternative, 'or it names model.onnx', was never needed)


def test_the_unedited_bundle_predicts(bundle, clean_root, capsys):
    result = main(capsys, "predict", bundle, clean_root / "cat", "--format", "json")
    assert result.returncode == 0 and len(json.loads(result.stdout)) == 6
