"""The one configuration of a run: a frozen dataclass that YAML files, CLI flags and the Python API all map onto.

Resolution order (later wins): field defaults -> preset -> YAML file -> explicit flags / keyword arguments.
Validation happens here, before any data is read, and every error names the field and what is allowed.
"""
from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Literal, Optional, Union

from ._registry import DATASETS, LOGGERS, MODELS, PRESETS
from .presets import LONG_BUDGET
from .errors import ConfigError
from .windows import parse_window

FORMAT_VERSION = 1  # of config.yaml / checkpoints / summary.json; bumped on incompatible change
CHECKPOINT_KIND = "visiontrain-checkpoint"  # a checkpoint's "kind" (engine/checkpoint.py writes, models/weights.py reads)


GROUPS = {"data": "data: what is read and how it is augmented",
          "model": "model: the network and where its weights start",
          "optimisation": "optimisation: loss, optimiser, schedule, epochs",
          "runtime": "runtime: device, precision, run folder, checkpoints"}


def _field(group: str, default: Any, help: str, range: tuple[float, float, str] | None = None) -> Any:
    """A config field with its documentation in one place: --help, validation and the docs read it from here.
    range: (lowest, highest, what is allowed, in words) for numbers."""
    return dataclasses.field(default=default, metadata={"group": group, "help": help, "range": range})


@dataclass(frozen=True)
class Config:
    """Every setting of a run. Flags (--batch-size), YAML keys (batch_size) and keyword arguments map onto it."""

    # -- data --------------------------------------------------------------------------------------------
    dataset: str = _field("data", "fashion-mnist", "a dataset name (see `visiontrain datasets`) or an image folder: "
                          "root/<class>/*.jpg, or root/train/<class>/... with val/ or test/ beside it")
    data_dir: Optional[str] = _field("data", None, "the folder holding a named dataset's files; default: the cache, "
                                     "a system copy (Debian's), then a verified download")
    val_fraction: float = _field("data", 0.1, "share of train held out (seeded, stratified) to choose the best epoch "
                                 "when the dataset has no val split", (0.0, 0.9, "a fraction from 0 (no validation "
                                                                       "split) to 0.9"))
    fraction: float = _field("data", 1.0, "train on this share of the training split (after val is held out), "
                             "drawn per class with the seed; val and test stay whole", (1e-6, 1.0, "a fraction above 0 "
                                                                                       "and at most 1, e.g. 0.1"))
    limit: Optional[int] = _field("data", None, "a quick try: at most N images in each of train, val and test, drawn "
                                  "per class with the seed; default: all", (1, 1 << 40, "a whole number of images >= 1, "
                                                                            "e.g. 1000"))
    image_size: Optional[int] = _field("data", None, "side in pixels that images are resized to (shorter side, then "
                                       "centre crop); default: the dataset's own", (8, 4096, "pixels from 8 to 4096"))
    channels: Optional[int] = _field("data", None, "1 (gray) or 3 (RGB); default: from the data (all gray -> 1)",
                                     (1, 3, "1 or 3"))
    augment: Literal["auto", "none", "crop", "flip", "crop+flip", "photo"] = _field(
        "data", "auto", "auto: translate, plus flip unless digits; photo: random resized crop, flip and colour "
        "jitter (for colour photos)")
    crop_padding: int = _field("data", 2, "pixels of translation for crop augmentation", (0, 64, "pixels from 0 to 64"))
    flip_mode: Literal["random", "alternate"] = _field(
        "data", "random", "alternate: each image gets one random flip, mirrored on every other epoch (airbench's "
        "derandomised flip: every image is seen both ways within two epochs)")
    rotation: float = _field("data", 0.0, "largest random rotation, degrees (0: off)", (0.0, 180.0,
                                                                                      "degrees from 0 to 180"))
    crop_scale: float = _field("data", 0.35, "photo mode: the random resized crop keeps from this fraction of the "
                               "area up to all of it", (0.01, 1.0, "an area fraction from 0.01 to 1, e.g. 0.35"))
    jitter: Optional[float] = _field("data", None, "colour jitter strength j (factors in [1-j, 1+j]); default: 0.4 "
                                     "in photo mode, else off", (0.0, 1.0, "a strength from 0 (off) to 1, e.g. 0.4"))
    auto_augment: Literal["none", "trivial", "randaugment"] = _field(
        "data", "none", "a per-image augmentation policy after the others, as torchvision's: trivial: "
        "TrivialAugmentWide (one of 14 operations at a random strength), randaugment: RandAugment "
        "(--randaugment-ops operations at --randaugment-magnitude)")
    randaugment_ops: int = _field("data", 2, "RandAugment: operations applied to each image",
                                  (1, 14, "a whole number of operations from 1 to 14"))
    randaugment_magnitude: int = _field("data", 9, "RandAugment: the strength, a bin from 0 to 30 (timm's m9)",
                                        (0, 30, "a whole number from 0 to 30"))
    mixup: float = _field("data", 0.0, "MixUp's alpha: each training batch is blended with itself shifted by one "
                          "image, weight ~ Beta(alpha, alpha), and the labels alike (timm: --mixup 0.8); 0: off",
                          (0.0, 100.0, "an alpha >= 0, e.g. 0.2 or 0.8 (0: off)"))
    cutmix: float = _field("data", 0.0, "CutMix's alpha: a box of the neighbouring image is pasted in, the labels "
                           "mixed by area (timm: --cutmix 1.0); with --mixup too, each batch takes one; 0: off",
                           (0.0, 100.0, "an alpha >= 0, e.g. 1.0 (0: off)"))
    strict: bool = _field("data", False, "an unreadable image stops the run before training (default: listed, "
                          "skipped and recorded in summary.json)")
    split_file: Optional[str] = _field("data", None, "a split.csv (path, class, split, sha1) fixing an image "
                                       "folder's train/val/test, e.g. an earlier run's")
    class_names: Optional[str] = _field("data", None, "a file mapping class folder names to display names "
                                        "(LOC_synset_mapping.txt, a TSV/CSV, a JSON object)")
    sampler: Literal["shuffle", "balanced"] = _field("data", "shuffle", "balanced: each epoch draws images with "
                                                     "probability 1 / their class count")
    class_weights: Literal["none", "auto"] = _field("data", "none", "auto: the loss weighted by 1 / class count "
                                                    "(mean 1)")
    imbalance_threshold: float = _field("data", 3.0, "above this ratio of the largest to the smallest training "
                                        "class, the best epoch is chosen by val balanced accuracy",
                                        (1.0, 1e6, "a ratio >= 1 of the largest to the smallest class count, e.g. 3"))
    window: Optional[str] = _field("data", None, "DICOM and 16-bit gray: LEVEL,WIDTH or soft-tissue, lung, bone, "
                                   "brain; default: the file's own window")
    # -- model -------------------------------------------------------------------------------------------
    model: str = _field("model", "fastnet", "a model name (see `visiontrain models`), or timm/<name>")
    width: float = _field("model", 1.0, "channel-width multiplier of models that have one (fastnet)",
                          (0.05, 16.0, "a multiplier from 0.05 to 16"))
    pretrained: bool = _field("model", False, "start from pretrained weights: torchvision's or timm's by name "
                              "(downloaded once into their caches), an installed package's, or --weights FILE")
    weights: Optional[str] = _field("model", None, "a state-dict file to start from (loaded weights-only)")
    finetune: Literal["auto", "full", "head", "gradual", "probe"] = _field(
        "model", "auto", "auto: probe from pretrained weights, else full; probe: epoch 1 fits the new head to the "
        "frozen backbone's features (computed once: a linear probe), then everything fine-tunes; gradual: "
        "--head-epochs of the head alone, then everything; head: only the new head trains")
    head_epochs: int = _field("model", 1, "gradual: epochs that train only the new head (the backbone and its "
                              "BatchNorm frozen)", (0, 100_000, "a whole number of epochs >= 0"))
    backbone_lr: float = _field("model", 0.1, "with pretrained weights: the backbone's lr as a fraction of --lr",
                                (0.0, 10.0, "a fraction of --lr from 0 to 10"))
    # -- optimisation ------------------------------------------------------------------------------------
    epochs: int = _field("optimisation", 10, "passes over the training split", (1, 100_000,
                                                                                "a whole number of epochs >= 1"))
    max_steps: Optional[int] = _field("optimisation", None, "stop after this many training steps (batches per "
                                      "process), the last epoch partial; the schedule ends there; default: epochs x "
                                      "the steps of an epoch", (1, 1 << 40, "a whole number of steps >= 1"))
    time: Optional[str] = _field("optimisation", None, "a wall-clock budget for the whole run, e.g. 90s, 5m or 1h: "
                                 "the first steps are timed and epochs and max_steps are sized so that the schedule "
                                 "ends, and evaluation and the report finish, within it, revised at each epoch's end "
                                 "from its measured time (config.yaml records the steps); default: no budget")
    long_budget_network: bool = _field(
        "optimisation", True, "with --time: train the preset's network for long budgets (`visiontrain presets` lists "
        "them) when the budget fits enough epochs of it; off when --model or --width is named")
    batch_size: int = _field("optimisation", 128, "images per step, per process (shrunk to the training split when "
                             "larger)", (1, 1 << 20, "a whole number >= 1"))
    optimizer: Literal["sgd", "adam", "adamw"] = _field("optimisation", "adam", "the optimiser")
    lr: float = _field("optimisation", 2e-3, "peak learning rate", (1e-12, 100.0, "a positive number such as 0.001"))
    momentum: float = _field("optimisation", 0.9, "SGD momentum (Adam: beta1)", (0.0, 0.9999, "from 0 to below 1"))
    nesterov: bool = _field("optimisation", True, "Nesterov momentum (SGD only)")
    weight_decay: float = _field("optimisation", 5e-4, "L2 weight decay", (0.0, 10.0, "a number >= 0"))
    bias_lr_scale: float = _field("optimisation", 1.0, "lr multiplier for normalisation-layer biases (airbench: 64); "
                                  "above 1 they are decayed by weight_decay / bias_lr_scale",
                                  (1e-3, 1e4, "a positive multiplier, e.g. 64"))
    schedule: Literal["onecycle", "cosine", "step", "linear", "constant"] = _field(
        "optimisation", "onecycle", "the learning-rate schedule, stepped every optimiser step")
    warmup_epochs: float = _field("optimisation", 0.0, "linear warm-up before cosine, step or linear (onecycle has "
                                  "its own 30% ramp)", (0.0, 1000.0, "a number of epochs >= 0"))
    step_size: int = _field("optimisation", 5, "step schedule: epochs between decays", (1, 100_000,
                                                                                      "a whole number of epochs >= 1"))
    gamma: float = _field("optimisation", 0.1, "step schedule: the decay factor", (1e-9, 1.0, "a factor in (0, 1]"))
    label_smoothing: float = _field("optimisation", 0.0, "label smoothing of the cross-entropy",
                                    (0.0, 0.99, "from 0 to below 1"))
    accumulate: int = _field("optimisation", 1, "batches whose gradients add up to one optimiser step",
                             (1, 4096, "a whole number >= 1"))
    clip_grad: Optional[float] = _field("optimisation", None, "largest gradient norm; default: no clipping",
                                        (1e-9, 1e9, "a positive gradient norm"))
    ema: Optional[float] = _field("optimisation", None, "decay of an exponential moving average of the weights, e.g. "
                                  "0.99; default: off", (0.0, 0.999999, "a decay in [0, 1), e.g. 0.99"))
    lookahead: bool = _field("optimisation", False, "airbench's lookahead: every 5 steps the weights move to a slow "
                             "average of themselves; the run ends on the slow weights")
    early_stop: Optional[int] = _field("optimisation", None, "stop after this many epochs without a better val "
                                       "accuracy", (1, 100_000, "a whole number of epochs >= 1"))
    tta: bool = _field("optimisation", False, "test-time augmentation in the test evaluation and predict: the mean "
                       "over the mirror image and 1 px shifts")
    calibrate: bool = _field("optimisation", True, "after training, fit a temperature on the validation split so "
                             "that predicted probabilities match how often the model is right (temperature scaling; "
                             "the predicted class never changes); off: the raw softmax")
    overfit_batch: int = _field("optimisation", 0, "sanity check: train only on this many fixed images (one batch, "
                                "no augmentation) and say whether the model can learn them; 0: off",
                                (0, 1 << 16, "a number of images >= 0 (0: off), e.g. 32"))
    overfit_steps: int = _field("optimisation", 200, "overfit-batch: optimiser steps on the batch",
                                (1, 1_000_000, "a whole number of steps >= 1"))
    # -- runtime -----------------------------------------------------------------------------------------
    seed: int = _field("runtime", 0, "the seed of data order, augmentation and initialisation")
    device: str = _field("runtime", "auto", "auto, cpu, cuda, cuda:N or mps")
    precision: Literal["auto", "fp32", "bf16", "fp16"] = _field(
        "runtime", "auto", "training precision; auto: bf16 where the hardware has it natively (a GPU; a CPU with "
        "AVX512_BF16 or AMX, unless ONEDNN_MAX_CPU_ISA caps oneDNN below them), else fp32")
    inference_precision: Literal["fp32", "bf16", "fp16"] = _field(
        "runtime", "fp32", "precision of the test evaluation, eval, predict and explain: one numeric path whatever "
        "trained the model (the per-epoch validation uses the training precision)")
    channels_last: Optional[bool] = _field("runtime", None, "channels-last memory format; default: on for the CPU "
                                           "and CUDA")
    compile: bool = _field("runtime", False, "torch.compile the model (slower on the CPU at these run lengths)")
    threads: Optional[int] = _field("runtime", None, "torch CPU threads; default: all cores",
                                    (1, 1024, "a whole number >= 1"))
    deterministic: bool = _field("runtime", False, "PyTorch's deterministic algorithms (bit-identical GPU runs)")
    sync_bn: bool = _field("runtime", False, "under torchrun: synchronise BatchNorm statistics across processes")
    eval_batch_size: int = _field("runtime", 1024, "images per evaluation batch", (1, 1 << 20, "a whole number >= 1"))
    checkpoint_every: int = _field("runtime", 0, "also write a step checkpoint every N optimiser steps (0: only at "
                                   "epoch ends)", (0, 1 << 40, "a whole number of steps >= 0"))
    checkpoint_minutes: float = _field("runtime", 5.0, "... and at least this often, in wall minutes (0: off)",
                                       (0.0, 1e6, "minutes >= 0"))
    name: Optional[str] = _field("runtime", None, "the run folder's name under runs_dir; default: "
                                 "<dataset>-<model>[-N]")
    runs_dir: str = _field("runtime", "runs", "the folder of run folders")
    preset: Optional[str] = _field("runtime", None, "a tuned recipe (see `visiontrain presets`); flags override it; "
                                   "default: the dataset's own preset when no model is named")
    progress: Literal["auto", "bar", "line", "none"] = _field(
        "runtime", "auto", "auto: a live bar on a terminal, else a line per epoch")
    report: bool = _field("runtime", True, "write plots/ and report.html at the end of the run")
    logger: str = _field("runtime", "csv", "experiment loggers, comma-separated: csv (always on: steps.csv), "
                         "tensorboard (RUN/tensorboard/), mlflow (RUNS_DIR/mlflow.db); see docs/ecosystem.md")
    log_every: int = _field("runtime", 10, "loggers: per-step scalars (loss, lr, images/s) every N training steps",
                            (0, 1 << 40, "a whole number of steps >= 0 (0: per epoch only)"))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> "Config":
        return build_config(self.to_dict() | changes, apply_preset=False)


# Fields that define what is being trained; changing them on resume would silently mix two experiments.
RESUME_UNSAFE_FIELDS = ("dataset", "model", "width", "image_size", "channels", "batch_size", "accumulate",
                        "optimizer", "schedule", "seed", "lookahead", "val_fraction", "split_file", "sampler", "class_weights",
                        "imbalance_threshold", "overfit_batch", "window", "class_names", "fraction", "limit")

FIELDS = {f.name: f for f in fields(Config)}  # name -> dataclasses.Field, with its help, group and range
_NAMES = set(FIELDS)


def _hints() -> dict[str, Any]:
    return typing.get_type_hints(Config)


def _coerce(name: str, value: Any, hint: Any) -> Any:
    """Convert YAML/CLI values to the field's type, or raise ConfigError naming the field."""
    origin = typing.get_origin(hint)
    if origin in (Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null", "")):
            return None
        return _coerce(name, value, args[0])
    if origin is Literal:
        allowed = typing.get_args(hint)
        if isinstance(value, str) and value.strip().lower() in allowed:  # --optimizer SGD means sgd
            return value.strip().lower()
        if value not in allowed:
            raise ConfigError(f"{name}: {value!r} is not allowed; choose one of {', '.join(map(str, allowed))}")
        return value
    try:
        if hint is bool:
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.lower() in ("true", "yes", "1", "on", "false", "no", "0", "off"):
                return value.lower() in ("true", "yes", "1", "on")
            raise ValueError
        if hint is int:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError
            return int(value)
        if hint is float:
            if isinstance(value, bool):
                raise ValueError
            result = float(value)
            if not math.isfinite(result):
                raise ValueError
            return result
        if hint is str:
            if not isinstance(value, (str, Path)):
                raise ValueError
            return str(value)
    except (TypeError, ValueError):
        pass
    else:
        raise AssertionError(f"unhandled type {hint} for {name}")
    kind = {bool: "true or false", int: "a whole number", float: "a number", str: "text"}[hint]
    raise ConfigError(f"{name}: {value!r} is not {kind}")


_FOLDER_NAME = re.compile(r"[^\W][\w.+-]*")  # a letter, digit or _, then those, '.', '+' or '-'
FOLDER_NAME_BYTES = 200  # below the usual 255-byte limit of a file name, leaving room for suffixes


def check_folder_name(field: str, name: str) -> None:
    """Refuse a run or sweep name that is not a plain folder name. The name becomes a folder and is written into
    pages, CSV and Markdown files and the script `eject` writes, so quotes, '$', '<', spaces and the like have no
    place in it; `--name e\"\"\";...` would otherwise be a way to put code into that script."""
    if not _FOLDER_NAME.fullmatch(name) or len(name.encode("utf-8", "surrogateescape")) > FOLDER_NAME_BYTES:
        raise ConfigError(f"{field}: {name!r} is not a plain folder name; use letters, digits and the characters "
                          f". _ + - (starting with a letter, a digit or _), at most {FOLDER_NAME_BYTES} bytes, "
                          "e.g. cifar-resnet_2")


def budget_seconds(text: str) -> float:
    """Seconds of a --time budget: '90', '90s', '5m', '1.5h', '1h30m'; ConfigError naming the field otherwise."""
    total, rest = 0.0, str(text).strip().lower()
    units = {"h": 3600.0, "m": 60.0, "s": 1.0}
    for match in re.finditer(r"(\d+(?:\.\d+)?)\s*([hms]?)", rest):
        total += float(match.group(1)) * units[match.group(2) or "s"]
    if not rest or re.sub(r"(\d+(?:\.\d+)?)\s*([hms]?)", "", rest).strip() or not 1 <= total <= 30 * 86400:
        raise ConfigError(f"time: {text!r} is not a budget; use seconds, minutes or hours such as 90s, 5m, 1.5h or "
                          "1h30m (from 1 s to 30 days)")
    return total


def _check_value(name: str, value: Any) -> None:
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:  # bytes that are not UTF-8 in a path given on the command line
            shown = value.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
            raise ConfigError(f"{name}: {shown!r} is not valid UTF-8 text; rename the file or folder (its name is "
                              "written into config.yaml, CSV and JSON files)") from None
    allowed_range = FIELDS[name].metadata["range"]
    if value is None or allowed_range is None:
        return
    low, high, allowed = allowed_range
    if not low <= value <= high:
        raise ConfigError(f"{name}: {value!r} is out of range; use {allowed}")


def build_config(values: dict[str, Any] | None = None, *, apply_preset: bool = True) -> Config:
    """Validate `values` (field -> value, from YAML, flags or keyword arguments) into a Config.

    With `apply_preset`, the preset named by `values['preset']` fills every field the caller did not set.
    When no preset and no model are named and the dataset has a tuned preset, that preset is used: the
    plain `visiontrain train` is the tuned Fashion-MNIST recipe.
    """
    values = dict(values or {})
    unknown = sorted(set(values) - _NAMES)
    if unknown:
        import difflib

        close = difflib.get_close_matches(unknown[0], sorted(_NAMES), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(f"unknown config field {unknown[0]!r}{hint}; valid fields: {', '.join(sorted(_NAMES))}")
    hints = _hints()
    if apply_preset:
        dataset = values.get("dataset", Config.dataset)
        preset = values.get("preset")
        if preset is None and "model" not in values and dataset in PRESETS:
            preset = dataset
        if preset is not None:
            if preset not in PRESETS:
                raise ConfigError(f"preset: {PRESETS.unknown_message(str(preset))}")
            if "dataset" not in PRESETS.get(preset) and "dataset" not in values:  # a recipe for the user's data
                raise ConfigError(f"preset {preset} is a recipe for your own data and names no dataset: give "
                                  "--dataset FOLDER (or a dataset's name, e.g. --dataset cifar10)")
            if any(name in values for name in LONG_BUDGET.get(preset, (0, {}))[1]):  # the user's own network
                values.setdefault("long_budget_network", False)
            values = PRESETS.get(preset) | {"preset": preset} | values
    resolved = {}
    for f in fields(Config):
        if f.name in values:
            value = _coerce(f.name, values[f.name], hints[f.name])
            _check_value(f.name, value)
            resolved[f.name] = value
    config = Config(**resolved)
    _check_combinations(config)
    return config


def _check_combinations(config: Config) -> None:
    if config.dataset not in DATASETS and not Path(config.dataset).expanduser().exists():
        looks_like_path = any(sep in config.dataset for sep in ("/", "\\", ".")) or config.dataset.startswith("~")
        if looks_like_path:
            raise ConfigError(f"dataset: the folder {config.dataset!r} does not exist; give the path to an image "
                              f"folder (root/<class>/*.jpg) or a dataset name: {', '.join(DATASETS.names())}")
        raise ConfigError(f"dataset: {DATASETS.unknown_message(config.dataset)}, or a path to an image folder")
    if Path(config.dataset).expanduser().is_file():
        raise ConfigError(f"dataset: {config.dataset!r} is a file; give the folder that holds one sub-folder per class")
    if config.data_dir is not None and not Path(config.data_dir).expanduser().is_dir():
        raise ConfigError(f"data_dir: {config.data_dir!r} is not a folder")
    if config.split_file is not None:
        if not Path(config.split_file).expanduser().is_file():
            raise ConfigError(f"split_file: the file {config.split_file!r} does not exist")
        if config.dataset in DATASETS:
            raise ConfigError(f"split_file: {config.dataset!r} is a named dataset; a split file lists the files of an "
                              "image folder")
    if config.class_names is not None and not Path(config.class_names).expanduser().is_file():
        raise ConfigError(f"class_names: the file {config.class_names!r} does not exist" if not
                          Path(config.class_names).expanduser().exists() else
                          f"class_names: {config.class_names!r} is a folder; give the file that maps class folder "
                          "names to display names")
    if config.weights is not None and not Path(config.weights).expanduser().is_file():
        raise ConfigError(f"weights: the file {config.weights!r} does not exist")
    if config.model not in MODELS:
        raise ConfigError(f"model: {MODELS.unknown_message(config.model)}")
    if config.window is not None:
        try:
            parse_window(config.window)
        except ValueError as error:
            raise ConfigError(f"window: {error}") from None
    if config.time is not None:
        budget_seconds(config.time)
    if config.channels not in (None, 1, 3):
        raise ConfigError(f"channels: {config.channels} is not allowed; use 1 or 3")
    if not (config.device == "auto" or config.device in ("cpu", "mps") or config.device.startswith("cuda")):
        raise ConfigError(f"device: {config.device!r} is not allowed; use auto, cpu, cuda, cuda:N or mps")
    if config.name is not None:
        check_folder_name("name", config.name)
    for name in {n.strip().lower() for n in config.logger.split(",")} - {""}:  # their packages: when a run starts
        if name not in LOGGERS:
            raise ConfigError(f"logger: {LOGGERS.unknown_message(name)}")


def load_yaml(path: str | Path) -> dict[str, Any]:
    import yaml

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config: the file {str(path)!r} does not exist")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise ConfigError(f"config: {path} is not valid YAML ({error})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config: {path} must be a mapping of field: value")
    if "skip_bad" in data:  # config.yaml files written before --strict replaced --skip-bad (which was opt-in)
        data["strict"] = not data.pop("skip_bad")
    version = data.pop("format_version", FORMAT_VERSION)
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise ConfigError(f"config: {path} has format_version {version!r}, newer than this visiontrain understands "
                          f"({FORMAT_VERSION}); upgrade visiontrain")
    return data


def to_yaml(config: Config) -> str:
    import yaml

    return yaml.safe_dump({"format_version": FORMAT_VERSION} | config.to_dict(), sort_keys=False)


def value_sources(config: Config, flags: dict[str, Any], file_values: dict[str, Any] | None = None,
                  file_name: str | None = None, saved: str | None = None) -> dict[str, str]:
    """Where each field of `config` came from, in the resolution order: 'flag --lr', 'file FILE', 'preset NAME',
    'default' (and 'run RUN_DIR/config.yaml' for a resumed run: `saved`)."""
    file_values = file_values or {}
    preset = PRESETS.get(config.preset) if config.preset in PRESETS and saved is None else {}
    sources = {}
    for name in FIELDS:
        if name in flags:
            sources[name] = "flag --" + name.replace("_", "-")
        elif name in file_values:
            sources[name] = f"file {file_name}"
        elif saved is not None:
            sources[name] = saved
        elif name in preset:
            sources[name] = f"preset {config.preset}"
        elif name == "preset" and config.preset is not None:
            sources[name] = "default: the dataset's own, as no --model was given"
        elif name == "long_budget_network" and not config.long_budget_network:
            sources[name] = "default: off, as the network was named (--model or --width)"
        else:
            sources[name] = "default"
    return sources


def format_sources(config: Config, sources: dict[str, str]) -> str:
    """The config as YAML (usable as --config FILE), each line commented with where its value came from."""
    import yaml

    lines = [(yaml.safe_dump({name: value}, default_flow_style=True, width=1 << 16).strip().removeprefix("{")
              .removesuffix("}"), sources[name]) for name, value in config.to_dict().items()]
    width = min(40, max(len(text) for text, _ in lines))
    return "\n".join([f"format_version: {FORMAT_VERSION}"] + [f"{text:<{width}}  # {source}" for text, source in lines])
