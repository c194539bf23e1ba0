"""The documented standalone ONNX inference (docs/predict-export.md: onnxruntime, numpy and Pillow only) gives what
`visiontrain predict` gives, on every kind of file the decode policy handles: run as written, without torch."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import visiontrain
from conftest import REPO
from realdata import photo_crops, write_digits_folder, write_photo_folder
from visiontrain.predict import predict_paths

pytest.importorskip("onnxruntime")

SNIPPET = (REPO / "docs" / "predict-export.md").read_text().split("this snippet is run as written by the tests):\n\n```python\n")[1] \
    .split("```")[0]
NO_TORCH = "import sys; sys.modules['torch'] = None\n"  # any `import torch` now raises ImportError


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    """ONNX bundles of a gray digit model and a colour photo model (one short epoch each)."""
    root = tmp_path_factory.mktemp("bundles")
    runs = {"gray": visiontrain.train(dataset=str(write_digits_folder(root / "digits", 300, 50)), model="lenet",
                                      epochs=1, batch_size=32, progress="none", report=False, runs_dir=str(root)),
            "rgb": visiontrain.train(dataset=str(write_photo_folder(root / "photos", 60, 10, 32)), model="simple-cnn",
                                     epochs=1, batch_size=16, progress="none", report=False, runs_dir=str(root))}
    return {kind: (run.path, visiontrain.export_run(run.path, "onnx")) for kind, run in runs.items()}


def kinds(folder: Path) -> list[Path]:
    """One file of each kind the decode policy handles, made from a real photo crop."""
    photo = photo_crops("flower", 1, 120, seed=3, scale=(0.3, 0.3))[0].crop((0, 10, 120, 100))  # 120x90, not square
    gray = photo.convert("L")
    files = {"plain.jpg": photo, "gray.png": gray, "one-bit.png": gray.convert("1")}
    rgba = photo.convert("RGBA")
    rgba.putalpha(Image.linear_gradient("L").resize(photo.size))  # transparent at the top, opaque at the bottom
    files["transparent.png"] = rgba
    files["gray-alpha.png"] = rgba.convert("LA")
    palette = photo.convert("P", palette=Image.Palette.ADAPTIVE, colors=32)
    files["palette.png"] = palette
    files["palette-transparent.gif"] = palette.copy()
    files["palette-transparent.gif"].info["transparency"] = 0
    sixteen = Image.fromarray((np.asarray(gray, dtype=np.uint16) * 257 + 100).clip(0, 65535).astype(np.uint16))
    files["sixteen-bit.png"] = sixteen
    paths = []
    for name, image in files.items():
        path = folder / name
        if name.endswith(".gif"):
            image.save(path, transparency=0)
        else:
            image.save(path)
        paths.append(path)
    cmyk = folder / "cmyk.jpg"
    photo.convert("CMYK").save(cmyk, quality=95)
    rotated = folder / "exif-rotated.jpg"  # stored sideways, with the EXIF tag that says so
    exif = Image.Exif()
    exif[0x0112] = 6
    photo.rotate(90, expand=True).save(rotated, exif=exif.tobytes(), quality=95)
    return paths + [cmyk, rotated]


@pytest.mark.parametrize("kind", ["gray", "rgb"])
def test_the_documented_onnx_snippet_gives_predicts_answer_on_every_kind_of_file(bundles, kind, tmp_path):
    run, bundle = bundles[kind]
    files = kinds(tmp_path)
    assert {Image.open(f).mode for f in files} >= {"RGB", "L", "1", "RGBA", "LA", "P", "CMYK"}  # and 16-bit
    rows, skipped = predict_paths(run, files, top_k=1)
    assert not skipped and len(rows) == len(files)
    (tmp_path / "bundle").symlink_to(bundle)
    for path, row in zip(files, rows):
        result = subprocess.run([sys.executable, "-I", "-c", NO_TORCH + SNIPPET, str(path)], cwd=tmp_path,
                                capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr
        name, probability = result.stdout.split()
        expected_name, expected = row["top"][0]
        assert name == expected_name, path.name
        assert abs(float(probability) - expected) <= 1e-4 + 5e-5, path.name  # the snippet prints 4 decimals
