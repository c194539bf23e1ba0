"""Real images for the tests, all of them on a machine that ran `make test`, none of them from outside the clone:

- Fashion-MNIST (70,000 real 28x28 grayscale photos of clothing): Debian's copy, which `make test` installs
  (`make data`), else the user's visiontrain cache (found once per session: the tests' own VISIONTRAIN_HOME is an
  empty folder per test). Read with visiontrain's own reader of the named dataset (upstream MD5s checked).
- scikit-learn's digits (1,797 real 8x8 handwritten digits, `sklearn.datasets.load_digits`, a dev extra): where a
  test needs digits, scaled up to 20x20 and centred on a 28x28 black canvas as MNIST's digits are, values 0..255.
- scikit-learn's two sample photos (china.jpg, flower.jpg, 427x640 RGB): crops of them, JPEG-encoded, for RGB tests.

Everything is written in the real on-disk formats (PNG / JPEG image folders, IDX) that users' data comes in.
"""
from __future__ import annotations

import functools
import gzip
import re
import struct
from pathlib import Path

import numpy as np

from visiontrain.data import cache

FASHION_SYSTEM = Path("/usr/share/datasets/fashion-mnist")  # Debian's dataset-fashion-mnist (`make data`)
# The user's own visiontrain folder, read before any test points VISIONTRAIN_HOME at its own empty folder.
USER_HOME = cache.home()
IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
# The image-folder class names of the Fashion-MNIST slices, in label order: visiontrain's names as folder names
# ('T-shirt/top' has a slash). The folder loader sorts class folders by name, so its label order is another.
FASHION_CLASSES = ("t-shirt-top", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag",
                   "ankle-boot")
DIGITS_TRAIN = 1297  # load_digits()'s first 1,297 digits are the train pool, its last 500 the test pool
PHOTOS = ("china", "flower")


class MissingData(Exception):
    pass


@functools.cache
def fashion_dir() -> Path:
    """The folder holding Fashion-MNIST's four IDX files: Debian's copy, else the user's visiontrain cache."""
    for folder in (FASHION_SYSTEM, USER_HOME / "fashion-mnist"):
        if all(any((folder / f"{name}{ext}").is_file() for ext in (".gz", "")) for name in IDX_FILES):
            return folder
    raise MissingData(f"Fashion-MNIST is neither in {FASHION_SYSTEM} nor in {USER_HOME / 'fashion-mnist'}: run "
                      "`make data` (sudo apt-get install dataset-fashion-mnist), or download it once with "
                      "`visiontrain data fashion-mnist`")


@functools.cache
def fashion_arrays() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """All of Fashion-MNIST as uint8 (N, 28, 28) images and int64 labels: train_x, train_y, test_x, test_y. Read by
    visiontrain's named-dataset reader, so the upstream checksums are verified (once per test process, ~2 s)."""
    from visiontrain.data.decode import DecodePolicy
    from visiontrain.data.registry import DATASETS

    splits, _ = DATASETS.get("fashion-mnist").read(fashion_dir(), DecodePolicy())
    arrays = []
    for split in ("train", "test"):
        arrays += [splits[split].images[:, 0].numpy(), splits[split].labels.numpy()]
    return tuple(arrays)


def fashion_slice(train: int, test: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The first `train` training and the first `test` test images of Fashion-MNIST (classes well mixed)."""
    train_x, train_y, test_x, test_y = fashion_arrays()
    return train_x[:train], train_y[:train], test_x[:test], test_y[:test]


@functools.cache
def digits_arrays() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """scikit-learn's 1,797 handwritten digits as MNIST-like 28x28 uint8 images: train_x, train_y (1,297), test_x,
    test_y (500). Each 8x8 digit (0..16) is scaled to 0..255, resized to 20x20 (bicubic) and centred on black."""
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = np.zeros((len(digits.images), 28, 28), dtype=np.uint8)
    for index, small in enumerate(digits.images):
        pixels = Image.fromarray((small * (255 / 16)).round().astype(np.uint8)).resize((20, 20), Image.BICUBIC)
        images[index, 4:24, 4:24] = np.asarray(pixels)
    labels = digits.target.astype(np.int64)
    return images[:DIGITS_TRAIN], labels[:DIGITS_TRAIN], images[DIGITS_TRAIN:], labels[DIGITS_TRAIN:]


def digits_slice(train: int, test: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The first `train` digits of the train pool and the first `test` of the test pool (every digit in both)."""
    train_x, train_y, test_x, test_y = digits_arrays()
    assert train <= len(train_x) and test <= len(test_x), "scikit-learn has 1,297 + 500 digits"
    return train_x[:train], train_y[:train], test_x[:test], test_y[:test]


def write_png_folder(root: Path, arrays, classes) -> Path:
    """(train_x, train_y, test_x, test_y) as PNG files in root/{train,test}/<class>/NNNNN.png."""
    from PIL import Image

    train_x, train_y, test_x, test_y = arrays
    for split, images, labels in (("train", train_x, train_y), ("test", test_x, test_y)):
        for index, (image, label) in enumerate(zip(images, labels)):
            folder = root / split / classes[int(label)]
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(image).save(folder / f"{index:05d}.png")
    return root


def write_fashion_folder(root: Path, train: int, test: int) -> Path:
    """The first `train` + `test` Fashion-MNIST images as PNGs in root/{train,test}/<class>/ (FASHION_CLASSES)."""
    return write_png_folder(root, fashion_slice(train, test), FASHION_CLASSES)


def write_digits_folder(root: Path, train: int, test: int) -> Path:
    """The first `train` + `test` scikit-learn digits as 28x28 PNGs in root/{train,test}/<digit>/."""
    return write_png_folder(root, digits_slice(train, test), [str(d) for d in range(10)])


def write_idx(path: Path, array: np.ndarray, compress: bool = True) -> Path:
    """Write an IDX file exactly as the MNIST distribution does (big-endian header, uint8 payload)."""
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + b"".join(struct.pack(">I", d) for d in array.shape)
    data = header + array.astype(np.uint8).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(data) if compress else data)
    return path


def write_digits_idx(folder: Path) -> Path:
    """All of scikit-learn's digits (28x28) as the four MNIST IDX files (gzip) in `folder`."""
    train_x, train_y, test_x, test_y = digits_arrays()
    for name, array in zip(IDX_FILES, (train_x, train_y, test_x, test_y)):
        write_idx(folder / f"{name}.gz", array)
    return folder


@functools.cache
def photos() -> dict[str, np.ndarray]:
    """scikit-learn's two sample photos, {'china': (427, 640, 3) uint8, 'flower': ...}."""
    from sklearn.datasets import load_sample_images

    loaded = load_sample_images()
    return {re.sub(r"\.jpg$", "", Path(name).name): image for name, image in zip(loaded.filenames, loaded.images)}


def photo_crops(name: str, count: int, size: int, seed: int, scale: tuple[float, float] = (0.15, 0.45),
                equalized_gray: bool = False) -> list:
    """`count` random square crops of photo `name` as size x size RGB PIL images: each crop's side is a random
    fraction `scale` of the photo's height (427 px), resized (Lanczos) to `size`. With `equalized_gray`, each crop
    is made gray and its histogram equalised (still stored as RGB): the colours and brightness that tell the two
    photos apart at a glance are gone, shapes and textures remain."""
    from PIL import Image, ImageOps

    image = Image.fromarray(photos()[name])
    rng = np.random.default_rng([seed, PHOTOS.index(name)])
    crops = []
    for _ in range(count):
        side = int(rng.uniform(*scale) * image.height)
        left, top = int(rng.integers(0, image.width - side + 1)), int(rng.integers(0, image.height - side + 1))
        crop = image.crop((left, top, left + side, top + side)).resize((size, size), Image.LANCZOS)
        crops.append(ImageOps.equalize(crop.convert("L")).convert("RGB") if equalized_gray else crop)
    return crops


def write_photo_folder(root: Path, train: int, test: int, size: int, seed: int = 0, **crop_args) -> Path:
    """`train` + `test` crops of each sample photo as JPEG files in root/{train,test}/{china,flower}/NNNN.jpg (the
    test crops are drawn separately from the train crops: other positions and sizes of the same two photos)."""
    for name in PHOTOS:
        for split, count, split_seed in (("train", train, 2 * seed), ("test", test, 2 * seed + 1)):
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for index, crop in enumerate(photo_crops(name, count, size, split_seed, **crop_args)):
                crop.save(folder / f"{index:04d}.jpg", quality=90)
    return root


def mnist_stand_in_source(idx_folder: Path):
    """The registry entry of the named dataset `mnist` with its files replaced by scikit-learn's digits as IDX files
    in `idx_folder` (write_digits_idx): allow_flip, pad_mode and the class names stay the real entry's. The real
    entry verifies the upstream MD5s, which these files cannot pass (and must not: the checksum stays)."""
    import dataclasses

    from visiontrain.data.idx import read_idx_pair
    from visiontrain.data.registry import DATASETS
    from visiontrain.data.tensors import ImageTensors

    files = [idx_folder / f"{name}.gz" for name in IDX_FILES]
    classes = [str(d) for d in range(10)]

    def read(data_dir, policy):
        return {split: ImageTensors(*read_idx_pair(files[2 * i], files[2 * i + 1]), classes)
                for i, split in enumerate(("train", "test"))}, []

    return dataclasses.replace(DATASETS.get("mnist"), description="stand-in: scikit-learn's digits",
                               find=lambda data_dir: files, read=read)


def install_mnist_stand_in(idx_folder: Path, monkeypatch):
    """Registers mnist_stand_in_source(idx_folder) as `mnist` for the rest of the test (monkeypatch undoes it)."""
    from visiontrain.data.registry import DATASETS

    source = mnist_stand_in_source(idx_folder)
    monkeypatch.setitem(DATASETS._items, "mnist", source)
    return source
