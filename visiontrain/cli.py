"""The command line: a thin argparse layer over the Python API and the workflows. No logic lives here.

Each command is one entry of COMMANDS (at the end): its help, a function that adds its arguments, and a function that
runs it. The package's modules are imported inside the commands, so `visiontrain --help` answers at once, without
torch; that is the reason for every function-level import in this file.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
import typing
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from ._registry import EXPORTERS
from ._version import __version__
from .config import FIELDS, GROUPS, Config, build_config, load_yaml
from .errors import ConfigError, TrainingStopped, VisiontrainError

_START = time.perf_counter()  # this process's command started about now (the interpreter's start-up is ~50 ms)
_MAIN_CALLED = False
_METAVARS = {int: "N", float: "X", str: "TEXT"}
CONFIG_FLAGS = ("Every config field is a flag. Resolution order (later wins): the defaults shown, the preset "
                "(--preset, or the dataset's own when no --model is named: a plain `visiontrain train` is the tuned "
                "Fashion-MNIST recipe), --config FILE, then the flags given.")


@dataclass(frozen=True)
class Command:
    help: str
    arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]
    parser: dict = dataclasses.field(default_factory=dict)  # more argparse options: usage, description


class LazyChoices(Sequence[str]):
    """argparse choices read only when argparse needs them (a command's own --help, or checking the value given): a
    registry's providers, or a workflow's module, are not imported for `visiontrain --help`. Give the argument a
    metavar (argparse would list the choices in it while building the parser) and %(choices)s in its help."""

    def __init__(self, names: Callable[[], Sequence[str]]):
        self.names = names

    def __getitem__(self, index):  # noqa: ANN001, ANN204 - Sequence's
        return list(self.names())[index]

    def __len__(self) -> int:
        return len(self.names())

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __contains__(self, name: object) -> bool:
        return name in self.names()


def _output_formats() -> Sequence[str]:
    from .predict import OUTPUT_FORMATS

    return OUTPUT_FORMATS


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="visiontrain", description="Train, evaluate and use image classifiers.")
    parser.add_argument("--debug", action="store_true", help="show Python tracebacks for errors")
    parser.add_argument("--version", action="version", version=f"visiontrain {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, command in COMMANDS.items():
        command.arguments(commands.add_parser(name, help=command.help, **command.parser))
    return parser


# Flags of other tools (Ultralytics, timm's train.py, Keras habits) and the visiontrain flag that does that job
OTHER_TOOLS_FLAGS = {"--subset": "--limit N (a quick try) or --fraction F", "--imgsz": "--image-size",
                     "--img-size": "--image-size", "--batch": "--batch-size", "--opt": "--optimizer",
                     "--data": "--dataset", "--weight-decay-rate": "--weight-decay", "--workers": "--threads"}


def main(argv: list[str] | None = None) -> int:
    global _START, _MAIN_CALLED
    if _MAIN_CALLED:  # main() called again in one process (a test, a notebook): this command starts now
        _START = time.perf_counter()
    _MAIN_CALLED = True
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:  # argparse's own message, with the flag meant where it can be guessed
        parser.error(f"unrecognized arguments: {' '.join(unknown)}{_flag_hint(parser, args.command, unknown)}")
    try:
        return COMMANDS[args.command].run(args)
    except KeyboardInterrupt:
        print("visiontrain: interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # noqa: BLE001 - the one place that turns errors into one sentence + exit code
        return _report(error, args.debug)


def _flag_hint(parser: argparse.ArgumentParser, command: str, unknown: list[str]) -> str:
    """' (did you mean --limit ...?)' for the first unknown flag: another tool's name for a visiontrain flag, or the
    command's closest flag."""
    import difflib

    flag = next((word.split("=")[0] for word in unknown if word.startswith("--")), None)
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    flags = [f for action in subparsers.choices[command]._actions for f in action.option_strings]
    if flag is None:
        return ""
    if flag in OTHER_TOOLS_FLAGS and OTHER_TOOLS_FLAGS[flag].split()[0] in flags:
        return f" (did you mean {OTHER_TOOLS_FLAGS[flag]}?)"
    close = difflib.get_close_matches(flag, flags, n=1)
    return f" (did you mean {close[0]}?)" if close else ""


def _report(error: Exception, debug: bool) -> int:
    if debug:
        import traceback

        traceback.print_exc()
    if isinstance(error, TrainingStopped):
        print(f"visiontrain: {error}", file=sys.stderr)
        return error.exit_code
    if isinstance(error, VisiontrainError):  # ConfigError, DataError, UnknownNameError, ...: the user's to fix
        print(f"visiontrain: error: {error}", file=sys.stderr)
        return 2
    if isinstance(error, MemoryError):
        print("visiontrain: error: out of memory; lower --batch-size or --image-size", file=sys.stderr)
        return 2
    if not debug:
        print(f"visiontrain: internal error: {type(error).__name__}: {error} (run with --debug for the traceback, "
              "and please report it)", file=sys.stderr)
    return 1


# -- config flags ---------------------------------------------------------------------------------------------------
def _add_config_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per Config field (--batch-size -> batch_size), grouped as the config is, each with its help and
    default from the field itself; only flags given on the command line are set (a preset fills the others)."""
    hints = typing.get_type_hints(Config)
    groups = {name: parser.add_argument_group(title) for name, title in GROUPS.items()}
    for name, field in FIELDS.items():
        flag, hint = "--" + name.replace("_", "-"), hints[name]
        default = "none" if field.default is None else str(field.default).lower() if hint is bool else field.default
        text = field.metadata["help"]
        text = (text if "default:" in text else f"{text} (default: {default})").replace("%", "%%")  # argparse
        group = groups[field.metadata["group"]]  # %-formats help
        if _plain_type(hint) is bool:
            group.add_argument(flag, dest=name, action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS,
                               help=text)
        else:
            choices = typing.get_args(hint) if typing.get_origin(hint) is typing.Literal else None
            metavar = "{" + ",".join(choices) + "}" if choices else _METAVARS.get(_plain_type(hint), "VALUE")
            group.add_argument(flag, dest=name, default=argparse.SUPPRESS, metavar=metavar, help=text)


def _plain_type(hint: object) -> object:
    """int for Optional[int], and so on."""
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    return args[0] if typing.get_origin(hint) is typing.Union and args else hint


def _flag_values(args: argparse.Namespace) -> dict:
    """The config fields given as flags on the command line."""
    return {name: getattr(args, name) for name in FIELDS if hasattr(args, name)}


def _config_values(args: argparse.Namespace) -> dict:
    """The config fields of --config FILE, overridden by the flags given (a file's run name is dropped: repeating
    a run writes a new folder)."""
    values = load_yaml(args.config_file) if args.config_file else {}
    values.pop("name", None)
    return values | _flag_values(args)


def _output(path: str | None, flag: str) -> None:
    """Refuse an output path that cannot be written (a folder, a file in the way...) before any work."""
    from ._io import output_file

    if path:
        output_file(path, flag)


# -- training ---------------------------------------------------------------------------------------------------------
PRINT_CONFIG = ("print the resolved config as YAML, each value commented with where it came from (default, preset "
                "NAME, file, flag), and exit without training")


def _train_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", dest="config_file", metavar="FILE", help="a YAML file of config fields")
    parser.add_argument("--resume", metavar="RUN_DIR", help="continue a run exactly from its newest valid checkpoint")
    parser.add_argument("--print-config", action="store_true", help=PRINT_CONFIG)
    _add_config_flags(parser)


def _print_config(args: argparse.Namespace) -> int:
    """--print-config: the config a command would run with, and where each value came from; nothing else is done."""
    from .config import format_sources, value_sources
    from .run import RunDir

    flags = _flag_values(args)
    if getattr(args, "resume", None):
        run = RunDir.open(args.resume)
        config = run.resume_config(flags)
        sources = value_sources(config, flags, saved=f"run {run.config_path}")
    else:
        file_values = load_yaml(args.config_file) if args.config_file else {}
        file_values.pop("name", None)
        config = build_config(file_values | flags)
        sources = value_sources(config, flags, file_values, args.config_file)
    print("# the resolved config (flags > --config FILE > preset > defaults); nothing was run\n"
          f"{format_sources(config, sources)}")
    return 0


def _train(args: argparse.Namespace) -> int:
    from .api import train

    if args.print_config:
        return _print_config(args)
    values = _config_values(args)  # reads --config FILE even on --resume, where only the flags apply
    run = train(_flag_values(args) if args.resume else values, resume=args.resume, start_time=_START)
    summary = run.summary
    if os.environ.get("RANK", "0") != "0":  # under torchrun only rank 0 reports
        return 0
    seconds = time.perf_counter() - _START
    took = f"{seconds:.0f} s" if not args.resume else f"{seconds:.0f} s; {summary['wall_seconds']:.0f} s in all"
    if "overfit_batch" in summary:  # the sanity check's verdict; a failed check exits 1 so scripts notice
        print(f"run: {run.path}  an overfit-batch sanity check, not a model to use  ({took})")
        print(summary["overfit_batch"]["message"])
        return 0 if summary["overfit_batch"]["ok"] else 1
    test = f"test accuracy {summary['test_acc']:.2%}" if summary.get("test_acc") is not None else "no test split"
    tested = ((summary.get("dataset") or {}).get("subset") or {}).get("test")
    if tested and tested["kept"] < tested["of"] and summary.get("test_acc") is not None:  # --limit: a quick try
        test += f" on {tested['kept']:,} of {tested['of']:,} test images (--limit: a quick try, not a result)"
    print(f"run: {run.path}  {test}  ({took})")
    return 0


def _sweep_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", dest="config_file", metavar="FILE",
                        help="a YAML file of config fields; a list value (lr: [0.01, 0.001]) is an axis too")
    _add_config_flags(parser)


def _sweep(args: argparse.Namespace) -> int:
    from .sweep import format_table, run_sweep

    result = run_sweep(_config_values(args))  # --name names the sweep (its folder), not one run
    print(format_table(result))
    plot = f", {result.plot}" if result.plot.is_file() else ""
    print(f"wrote {result.compare_html}{plot} and {result.compare_md}")
    return 0


def _lr_find_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", dest="config_file", metavar="FILE", help="a YAML file of config fields")
    parser.add_argument("--start-lr", type=float, default=1e-6, help="first lr (default 1e-6)")
    parser.add_argument("--end-lr", type=float, default=10.0, help="last lr (default 10)")
    parser.add_argument("--steps", type=int, default=100, help="optimiser steps from start to end (default 100)")
    parser.add_argument("-o", "--output", default="lr-find", metavar="DIR", help="output folder (default lr-find)")
    parser.add_argument("--print-config", action="store_true", help=PRINT_CONFIG)
    _add_config_flags(parser)


def _lr_find(args: argparse.Namespace) -> int:
    from .lrfind import lr_find

    if args.print_config:
        return _print_config(args)

    result = lr_find(build_config(_config_values(args)), start_lr=args.start_lr, end_lr=args.end_lr,
                     steps=args.steps, output=args.output)
    print(f"lr range test: {len(result.lrs)} steps, {result.lrs[0]:.2g} to {result.lrs[-1]:.2g}; {result.stopped}")
    print(f"suggested lr: {result.suggested_lr:.2g} (steepest descent of the smoothed loss); "
          f"min-loss lr / 10: {result.min_loss_lr / 10:.2g}")
    print(f"wrote {result.plot} and {result.csv}")
    return 0


# -- evidence: evaluation, reports, Grad-CAM -------------------------------------------------------------------------
def _eval_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir")
    parser.add_argument("--split", default="test", choices=["test", "val", "train"])
    parser.add_argument("--data", help="evaluate on this image folder instead (same class folders)")


def _eval(args: argparse.Namespace) -> int:
    from .api import evaluate
    from .report import write_report

    evaluate(args.run_dir, split=args.split, data=args.data, verbose=True)
    write_report(args.run_dir)  # the page picks up the new evaluation
    return 0


def _report_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dirs", nargs="+", metavar="RUN")
    parser.add_argument("-o", "--output", metavar="HTML", help="comparison page (default compare.html)")
    parser.add_argument("--markdown", metavar="MD", help="also write the comparison as Markdown")


def _report_runs(args: argparse.Namespace) -> int:
    from .report import compare_runs, write_report

    if len(args.run_dirs) == 1 and not args.output and not args.markdown:
        print(f"wrote {write_report(args.run_dirs[0])}")
        return 0
    _output(args.output or "compare.html", "-o")  # refused before the runs are read
    _output(args.markdown, "--markdown")
    print(f"wrote {compare_runs(args.run_dirs, args.output or 'compare.html', args.markdown)}")
    return 0


def _explain_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", metavar="RUN_DIR", help="a run folder or a checkpoint file")
    parser.add_argument("inputs", nargs="+", metavar="FILE|DIR")
    parser.add_argument("-o", "--out", metavar="OUT_DIR", help="folder for the PNGs (default RUN_DIR/explain)")
    parser.add_argument("--class", dest="class_name", metavar="NAME", help="explain this class, not the predicted one")
    parser.add_argument("--layer", metavar="NAME", help="module to explain (default: the last conv of `features`)")


def _explain(args: argparse.Namespace) -> int:
    from .explain import default_out_dir, explain_paths

    out = args.out or default_out_dir(args.source)
    rows, skipped, layer = explain_paths(args.source, args.inputs, out, class_name=args.class_name, layer=args.layer)
    for path, reason in skipped:
        print(f"visiontrain: skipped {path}: {reason}", file=sys.stderr)
    if not rows:
        print("visiontrain: error: no readable image among the inputs", file=sys.stderr)
        return 2
    print(f"wrote {len(rows)} Grad-CAM images (layer {layer}) to {out}")
    return 0


# -- using a model: predict, export, eject ----------------------------------------------------------------------------
def _predict_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", help="a run folder, a checkpoint file or an export bundle folder")
    parser.add_argument("inputs", nargs="+", metavar="FILE|DIR")
    parser.add_argument("--top-k", type=int, default=5)
    parser.add_argument("--format", dest="output_format", default="table", choices=LazyChoices(_output_formats),
                        metavar="FORMAT", help="%(choices)s (default %(default)s)")
    parser.add_argument("-o", "--output", help="write the rows to this file")
    parser.add_argument("--gallery", metavar="PNG", help="also draw the images with their top prediction (the first "
                        "64; red: wrong where the parent folder names the true class)")
    parser.add_argument("--tta", action=argparse.BooleanOptionalAction, default=None,
                        help="test-time augmentation (default: as the run was trained)")


def _predict(args: argparse.Namespace) -> int:
    from ._io import atomic_write_text
    from .predict import GALLERY_MAX, format_rows, gallery_target, predict_paths, write_gallery

    _output(args.output, "-o")  # refused before any image is decoded
    gallery = args.gallery and gallery_target(args.gallery, args.inputs, output=args.output, source=args.source)

    def progress(done: int, total: int) -> None:  # a live count on a terminal; nothing in logs and pipes
        if sys.stderr.isatty():
            print(f"\rpredicted {done}/{total} images", end="\n" if done == total else "", file=sys.stderr, flush=True)

    rows, skipped = predict_paths(args.source, args.inputs, top_k=args.top_k, tta=args.tta, on_progress=progress,
                                  keep_pixels=GALLERY_MAX if gallery else 0)
    for path, reason in skipped:
        print(f"visiontrain: skipped {path}: {reason}", file=sys.stderr)
    if not rows:  # as explain says it: an empty table is no answer
        print("visiontrain: error: no readable image among the inputs", file=sys.stderr)
        return 2
    unlike = sum("unlike the training images" in row["note"] for row in rows)
    if unlike:  # also when the rows go to a file
        print(f"visiontrain: {unlike} of {len(rows)} image(s) are unlike the training images (see their note): "
              "their predictions may be meaningless", file=sys.stderr)
    text = format_rows(rows, args.output_format)
    if gallery:
        print(f"wrote {write_gallery(rows, gallery)}", file=sys.stderr if not args.output else sys.stdout)
    if args.output:
        atomic_write_text(args.output, text if text.endswith("\n") else text + "\n")
        print(f"wrote {len(rows)} predictions to {args.output}")
    else:
        print(text)
    return 0


def _export_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", help="a run folder or a checkpoint file")
    parser.add_argument("--format", default="onnx", choices=LazyChoices(EXPORTERS.names), metavar="FORMAT",
                        help="%(choices)s: the registered export formats (default %(default)s)")
    parser.add_argument("-o", "--out", help="bundle folder (default RUN/export/FORMAT)")
    parser.add_argument("--data", help="verify on this image folder (same class folders) instead of the run's dataset")


def _export(args: argparse.Namespace) -> int:
    from .export import export_run

    bundle = export_run(args.run_dir, args.format, args.out, data=args.data)
    check = json.loads((bundle / "model.json").read_text())["verification"]
    print(f"wrote {bundle} (verified on {check['images']} real images: max |logit difference| "
          f"{check['max_abs_diff']:.2e}, top-1 agreement {check['top1_agreement']:.0%})")
    return 0


def _eject_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir")
    parser.add_argument("-o", "--output", default="train_plain.py")


def _eject(args: argparse.Namespace) -> int:
    from ._io import output_file
    from .eject import eject

    print(f"wrote {eject(args.run_dir, output_file(args.output, '-o'))}")
    return 0


# -- looking at data and models -----------------------------------------------------------------------------------
def _data_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dataset", help="a dataset name or an image folder")
    parser.add_argument("--data-dir")
    parser.add_argument("--json", metavar="FILE", help="also write the report as JSON")
    parser.add_argument("-o", "--html", metavar="FILE", help="the self-contained HTML page with thumbnails of the "
                        "problems (default data_report.html in the current folder)")


def _data(args: argparse.Namespace) -> int:
    from ._io import atomic_write_text
    from .data.inspect import check_dataset, format_report, problem_count
    from .report.data_report import html_target, write_data_report

    build_config({"dataset": args.dataset, "data_dir": args.data_dir, "model": "lenet"}, apply_preset=False)
    html = html_target(args.html)  # a bad -o is refused before the check, not after it
    check = check_dataset(args.dataset, data_dir=args.data_dir)
    report = check.report
    print(format_report(report))
    if args.json:
        atomic_write_text(args.json, json.dumps(report, indent=2, default=str) + "\n")
    print(f"wrote {write_data_report(check, html)}")
    return 1 if problem_count(report) else 0  # scripts can gate on a clean folder


def _show_batch_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dataset", help="a dataset name or an image folder")
    parser.add_argument("--augmented", action="store_true", help="after the augmentation the trainer would apply")
    parser.add_argument("--data-dir")
    parser.add_argument("-n", type=int, default=32, dest="count", help="how many images (default 32)")
    parser.add_argument("-o", "--output", metavar="FILE.png", help="default: <dataset>-batch[-augmented].png")
    parser.add_argument("--seed", type=int, default=0, help="the training seed: it picks the order and the augmentation")
    parser.add_argument("--augment", help="override the config's augment mode (auto, none, crop, flip, crop+flip, "
                        "photo)")
    parser.add_argument("--rotation", type=float, help="override the config's random rotation, degrees")
    parser.add_argument("--crop-scale", type=float, help="override photo mode's smallest crop area fraction")
    parser.add_argument("--jitter", type=float, help="override the colour jitter strength")
    parser.add_argument("--auto-augment", help="override the per-image policy (none, trivial, randaugment)")
    parser.add_argument("--randaugment-ops", type=int, help="override RandAugment's operations per image")
    parser.add_argument("--randaugment-magnitude", type=int, help="override RandAugment's strength (0-30)")
    parser.add_argument("--mixup", type=float, help="override MixUp's alpha (0: off)")
    parser.add_argument("--cutmix", type=float, help="override CutMix's alpha (0: off)")


SHOW_BATCH_OVERRIDES = ("augment", "rotation", "crop_scale", "jitter", "auto_augment", "randaugment_ops",
                        "randaugment_magnitude", "mixup", "cutmix")


def _show_batch(args: argparse.Namespace) -> int:
    from .report.batch import show_batch

    overrides = {name: getattr(args, name) for name in SHOW_BATCH_OVERRIDES if getattr(args, name) is not None}
    path = show_batch(args.dataset, augmented=args.augmented, data_dir=args.data_dir, count=args.count,
                      output=args.output, seed=args.seed, **overrides)
    print(f"wrote {path}")
    return 0


def _model_shape_arguments(parser: argparse.ArgumentParser, batch: bool = False) -> None:
    parser.add_argument("--model", required=True)
    parser.add_argument("--input", help="C x H x W of one image, e.g. 1x28x28 or 3x32x32 (required)")
    if batch:
        parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--num-classes", type=int, default=10)
    parser.add_argument("--width", type=float, default=1.0)


def _summary(args: argparse.Namespace) -> int:
    from .models import MODELS, create_model
    from .models.shapes import parse_input
    from .models.summary import format_table

    MODELS.get(args.model)  # an unknown name before a missing --input: UnknownNameError suggests the closest ones
    channels, height, width = parse_input(args.input)
    try:
        model = create_model(args.model, num_classes=args.num_classes, in_channels=channels, image_size=height,
                             width=args.width)
    except ValueError as error:
        raise ConfigError(f"--model {args.model}: {error}") from None
    print(format_table(model, (channels, height, width), title=f"{args.model}, input {channels}x{height}x{width}"))
    return 0


def _explain_shapes(args: argparse.Namespace) -> int:
    from .models.shapes import explain

    print(explain(args.model, args.input, batch_size=args.batch_size, num_classes=args.num_classes, width=args.width))
    return 0


def _models_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--timm", metavar="PATTERN", help="list timm's architectures matching PATTERN (e.g. 'resnet*' "
                        "or '*'), as the timm/<name> names --model takes")


def _models(args: argparse.Namespace) -> int:
    from .models import MODELS
    from .models.summary import first_paragraph
    from .models.zoo import timm_names

    if args.timm is not None:
        names = timm_names(args.timm)
        if not names:
            raise ConfigError(f"--timm: no timm architecture matches {args.timm!r}; try a wildcard, e.g. 'resnet*'")
        print("\n".join(names))
        return 0
    for name in MODELS.names():
        print(f"{name:<28} {first_paragraph(MODELS.get(name).__doc__)}")
    for prefix, description in MODELS.prefixes().items():
        print(f"{prefix + '<name>':<28} {description}")
    return 0


def _datasets(args: argparse.Namespace) -> int:
    from ._registry import DATASETS

    for name in DATASETS.names():
        print(f"{name:<16} {DATASETS.get(name).description}")
    print(f"{'PATH':<16} any image folder: PATH/<class>/*.jpg, or PATH/train/<class>/..., PATH/test/<class>/...")
    return 0


def _presets(args: argparse.Namespace) -> int:
    from ._registry import PRESETS
    from .presets import LONG_BUDGET

    def flags(values: dict) -> str:
        return " ".join(f"--{k.replace('_', '-')} {v}" for k, v in values.items())

    for name in PRESETS.names():
        values = PRESETS.get(name)
        print(f"{name:<16} " + flags(values))
        if "dataset" not in values:
            print(f"{'':<16} a recipe for your own data: add --dataset FOLDER")
        if name in LONG_BUDGET:
            epochs, network = LONG_BUDGET[name]
            print(f"{'':<16} with --time: {flags(network)} when the budget trains {epochs} epochs or more of it")
    return 0


def _cache_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", nargs="?", default="list", choices=["list", "clear"],
                        help="list what is cached (the default), or clear it")
    parser.add_argument("name", nargs="?", metavar="NAME", help="clear only this dataset's files (a name the list "
                        "shows); default: all of visiontrain's cache")


def _cache(args: argparse.Namespace) -> int:
    from .data import cache

    home = cache.home()
    if args.action == "clear":
        removed = cache.clear(args.name)
        if not removed:
            print(f"nothing to clear: the cache in {home} is empty")
        for entry in removed:
            print(f"removed {entry.name}: {entry.kind}, {_size(entry.size)}")
        if removed:
            print(f"freed {_size(sum(e.size for e in removed))} in {home}")
        return 0
    if args.name is not None:
        raise ConfigError(f"cache: NAME goes with clear (`visiontrain cache clear {args.name}`); `visiontrain cache` "
                          "lists everything")
    listed = cache.entries()
    where = "VISIONTRAIN_HOME" if os.environ.get("VISIONTRAIN_HOME") else "the default; VISIONTRAIN_HOME moves it"
    print(f"visiontrain's cache: {home} ({where})")
    if not listed:
        print("nothing is cached")
        return 0
    rows = [("dataset", "what", "size", "last use")] + [
        (e.name, e.kind + (f", {len(e.keys)} copies" if len(e.keys) > 1 else ""), _size(e.size),
         time.strftime("%Y-%m-%d %H:%M", time.localtime(e.last_used))) for e in listed]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    for row in rows:
        print(f"{row[0]:<{widths[0]}}  {row[1]:<{widths[1]}}  {row[2]:>{widths[2]}}  {row[3]}")
    print(f"total {_size(sum(e.size for e in listed))}; `visiontrain cache clear NAME` removes one dataset's files, "
          "`visiontrain cache clear` all (pretrained weights live in torch's and Hugging Face's own caches)")
    return 0


def _size(size: int) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size} {unit}" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1024
    return ""


def _completion_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("shell", choices=["bash", "zsh"], help="the shell to write the script for")


def _completion(args: argparse.Namespace) -> int:
    from .completion import script

    print(script(build_parser(), args.shell), end="")
    return 0


def _no_arguments(parser: argparse.ArgumentParser) -> None:
    pass


COMMANDS: dict[str, Command] = {
    "train": Command("train a model (default: the tuned Fashion-MNIST recipe)", _train_arguments, _train,
                     {"usage": "%(prog)s [--config FILE] [--resume RUN_DIR] [--FIELD VALUE ...]",
                      "description": CONFIG_FLAGS}),
    "eval": Command("evaluate a run: accuracy, per-class table, confusion matrix", _eval_arguments, _eval),
    "summary": Command("layer-by-layer output shapes, parameters and multiply-adds", _model_shape_arguments, _summary),
    "explain-shapes": Command("walk one random batch through a model: each layer's output shape, dtype and value "
                              "range", lambda parser: _model_shape_arguments(parser, batch=True), _explain_shapes),
    "show-batch": Command("a labelled grid of training images, raw or augmented as in training", _show_batch_arguments,
                          _show_batch),
    "data": Command("check a dataset: class counts, bad files, duplicates across splits", _data_arguments, _data,
                    {"description": "Every problem is reported in one pass. Exit status: 0 for a clean dataset, 1 when "
                     "problems were found (folder problems, unreadable files, duplicates), 2 when the dataset cannot "
                     "be checked at all."}),
    "eject": Command("write a run as one plain PyTorch script (no visiontrain needed)", _eject_arguments, _eject),
    "export": Command("export a run as a verified ONNX / TorchScript / torch.export (pt2) / safetensors bundle",
                      _export_arguments, _export),
    "predict": Command("top-k class names for image files and folders", _predict_arguments, _predict),
    "explain": Command("Grad-CAM: where the model looked, one PNG per image", _explain_arguments, _explain),
    "report": Command("report.html of a run, or one page comparing several runs", _report_arguments, _report_runs),
    "sweep": Command("train a grid of settings (comma-separated values), resumable, and compare the runs",
                     _sweep_arguments, _sweep,
                     {"usage": "%(prog)s [--config FILE] [--FIELD VALUE[,VALUE...] ...]",
                      "description": "Every config flag given comma-separated values (--lr 0.01,0.001 --model "
                      "lenet,mlp) is an axis of the grid; the other flags are shared. Runs go to RUNS_DIR/sweep-NAME/; "
                      "rerunning the command skips finished runs and resumes an interrupted one."}),
    "lr-find": Command("learning-rate range test: loss vs an exponentially rising lr, and a suggested lr (writes "
                       "lr_find.png and lr_find.csv, trains no run)", _lr_find_arguments, _lr_find,
                       {"usage": "%(prog)s [--start-lr X] [--end-lr X] [--steps N] [-o DIR] [--FIELD VALUE ...]",
                        "description": CONFIG_FLAGS}),
    "models": Command("list the registered models", _models_arguments, _models),
    "datasets": Command("list the named datasets", _no_arguments, _datasets),
    "presets": Command("list the tuned recipes", _no_arguments, _presets),
    "cache": Command("list visiontrain's cache (decoded datasets, downloads), or clear it", _cache_arguments, _cache,
                     {"usage": "%(prog)s [list | clear [NAME]]",
                      "description": "The cache lives in VISIONTRAIN_HOME (default ~/.cache/visiontrain). Clearing "
                      "removes only what the list shows, never anything outside that folder; a cleared dataset is "
                      "decoded (or downloaded) again the next time it is used."}),
    "completion": Command("print a shell completion script (bash or zsh)", _completion_arguments, _completion,
                          {"description": "bash: add `eval \"$(visiontrain completion bash)\"` to ~/.bashrc (or save "
                           "the script in ~/.local/share/bash-completion/completions/visiontrain). zsh: save it as "
                           "_visiontrain in a folder of $fpath, e.g. `visiontrain completion zsh > "
                           "\"${fpath[1]}/_visiontrain\"`, then start a new shell."}),
}


if __name__ == "__main__":
    sys.exit(main())
