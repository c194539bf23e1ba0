"""Build the small photo folders the transfer-learning benchmarks use, from the CIFAR-10 JPEG copy.

Measurement only (tests never use CIFAR-10; they use tests/realdata.py's photo crops). Reads the archive
/work/shared/data/cifar10-jpg.tar.gz (or --archive: the same layout, cifar10-jpg/{train,test}/<class>/NNNN.jpg)
without unpacking it, and writes

    photo  (default): a few hundred images of a few classes, upscaled to --size px (Lanczos), JPEG quality 90:
           OUT/{train,val,test}/<class>/NNNN.jpg. The default, 4 animal classes (bird, cat, deer, dog) x 80 train +
           40 val + 50 test at 224 px, is the "small photo folder" of benchmarks/photo_folder.py (its val split,
           160 images, makes the per-epoch accuracy precise enough to time; val images come from CIFAR's train
           split, never the ones picked for train).
    subset: a CIFAR-10 subset at its own 32 px (files copied as they are), e.g. --train 500 --test 200 per class
           for the 5,000 + 2,000 image folder of the image-size measurement (benchmarks/pretrained_size.py).

    python benchmarks/make_photo_folder.py OUT [--kind photo|subset] [--classes bird,cat,deer,dog]
        [--train 80] [--val 40] [--test 50] [--size 224] [--seed 0]

The images of each class are the first ones of a seeded permutation of the archive's, so a rebuild with the same
arguments gives the same files (byte-identical: Pillow's JPEG encoder is deterministic).
"""
from __future__ import annotations

import argparse
import io
import random
import tarfile
from collections import defaultdict
from pathlib import Path

from PIL import Image

ARCHIVE = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10-jpg.tar.gz"
if not ARCHIVE.is_file():  # a worktree two levels below /work: /work/shared
    ARCHIVE = Path("/work/shared/data/cifar10-jpg.tar.gz")
PHOTO_CLASSES = ("bird", "cat", "deer", "dog")


def members(archive: Path) -> dict[tuple[str, str], list[tarfile.TarInfo]]:
    """(split, class) -> the archive's JPEG members of it, in name order."""
    found: dict[tuple[str, str], list[tarfile.TarInfo]] = defaultdict(list)
    with tarfile.open(archive) as tar:
        for member in tar:
            parts = member.name.split("/")
            if member.isfile() and len(parts) == 4 and parts[3].endswith(".jpg"):
                found[(parts[1], parts[2])].append(member)
    return {key: sorted(value, key=lambda m: m.name) for key, value in found.items()}


def build(out: Path, *, archive: Path = ARCHIVE, kind: str = "photo", classes: tuple[str, ...] = PHOTO_CLASSES,
          train: int = 80, val: int = 0, test: int = 50, size: int = 224, seed: int = 0) -> Path:
    chosen = {}
    listing = members(archive)
    for split, count in (("train", train), ("test", test)):
        for name in classes:
            files = list(listing[(split, name)])
            wanted = count + (val if split == "train" else 0)
            if len(files) < wanted:
                raise SystemExit(f"{archive} has {len(files)} {split} images of {name}, fewer than {wanted}")
            random.Random(f"{seed}-{split}-{name}").shuffle(files)
            chosen.update({m.name: (split, name, index) for index, m in enumerate(files[:count])})
            if split == "train":  # val: the next ones of the same permutation, so train's picks do not change
                chosen.update({m.name: ("val", name, index) for index, m in enumerate(files[count:count + val])})
    with tarfile.open(archive) as tar:  # one sequential pass: a gzip archive has no random access
        for member in tar:
            if member.name not in chosen:
                continue
            split, name, index = chosen[member.name]
            target = out / split / name / f"{index:04d}.jpg"
            target.parent.mkdir(parents=True, exist_ok=True)
            data = tar.extractfile(member).read()
            if kind == "subset":
                target.write_bytes(data)
            else:
                image = Image.open(io.BytesIO(data)).convert("RGB").resize((size, size), Image.Resampling.LANCZOS)
                image.save(target, quality=90)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--archive", type=Path, default=ARCHIVE)
    parser.add_argument("--kind", choices=("photo", "subset"), default="photo")
    parser.add_argument("--classes", default=None, help="comma-separated; default: bird,cat,deer,dog for photo, all "
                                                        "ten for subset")
    parser.add_argument("--train", type=int, default=80, help="training images per class")
    parser.add_argument("--val", type=int, default=None, help="val images per class (default: 40 for photo, 0 for "
                                                               "subset, which then holds out 10%% of train)")
    parser.add_argument("--test", type=int, default=50, help="test images per class")
    parser.add_argument("--size", type=int, default=224, help="photo: side in pixels the 32 px images are upscaled to")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.classes:
        classes = tuple(args.classes.split(","))
    elif args.kind == "photo":
        classes = PHOTO_CLASSES
    else:
        classes = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
    val = args.val if args.val is not None else (40 if args.kind == "photo" else 0)
    path = build(args.out, archive=args.archive, kind=args.kind, classes=classes, train=args.train, val=val,
                 test=args.test, size=args.size, seed=args.seed)
    count = sum(1 for _ in path.rglob("*.jpg"))
    print(f"{path}: {count} images, classes {', '.join(classes)}")


if __name__ == "__main__":
    main()
