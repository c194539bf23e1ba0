"""Train the seed tutorials' networks (mlp, simple-cnn, lenet) on MNIST and Fashion-MNIST, and compare them.

    python examples/01_tutorial_cnns.py --data-dir ../shared/data     # the full datasets, 2 epochs each
    python examples/01_tutorial_cnns.py --quick                       # 1,000 images of each, 1 epoch

Each run folder holds the model, metrics.csv, the test evaluation and report.html (`visiontrain eval RUN`).
"""
from pathlib import Path

import visiontrain
from _common import data_dir_for, image_folder_slice, parser, table

args = parser(__doc__.splitlines()[0]).parse_args()
rows = []
for dataset in ("mnist", "fashion-mnist"):
    data_dir = data_dir_for(dataset, args.data_dir)
    if args.quick:
        source = str(image_folder_slice(dataset, Path(args.runs_dir) / "data" / f"{dataset}-1000",
                                        train=1000, test=200, data_dir=data_dir))
        data_dir = None
    else:
        source = dataset
    for model in ("mlp", "simple-cnn", "lenet"):
        # a digit must not be mirrored (a flipped 2 is no 2); a shirt may be. Said explicitly, because a --quick
        # slice is an image folder, for which visiontrain cannot know that it holds digits.
        run = visiontrain.train(dataset=source, data_dir=data_dir, model=model, epochs=1 if args.quick else 2,
                                augment="crop" if dataset == "mnist" else "crop+flip", runs_dir=args.runs_dir,
                                report=not args.quick)
        rows.append((dataset, model, f"{run.summary['parameters']:,}", f"{run.test_acc:.2%}",
                     f"{run.summary['wall_seconds']:.0f} s", run.path))
print(table(rows, ("dataset", "model", "parameters", "test accuracy", "wall time", "run folder")))
