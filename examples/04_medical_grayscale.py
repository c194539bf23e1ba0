"""A grayscale, 16-bit medical-style image folder: synthetic "scans" with and without a lesion, trained and evaluated.

    python examples/04_medical_grayscale.py             # 400 + 100 scans per class at 64 px, 8 epochs
    python examples/04_medical_grayscale.py --quick     # 60 + 20 scans per class, 2 epochs

Real scans (CT, X-ray, microscopy) are often 16-bit grayscale PNG or TIFF files. visiontrain reads them as one
channel and scales 16 bits to 8 (value / 257, never clipped), so nothing here is specific to this data: point
--data-dir at a folder of your own, root/{train,test}/<class>/*.png, to train on it instead.
"""
from pathlib import Path

import numpy as np
from PIL import Image

import visiontrain
from _common import parser
from visiontrain.data.inspect import format_report, inspect_dataset


def write_scans(root: Path, per_class: tuple[int, int], size: int = 64, seed: int = 0) -> Path:
    """root/{train,test}/{normal,lesion}/*.png: 16-bit gray body outlines with noise; 'lesion' adds one bright blob.

    The body's brightness varies more from scan to scan than the blob adds to the mean, so the network has to find
    the blob, not just the brighter image.
    """
    if (root / ".complete").is_file():
        return root
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size] / size - 0.5  # (H, W) coordinates, -0.5 .. 0.5
    for split, count in zip(("train", "test"), per_class):
        for label in ("normal", "lesion"):
            (root / split / label).mkdir(parents=True, exist_ok=True)
            for index in range(count):
                a, b = rng.uniform(0.3, 0.45, 2)  # the body: an ellipse of random size and brightness
                body = ((x / a) ** 2 + (y / b) ** 2 < 1) * rng.uniform(15_000, 35_000)
                scan = body + rng.normal(0, 2_500, (size, size))
                if label == "lesion":
                    cy, cx = rng.uniform(-0.2, 0.2, 2)
                    sigma = rng.uniform(0.03, 0.06)
                    scan += 20_000 * np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * sigma**2))
                pixels = np.clip(scan + 3_000, 0, 65_535).astype(np.uint16)
                Image.fromarray(pixels).save(root / split / label / f"{index:04d}.png")  # mode I;16: 16-bit PNG
    (root / ".complete").touch()
    return root


args = parser(__doc__.splitlines()[0]).parse_args()
if args.data_dir:
    scans = Path(args.data_dir)
else:
    per_class = (60, 20) if args.quick else (400, 100)
    scans = write_scans(Path(args.runs_dir) / "data" / f"scans-{per_class[0]}", per_class)
print(format_report(inspect_dataset(str(scans))))  # class counts, 16-bit and grayscale files, duplicates
run = visiontrain.train(dataset=str(scans), model="simple-cnn", epochs=2 if args.quick else 8, batch_size=32,
                        augment="crop", runs_dir=args.runs_dir, report=not args.quick)
metrics = visiontrain.evaluate(run.path)  # again, as `visiontrain eval RUN` would: writes eval/test/ in the run
print(f"test accuracy {metrics['accuracy']:.2%}, balanced accuracy {metrics['balanced_accuracy']:.2%}")
for row in metrics["per_class"]:
    print(f"  {row['class']:<8} precision {row['precision']:.2f}  recall {row['recall']:.2f}  ({row['support']} scans)")
model = visiontrain.load(run.path)
files = sorted((scans / "test" / "lesion").glob("*.png"))[:3]
for path, result in zip(files, model.predict(files, top_k=1)):
    name, probability = result["top"][0]
    print(f"{path}: {name} {probability:.2f}")
