"""A comparison report of several runs: three optimiser and learning-rate schedule recipes for LeNet on MNIST.

    python examples/05_compare_runs.py --data-dir ../shared/data     # full MNIST, 3 epochs per recipe
    python examples/05_compare_runs.py --quick                       # 1,000 images, 1 epoch per recipe
    python examples/05_compare_runs.py runs/a runs/b runs/c          # just compare runs you already have

Writes RUNS/compare.html (config fields that differ, best and final metrics, wall time, overlaid val curves,
per-class F1) and compare.md, the same tables in Markdown for a hand-in, and prints the Markdown.
"""
from pathlib import Path

import visiontrain
from _common import data_dir_for, free_name, image_folder_slice, parser

# the course's SGD + StepLR, the default Adam + one-cycle, and AdamW + cosine with a warm-up
RECIPES = {
    "sgd-steplr": dict(optimizer="sgd", lr=0.05, momentum=0.9, schedule="step", step_size=1, gamma=0.5),
    "adam-onecycle": dict(optimizer="adam", lr=2e-3, schedule="onecycle"),
    "adamw-cosine": dict(optimizer="adamw", lr=2e-3, weight_decay=0.05, schedule="cosine", warmup_epochs=0.5),
}

cli = parser(__doc__.splitlines()[0])
cli.add_argument("runs", nargs="*", metavar="RUN", help="existing run folders to compare (then nothing is trained)")
args = cli.parse_args()
runs_dir = Path(args.runs_dir)
paths = list(args.runs)
if not paths:
    dataset, data_dir = "mnist", data_dir_for("mnist", args.data_dir)
    if args.quick:
        dataset = str(image_folder_slice("mnist", runs_dir / "data" / "mnist-1000", train=1000, test=200,
                                         data_dir=data_dir))
        data_dir = None
    for label, recipe in RECIPES.items():
        run = visiontrain.train(dataset=dataset, data_dir=data_dir, model="lenet", augment="crop",
                                epochs=1 if args.quick else 3, name=free_name(args.runs_dir, f"lenet-{label}"),
                                runs_dir=args.runs_dir, report=not args.quick, **recipe)
        paths.append(run.path)
page = visiontrain.compare_runs(paths, runs_dir / "compare.html", runs_dir / "compare.md")
print((runs_dir / "compare.md").read_text())
print(f"wrote {page} and {runs_dir / 'compare.md'}")
