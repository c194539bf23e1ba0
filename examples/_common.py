"""Shared by the example scripts: their command-line flags and the small image-folder slices --quick trains on.

visiontrain trains on a whole named dataset (it has no "first N images" option), so --quick writes the first
images of the real dataset as PNG files in an image folder, the format any of your own datasets would have.
"""
from __future__ import annotations

import argparse
from pathlib import Path


def parser(description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help="a tiny slice of the data and 1 epoch: a smoke test")
    parser.add_argument("--data-dir", help="folder holding the dataset files (default: visiontrain's own search)")
    parser.add_argument("--runs-dir", default="runs/examples", help="where the run folders go (default runs/examples)")
    return parser


def data_dir_for(dataset: str, data_dir: str | None) -> str | None:
    """data_dir if it holds this named dataset (directly or in a sub-folder of that name), else None, so that
    visiontrain looks in its cache and the system copies (one --data-dir can then serve MNIST and Fashion-MNIST)."""
    if data_dir is None:
        return None
    base = Path(data_dir).expanduser()
    for folder in (base, base / dataset):
        if (folder / "train-images-idx3-ubyte.gz").is_file() or (folder / "train-images-idx3-ubyte").is_file():
            return str(folder)
    print(f"note: {data_dir} does not hold {dataset}; visiontrain looks for it in its cache and system copies")
    return None


def image_folder_slice(dataset: str, root: Path, *, train: int, test: int, data_dir: str | None = None) -> Path:
    """The first `train` training and `test` test images of a named dataset as PNGs in root/{train,test}/<class>/.

    Written once; a second call finds root/.complete and reuses the folder. '/' in a class name (Fashion-MNIST's
    'T-shirt/top') becomes '-', since a class is a folder name.
    """
    from PIL import Image

    from visiontrain.data import load_dataset

    if (root / ".complete").is_file():
        return root
    data = load_dataset(dataset, data_dir=data_dir, val_fraction=0)  # decoded once, then read from the cache
    for split, tensors, count in (("train", data.train, train), ("test", data.test, test)):
        for index in range(min(count, len(tensors))):
            folder = root / split / data.classes[int(tensors.labels[index])].replace("/", "-")
            folder.mkdir(parents=True, exist_ok=True)
            pixels = tensors.images[index].permute(1, 2, 0).squeeze(-1).numpy()  # (H, W) gray or (H, W, 3) RGB
            Image.fromarray(pixels).save(folder / f"{index:05d}.png")
    (root / ".complete").touch()
    return root


def table(rows: list[tuple], header: tuple) -> str:
    """A plain text table for the terminal."""
    cells = [tuple(map(str, header))] + [tuple(map(str, row)) for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(row, widths)) for row in cells)


def free_name(runs_dir: str, stem: str) -> str:
    """stem, or stem-2, stem-3, ...: a run folder is never overwritten, and a readable name labels the comparison."""
    number = 1
    while (Path(runs_dir) / (name := stem if number == 1 else f"{stem}-{number}")).exists():
        number += 1
    return name
