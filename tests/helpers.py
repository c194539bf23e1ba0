"""What several test modules share that is neither a fixture nor test data: the models and export formats to test (read
from the registries), the fault-injection drivers, the tiny training command of the resume tests, the bit-identical
resume oracle, the HTML page reader of the report tests and headless Chromium. (Fixtures and run_cli/run_main live in conftest.py, real data in realdata.py; a test module never
imports another test module, so each can be run, moved or deleted alone.)"""
from __future__ import annotations

import base64
import html
import importlib.util
import json
import re
import os
import subprocess
import sys
import time
from html.parser import HTMLParser
from pathlib import Path

import pytest
import torch

DRIVERS = Path(__file__).parent / "drivers"  # scripts that run the CLI with a fault injected from outside the product
CHROMIUM = Path("/usr/bin/chromium")


# -- what the registries hold ------------------------------------------------------------------------------------
TORCHVISION_SAMPLE = ["resnet18", "mobilenet_v3_small", "efficientnet_b0"]  # of ~80: residual, depthwise, SE blocks


WRAPPERS = ("visiontrain.models.zoo", "visiontrain.models.pretrained")  # modules registering others' architectures


def _builder_module(name: str) -> str:
    from visiontrain._registry import MODELS

    return MODELS.get(name).__module__


def package_models() -> list[str]:
    """Every model visiontrain registers by name itself, read from the registry so that a newly registered one is
    tested without anyone adding it to a list: all but torchvision's ~80 (registered by models/zoo.py's lazy
    loader; tests take TORCHVISION_SAMPLE of them) and timm's (`timm/<name>`, looked up, never listed)."""
    from visiontrain._registry import MODELS

    return [name for name in MODELS.names() if _builder_module(name) != "visiontrain.models.zoo"]


def own_models() -> list[str]:
    """The package's models whose architecture visiontrain defines (the tutorial networks, the fastnet family and
    any added since): package_models() less those built from another library (models/pretrained.py's
    efficientnet_lite0 is timm's)."""
    return [name for name in package_models() if _builder_module(name) not in WRAPPERS]


def model_param(name: str, *marks) -> object:
    """`name` as a pytest parameter, skipped where the optional package it is built from is missing (a model
    registered by models/pretrained.py is timm's)."""
    if _builder_module(name) == "visiontrain.models.pretrained" and importlib.util.find_spec("timm") is None:
        marks = (*marks, pytest.mark.skip(reason=f"{name} needs timm (pip install 'visiontrain[pretrained]')"))
    return pytest.param(name, marks=marks, id=name)


def export_formats() -> list[str]:
    from visiontrain._registry import EXPORTERS

    return EXPORTERS.names()


# -- training runs and resume -------------------------------------------------------------------------------------
def tiny_args(folder, runs, name, epochs=3, extra=()) -> list[str]:
    """`visiontrain train` of simple-cnn on `folder` with everything a resume must restore switched on (Adam state,
    random crops, EMA) and a step checkpoint every 7 steps."""
    return ["train", "--dataset", str(folder), "--model", "simple-cnn", "--epochs", str(epochs), "--batch-size", "32",
            "--optimizer", "adam", "--lr", "0.002", "--threads", "1", "--runs-dir", str(runs), "--name", name,
            "--checkpoint-every", "7", "--progress", "none", "--augment", "crop", "--ema", "0.9", *extra]


def final_state(run: Path) -> dict:
    return torch.load(run / "checkpoints" / "last.pt", weights_only=True)


def run_status(run: Path) -> dict:
    """The run's status.json (written with each checkpoint); {} while there is none or it is being replaced."""
    try:
        return json.loads((run / "status.json").read_text())
    except (OSError, ValueError):
        return {}


def _assert_same_tensors(first: dict | None, second: dict | None, part: str) -> None:
    assert (first is None) == (second is None), part
    if first is not None:
        assert first.keys() == second.keys(), part
        assert all(torch.equal(first[k], second[k]) for k in first), part


def assert_bit_identical(run: Path, reference: Path) -> None:
    """The two runs' last checkpoints hold the same weights, EMA, lookahead and optimiser state, bit for bit, and
    the same metrics rows (full precision, in the checkpoint and in metrics.csv) apart from the wall seconds."""
    first, second = final_state(run), final_state(reference)
    for part in ("model", "ema", "lookahead"):
        _assert_same_tensors(first.get(part), second.get(part), part)
    assert first["optimizer"]["state"].keys() == second["optimizer"]["state"].keys()
    for k, state in second["optimizer"]["state"].items():
        assert state.keys() == first["optimizer"]["state"][k].keys(), k
        for name, tensor in state.items():
            assert torch.equal(first["optimizer"]["state"][k][name], tensor), (k, name)
    drop = lambda rows: [{k: v for k, v in row.items() if k != "seconds"} for row in rows]  # noqa: E731
    assert drop(first["state"]["rows"]) == drop(second["state"]["rows"])
    strip = lambda p: [",".join(l.split(",")[:1] + l.split(",")[2:]) for l in (p / "metrics.csv").read_text().splitlines()]  # noqa: E731,E741
    assert strip(run) == strip(reference)


# -- HTML pages -----------------------------------------------------------------------------------------------------
class Page(HTMLParser):
    """The tags (with attributes) of an HTML page and the cell texts of its tables, by table id."""

    def __init__(self, text: str):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.tables: dict[str, list[list[str]]] = {}
        self._table = self._row = self._cell = None
        self.text = html.unescape(text)  # what a reader sees: "->" rather than "-&gt;"
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.append((tag, attrs))
        if tag == "table":
            self._table = self.tables.setdefault(attrs.get("id") or f"table-{len(self.tables)}", [])
        elif tag == "tr" and self._table is not None:
            self._row = []
            self._table.append(self._row)
        elif tag in ("td", "th") and self._row is not None:
            self._cell = []

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self._row.append("".join(self._cell).strip())
            self._cell = None
        elif tag == "table":
            self._table = self._row = None

    def column(self, table_id: str, index: int = 0) -> list[str]:
        return [row[index] for row in self.tables[table_id][1:]]

    def row(self, table_id: str, label: str) -> list[str]:
        return next(row[1:] for row in self.tables[table_id] if row[0] == label)


def embedded_images(page: Page) -> list[bytes]:
    """The PNG bytes of every <img> of the page, which must all be embedded data: URIs (nothing fetched)."""
    prefix = "data:image/png;base64,"
    sources = [attrs.get("src", "") for tag, attrs in page.tags if tag == "img"]
    assert all(src.startswith(prefix) for src in sources), [s[:40] for s in sources]
    return [base64.b64decode(src[len(prefix):], validate=True) for src in sources]


# -- headless Chromium ----------------------------------------------------------------------------------------------
def chromium(*args: str, profile: Path) -> subprocess.CompletedProcess:
    """Headless Chromium, offline and with a profile of its own, on ARGS (a --screenshot or --dump-dom and a URL)."""
    return subprocess.run([str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu",
                           "--disable-background-networking", "--disable-component-update", "--disable-sync",
                           "--no-first-run", f"--user-data-dir={profile}", *args],
                          capture_output=True, text=True, errors="replace", timeout=120)


_PROBE = ("<script>window.onerror = () => { document.title = 'SCRIPT ERROR'; };"
          "window.addEventListener('load', () => { const broken = [...document.images].filter("
          "i => !(i.complete && i.naturalWidth > 0)); document.title = broken.length ? 'BROKEN ' + broken.length"
          " : 'IMAGES OK ' + document.images.length; });</script>")


def browser_verdict(page: Path, tmp_path: Path) -> str:
    """Open the page in headless Chromium with a probe that reports broken images and script errors: 'IMAGES OK N',
    'BROKEN N' or 'SCRIPT ERROR'."""
    probe = tmp_path / f"probe-{page.name}"
    probe.write_text(page.read_text().replace("</body>", _PROBE + "</body>"))
    result = chromium("--virtual-time-budget=5000", "--dump-dom", probe.resolve().as_uri(),
                      profile=tmp_path / "profile2")
    match = re.search(r"<title>(.*?)</title>", result.stdout)
    return match.group(1) if match else f"no title in the DOM: {result.stderr[-500:]}"


def wait_for(predicate, process, timeout=120.0) -> bool:
    """Poll `predicate` until it holds (True) or `process` ends first or the time runs out (False)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        if process.poll() is not None:
            return False
        time.sleep(0.02)
    return False


def run_example(script: str, tmp_path, *args: str, mnist_idx=None) -> str:
    """`python examples/SCRIPT --quick ...` as a user runs it; with `mnist_idx`, through the driver that gives the
    named `mnist` scikit-learn's digits (tests/drivers/with_mnist_stand_in.py: real MNIST is not in a clone)."""
    repo = Path(__file__).resolve().parent.parent
    env = os.environ | {"PYTHONPATH": str(repo)}  # VISIONTRAIN_HOME is the test's own (conftest.isolated_home)
    driver = [str(DRIVERS / "with_mnist_stand_in.py"), str(mnist_idx)] if mnist_idx else []
    result = subprocess.run([sys.executable, *driver, str(repo / "examples" / script), "--quick", "--runs-dir",
                             str(tmp_path / "runs"), *args], capture_output=True, text=True, cwd=tmp_path, env=env,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def reference_and_resumed(train_fields, runs: Path, home: Path, stop_at: int, stopped_at: str):
    """(reference, resumed): a run trained through, and the same run stopped by SIGTERM at global step `stop_at`
    (the message says `stopped_at`, e.g. "epoch 2, step 3") and resumed; `train_fields(name)` gives visiontrain.train's
    keywords for a run named `name` under `runs`. The resume tests compare the two bit for bit."""
    import signal

    import visiontrain
    from visiontrain.errors import TrainingStopped
    from visiontrain.fit import Fit

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("VISIONTRAIN_HOME", str(home))
        reference = visiontrain.train(**train_fields("reference"))
        original = Fit.after_step

        def stop_there(self, state, epoch, step):
            if state.global_step == stop_at:
                self.stop_signal = signal.SIGTERM
            original(self, state, epoch, step)

        patch.setattr(Fit, "after_step", stop_there)
        with pytest.raises(TrainingStopped, match=f"stopped by SIGTERM at {stopped_at}"):
            visiontrain.train(**train_fields("stopped"))
        patch.setattr(Fit, "after_step", original)
        return reference, visiontrain.train(resume=runs / "stopped")
