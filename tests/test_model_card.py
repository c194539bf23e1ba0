"""Every export bundle carries a README.md model card made from its model.json: the classes, the data, the metrics,
the preprocessing, the limits and three lines that load it. Read as GitHub would read it: rendered by a CommonMark
renderer (markdown-it-py, which passes raw HTML through as GitHub's renderer does before sanitising), so a class
folder named `<script>` or `a|b` must arrive as text in its own table cell."""
from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
import torch
from markdown_it import MarkdownIt
from realdata import digits_slice, write_digits_folder, write_png_folder

import visiontrain
from visiontrain.export import EXPORTERS, export_run
from visiontrain.export.card import model_card

pytestmark = pytest.mark.usefixtures("shared_cache")  # one dataset cache per module (conftest.py)

TINY = {"epochs": 1, "batch_size": 32, "optimizer": "adam", "lr": 2e-3, "augment": "none", "threads": 1,
        "progress": "none", "report": False}
HOSTILE = ["<script>alert(1)</script>", "<img src=x onerror=alert(1)>", "a|b", "`tick`", "[x](javascript:alert(1))",
           "*star* _under_", "back\\slash", "#hash", "&amp; sign", "$x$ ~~gone~~"]
HOSTILE_FOLDERS = [name.replace("/", "\u2215") for name in HOSTILE]  # '/' cannot be in a folder name: U+2215 looks it


def render(markdown: str) -> str:
    return MarkdownIt("commonmark").enable("table").render(markdown)


class Tables(HTMLParser):
    """The text of every cell of every <table>, and every element name the page holds."""

    def __init__(self, page: str):
        super().__init__(convert_charrefs=True)
        self.tables: list[list[list[str]]] = []
        self.tags: set[str] = set()
        self.in_cell = False
        self.feed(page)

    def handle_starttag(self, tag, attrs):  # noqa: ANN001
        self.tags.add(tag)
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self.tables[-1][-1].append("")
            self.in_cell = True

    def handle_endtag(self, tag):  # noqa: ANN001
        self.in_cell = self.in_cell and tag not in ("td", "th")

    def handle_data(self, data):  # noqa: ANN001
        if self.in_cell:
            self.tables[-1][-1][-1] += data


def class_column(tables: Tables) -> list[str]:
    table = next(t for t in tables.tables if t[0][:2] == ["index", "class"])
    return [row[1] for row in table[1:]]


def python_blocks(markdown: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)\n```$", markdown, flags=re.S | re.M)


@pytest.fixture(scope="module")
def digit_run(tmp_path_factory, module_home) -> Path:
    folder = tmp_path_factory.mktemp("card-run")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("VISIONTRAIN_HOME", str(module_home))
        data = write_digits_folder(folder / "digits", 300, 100)
        return visiontrain.train(dataset=str(data), model="lenet", runs_dir=str(folder / "runs"), name="lenet",
                                 **TINY).path


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:FutureWarning")  # the card's TorchScript lines
@pytest.mark.parametrize("fmt", EXPORTERS.names())
def test_every_bundle_has_a_model_card_with_its_classes_metrics_and_three_lines_that_load_it(digit_run, fmt, tmp_path,
                                                                                            monkeypatch):
    bundle = export_run(digit_run, fmt, tmp_path / fmt)
    meta = json.loads((bundle / "model.json").read_text())
    card = (bundle / "README.md").read_text()
    tables = Tables(render(card))
    assert class_column(tables) == meta["classes"]
    evaluation = meta["evaluation"]
    assert f"{meta['metrics']['test_acc']:.2%} on {evaluation['n']} images" in card
    assert evaluation["accuracy"] == meta["metrics"]["test_acc"] and f"{evaluation['ece']:.4f}" in card
    recalls = [row[3] for row in next(t for t in tables.tables if t[0][:2] == ["index", "class"])[1:]]
    assert recalls == [f"{row['recall']:.2%}" for row in evaluation["per_class"]]  # per class, in class order
    assert meta["dataset"]["fingerprint"] in card and f"train {meta['dataset']['train']}" in card
    for words in ("## Intended use and limits", "cannot say \"none of these\"", meta["versions"]["torch"],
                  "float32 (N, 1, 28, 28)", "## Preprocessing", "max side"):
        assert words in card, words
    # the first Python block runs as written in the bundle folder and gives the model's logits
    predictor = visiontrain.load(digit_run)
    files = sorted(Path(meta["config"]["dataset"], "test").rglob("*.png"))[::25]
    images = np.stack([predictor._decode(f).numpy() for f in files])
    first = python_blocks(card)[0]
    assert len(first.splitlines()) == 3
    scope = {"images": images.astype(np.float32)}
    monkeypatch.chdir(bundle)  # as the card says: run in the bundle folder
    code = first.replace("path/to/this/folder", str(bundle)).replace("image.png", str(files[0]))
    exec(code, scope)  # noqa: S102 - the card's own code, as a user would paste it
    if "logits" in scope:
        logits = np.asarray(scope["logits"])
        assert np.abs(logits - predictor.logits(torch.from_numpy(images)).numpy()).max() <= 1e-4
    else:  # visiontrain's load_bundle: the printed predictions; check it loaded the bundle
        assert scope["predictor"].format == fmt


def test_hostile_class_names_stay_text_in_their_own_cells(tmp_path):
    data = write_png_folder(tmp_path / "data", digits_slice(200, 60), HOSTILE_FOLDERS)
    run = visiontrain.train(dataset=str(data), model="mlp", runs_dir=str(tmp_path / "runs"), name="h", **TINY)
    card = (export_run(run.path, "onnx") / "README.md").read_text()
    page = render(card)
    tables = Tables(page)
    assert sorted(class_column(tables)) == sorted(HOSTILE_FOLDERS)  # one cell each, as written
    assert not tables.tags & {"script", "img", "a", "del", "s"}  # no markup, link or strike-through from a name
    assert "<script" not in page and "<img" not in page and "&lt;script&gt;" in page


def test_a_card_of_a_hostile_model_json_without_metrics_is_text_and_says_what_is_missing():
    meta = {"format": "onnx", "model_file": "model.onnx", "model": "mlp", "classes": HOSTILE, "input_size": [3, 32, 32],
            "mean": [0.5] * 3, "std": [0.25] * 3, "allow_flip": False,
            "dataset": {"name": "<b>bold</b>|x", "fingerprint": None},
            "config": {"dataset": "/data/<iframe>", "lr": "<script>1</script>", "augment": "`x`"},
            "decode_policy": {"window": "<svg onload=alert(1)>"}, "versions": {"torch": "<i>2</i>"}}
    card = model_card(meta)
    page = render(card)
    assert not re.search(r"<(script|img|iframe|svg|b|i|a)[ >]", page)
    assert "No metrics were recorded" in card and "Mirrored images change meaning" in card
    assert sorted(class_column(Tables(page))) == sorted(HOSTILE)
    assert "onnxruntime.InferenceSession('model.onnx'" in card
