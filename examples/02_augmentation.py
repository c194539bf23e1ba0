"""Compare augmentations on one dataset and model: none vs crop vs crop+flip, in one comparison report.

    python examples/02_augmentation.py                      # Fashion-MNIST, simple-cnn, 3 epochs per mode
    python examples/02_augmentation.py --quick              # 1,000 images, 1 epoch per mode

Writes RUNS/augmentation.html and .md (config differences, accuracies, overlaid val curves, per-class F1) and, per
mode, RUNS/augment-<mode>.png: the same training images after that mode's augmentation, as the model sees them.
Augmentation is a regulariser: it narrows the gap between train and val accuracy, and it pays off over longer
training; after one or two epochs "none" can still be ahead.
"""
from pathlib import Path

import visiontrain
from _common import data_dir_for, free_name, image_folder_slice, parser, table
from visiontrain.report.batch import show_batch

cli = parser(__doc__.splitlines()[0])
cli.add_argument("--dataset", default="fashion-mnist", help="a dataset name or image folder (default fashion-mnist)")
cli.add_argument("--model", default="simple-cnn")
cli.add_argument("--epochs", type=int, default=3)
args = cli.parse_args()
runs = Path(args.runs_dir)
data_dir = data_dir_for(args.dataset, args.data_dir) if args.dataset in visiontrain.list_datasets() else args.data_dir
dataset = args.dataset
if args.quick and dataset in visiontrain.list_datasets():
    dataset = str(image_folder_slice(dataset, runs / "data" / f"{dataset}-1000", train=1000, test=200,
                                     data_dir=data_dir))
    data_dir = None

paths, rows = [], []
for mode in ("none", "crop", "crop+flip"):
    name = free_name(args.runs_dir, f"augment-{mode.replace('+', '-')}")
    run = visiontrain.train(dataset=dataset, data_dir=data_dir, model=args.model, augment=mode, name=name,
                            epochs=1 if args.quick else args.epochs, runs_dir=args.runs_dir, report=not args.quick)
    last = run.metrics[-1]  # metrics.csv's final epoch: a large train - val gap is overfitting
    rows.append((mode, f"{float(last['train_acc']):.2%}", f"{float(last['val_acc']):.2%}", f"{run.test_acc:.2%}"))
    paths.append(run.path)
    # the config the run trained with (model named: no preset), so these are its first 16 training images exactly
    show_batch(dataset, data_dir=data_dir, augmented=True, model=args.model, augment=mode, count=16,
               output=runs / f"{name}.png", verbose=False)
print(table(rows, ("augment", "train acc", "val acc", "test acc")))
page = visiontrain.compare_runs(paths, runs / "augmentation.html", runs / "augmentation.md")
print(f"wrote {page}, {runs / 'augmentation.md'} and the augmented batches {runs}/augment-*.png")
