"""Your own model and your own data, from Python; then the CLI predicts with it and exports it.

    pip install -e examples/own_model_package       # once: registers the model `tiny-cnn` (an entry point)
    python examples/06_own_model_and_data.py [--quick] [--runs-dir runs/examples]

1. The data is a torch Dataset of your own (here it draws circles, squares and triangles with Pillow): items are
   (PIL image, class index) and it has a `classes` list, as torchvision's datasets do. visiontrain reads it once
   into memory as uint8 tensors and augments and batches it itself.
2. The model is a plain nn.Sequential CNN from your own package (examples/own_model_package/tinynet.py), which
   registers its builder under the `visiontrain.models` entry points. visiontrain.train(model=tiny_cnn) finds that
   registration and records the run's model as `tiny-cnn`, so `visiontrain predict` and `visiontrain export` (and
   eval, explain) can rebuild it from the checkpoint, which holds weights only.
3. A callback prints each epoch and stops the run once validation accuracy reaches --target.

When the package is not installed, this script installs it into a temporary folder (pip, offline) and puts that
folder on the path of the commands it runs: what `pip install` does for good.
"""
from __future__ import annotations

import random
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
import yaml
from PIL import Image, ImageDraw

import visiontrain

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import parser  # noqa: E402

PACKAGE = Path(__file__).resolve().parent / "own_model_package"


class Shapes(torch.utils.data.Dataset):
    """Outlines of circles, squares and triangles at random places and sizes, 28x28 gray PIL images."""

    classes = ["circle", "square", "triangle"]

    def __init__(self, count: int, seed: int):
        self.count, self.seed = count, seed

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int) -> tuple[Image.Image, int]:
        rng = random.Random(self.seed * 1_000_003 + index)
        label = index % 3
        image = Image.new("L", (28, 28), color=rng.randint(0, 60))
        draw = ImageDraw.Draw(image)
        size, x, y = rng.randint(9, 16), rng.randint(2, 10), rng.randint(2, 10)
        ink, width = rng.randint(150, 255), rng.randint(1, 2)
        if label == 0:
            draw.ellipse((x, y, x + size, y + size), outline=ink, width=width)
        elif label == 1:
            draw.rectangle((x, y, x + size, y + size), outline=ink, width=width)
        else:
            draw.polygon([(x + size / 2, y), (x, y + size), (x + size, y + size)], outline=ink, width=width)
        return image, label


class Report(visiontrain.Callback):
    """Prints each epoch; stops the run (it then finishes normally: test evaluation, report) at the target."""

    def __init__(self, target: float):
        self.target = target

    def on_epoch_end(self, run: visiontrain.RunInfo, row: dict) -> None:
        print(f"epoch {row['epoch']}: val accuracy {row['val_acc']:.1%}")
        if row["val_acc"] >= self.target:
            run.stop(f"val accuracy {row['val_acc']:.1%} reached the target {self.target:.0%}")


def installed_model_package(scratch: Path) -> Path | None:
    """The folder the example package was installed into (None: it is installed already)."""
    try:
        import tinynet  # noqa: F401
        return None
    except ImportError:
        pass
    target = scratch / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index",
                    "--no-build-isolation", "--target", str(target), str(PACKAGE)], check=True)
    sys.path.insert(0, str(target))
    return target


def cli(*args: str, site: Path | None) -> str:
    """`visiontrain ARGS` as a user runs it, with the package installed (on PYTHONPATH when installed here)."""
    import os

    paths = [str(site)] if site else []
    env = os.environ | {"PYTHONPATH": os.pathsep.join(paths + [p for p in [os.environ.get("PYTHONPATH")] if p])}
    result = subprocess.run([sys.executable, "-m", "visiontrain", *args], capture_output=True, text=True, env=env)
    if result.returncode != 0:
        sys.exit(f"visiontrain {' '.join(args)} failed:\n{result.stderr}")
    return result.stdout


def main() -> None:
    arguments = parser(__doc__.splitlines()[0])
    arguments.add_argument("--target", type=float, default=0.98, help="stop at this val accuracy (default 0.98)")
    args = arguments.parse_args()
    train_count, test_count, epochs = (300, 60, 1) if args.quick else (6000, 900, 10)
    with tempfile.TemporaryDirectory(prefix="visiontrain-example-") as scratch:
        site = installed_model_package(Path(scratch))
        from tinynet import tiny_cnn

        run = visiontrain.train(model=tiny_cnn, data={"train": Shapes(train_count, 0), "test": Shapes(test_count, 1)},
                                callbacks=[Report(args.target)], epochs=epochs, batch_size=64, lr=3e-3,
                                augment="crop", runs_dir=args.runs_dir, progress="none")
        model = yaml.safe_load((run.path / "config.yaml").read_text())["model"]  # the name the CLI rebuilds it by
        print(f"trained {model} on {run.summary['dataset']['name']}: test accuracy "
              f"{run.test_acc:.1%} ({run.summary['epochs_completed']} epochs"
              f"{'; ' + run.summary['stopped_by'] if run.summary.get('stopped_by') else ''})")

        pictures = Path(args.runs_dir) / "shapes-to-predict"  # image files, as a user would have them
        pictures.mkdir(parents=True, exist_ok=True)
        for index in range(3):
            image, label = Shapes(3, 7)[index]
            image.save(pictures / f"{index}-{Shapes.classes[label]}.png")
        print(cli("predict", str(run.path), str(pictures), "--top-k", "1", site=site).strip())
        print(cli("export", str(run.path), "--format", "onnx", site=site).strip())


if __name__ == "__main__":
    main()
