"""`visiontrain eject`: a run written out as one plain PyTorch script, the way a course teaches it.

The script reads exactly the files the run read (the IDX files or CIFAR batches where the run found them, or the
image folder's files listed in a CSV beside the script), never downloads, and keeps the run's discipline: the
run's class order, the same validation split (carved with the same seeded rule, or the run's own), the best epoch
chosen on validation, and the test split touched once at the end. It uses a Dataset and transforms, a
DataLoader, the model written out layer by layer, CrossEntropyLoss, the run's optimiser and schedule, the
five-line training step, and a confusion matrix. It never imports visiontrain: a student can read and change
every line.

Everything that comes from the run (paths, class names, numbers) enters the script's source as a Python literal
(`repr`), never as text pasted into code or a docstring: a folder or class named with three double quotes
followed by code stays a string.
"""
from __future__ import annotations

import csv
import io
from pathlib import Path

from torch import nn

from ._io import atomic_write_text
from .config import build_config, load_yaml
from .data import cache, flip_and_border
from .data.augment import augment_spec
from .data.folder import scan_folder
from .data.registry import DATASETS
from .data.splitfile import read_split_file, relative_path
from .engine.build import create_model
from .engine.checkpoint import load_checkpoint
from .errors import CheckpointError, RunError
from .models.fast import FastNet
from .run import RunDir

_STANDARD = (nn.Conv2d, nn.Linear, nn.ReLU, nn.GELU, nn.MaxPool2d, nn.BatchNorm2d, nn.Dropout, nn.Flatten,
             nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d, nn.Identity)
MARKER = "# Written by `visiontrain eject`"  # the script's first line: eject replaces only files that start with it
_IDX_KEYS = ("train-images", "train-labels", "t10k-images", "t10k-labels")


def model_code(model: nn.Module) -> str:
    """`nn.Sequential(...)` source equal to the model, when it is built only from standard layers in order."""
    leaves = [m for m in model.modules() if next(m.children(), None) is None and not isinstance(m, nn.Identity)]
    if not all(isinstance(m, _STANDARD) for m in leaves) or not isinstance(getattr(model, "features", None), nn.Module):
        return ""
    return "nn.Sequential(\n" + "".join(f"        nn.{m!r},\n" for m in leaves) + "    )"


def eject(run_dir: str | Path, output: str | Path) -> Path:
    """Write the run as a plain PyTorch script at `output`; an image-folder run also gets `<script>_files.csv`
    beside it. Returns the script's path."""
    run = RunDir.open(run_dir)
    config = build_config(load_yaml(run.config_path), apply_preset=False)
    summary = run.read_summary()
    if not summary:
        raise RunError(f"{run.path} has no summary.json; eject a run that finished")
    if config.overfit_batch:
        raise RunError(f"{run.path} is an --overfit-batch sanity check, not a run to repeat; eject a normal run")
    if config.fraction < 1 or config.limit is not None:  # the script reads every image the run's splits hold
        raise RunError(f"{run.path} trained on a sample of its data (--fraction/--limit), which the plain script does "
                       "not draw; eject a run trained on all of it")
    output = _script_path(Path(output))
    data = summary["dataset"]
    model = create_model(config, len(data["classes"]), data["channels"], data["image_size"])
    if isinstance(model, FastNet):
        raise RunError(f"eject writes the tutorial networks and torchvision and timm models; {config.model}'s custom "
                       "layers (patch whitening, frozen-scale BatchNorm) are in visiontrain/models/fast.py to read "
                       "instead")
    code = model_code(model)
    channels, to_rgb = data["channels"], False
    if code:
        model_source = f"def build_model():\n    return {code}"
    elif type(model.features).__module__.startswith("timm."):  # timm/<name>, and efficientnet_lite0
        name = config.model.removeprefix("timm/")
        model_source = (f"def build_model():\n    import timm  # pip install timm\n\n"
                        f"    # timm's {name}, randomly initialised\n"
                        f"    return timm.create_model({name!r}, pretrained=False, num_classes={len(data['classes'])}, "
                        f"in_chans={channels})")
    else:
        model_source = (f"def build_model():\n    # torchvision's {config.model}, randomly initialised\n"
                        f"    return torchvision.models.get_model({config.model!r}, weights=None, "
                        f"num_classes={len(data['classes'])})")
        to_rgb = channels == 1  # torchvision's networks take 3 channels: the gray image, three times
    data_source, files = _data_source(config, data, run, output)
    mode = "RGB" if channels == 3 or to_rgb else "L"
    text = _TEMPLATE.format(
        marker=MARKER, run=str(run.path.resolve()), data_source=data_source, model_source=model_source,
        mean=tuple(round(m, 4) for m in data["mean"]) * (3 if to_rgb else 1),
        std=tuple(round(s, 4) for s in data["std"]) * (3 if to_rgb else 1),
        train_transforms=_train_transforms(config, data, run), mix_source=_mix_source(config), epochs=config.epochs, batch_size=config.batch_size,
        optimizer=_optimizer(config), scheduler=_scheduler(config), label_smoothing=config.label_smoothing,
        seed=config.seed, classes=list(data["classes"]), mode=mode, size=data["image_size"],
        select=summary.get("selection_metric", "val_acc"))
    if files is not None:
        atomic_write_text(files, _files_csv(config, data, run))
    atomic_write_text(output, text)
    return output


def _script_path(output: Path) -> Path:
    """`output`, checked: an existing file is replaced only if eject wrote it."""
    if output.suffix != ".py":
        raise RunError(f"eject -o {output}: the script's name must end in .py")
    if output.exists():
        try:
            ours = output.is_file() and output.read_text(errors="replace").startswith(MARKER)
        except OSError:
            ours = False
        if not ours:
            raise RunError(f"eject -o {output}: the file exists and was not written by eject; choose another name")
    return output


# -- data: the files the run read ------------------------------------------------------------------------------
def _data_source(config, data: dict, run: RunDir, output: Path) -> tuple[str, Path | None]:  # noqa: ANN001
    """(the script's data section, the file list to write beside it or None)."""
    val_fraction = config.val_fraction if data.get("val_source", "train") == "train" else 0.0
    if config.dataset in DATASETS:
        source = [Path(p) for p in data.get("source") or []]
        if not source:  # a run from before summary.json recorded its files: look where training looked, offline
            source = DATASETS.get(config.dataset).find(Path(config.data_dir).expanduser() if config.data_dir else None,
                                                       may_download=False)
        missing = [str(p) for p in source if not p.exists()]
        if not source or missing:
            raise RunError(f"eject: the files {config.dataset} was trained from are no longer there "
                           f"({', '.join(missing) or 'none found'}); put them back (or pass the run's --data-dir)")
        if config.dataset in ("mnist", "fashion-mnist"):
            files = dict(zip(_IDX_KEYS, map(str, source)))
            return _IDX_SOURCE.format(files=files, val_fraction=val_fraction), None
        (found,) = source
        if not found.name.startswith("cifar10-jpg"):
            variant = ("data_batch_1 data_batch_2 data_batch_3 data_batch_4 data_batch_5".split(), ["test_batch"],
                       "labels") if config.dataset == "cifar10" else (["train"], ["test"], "fine_labels")
            return _CIFAR_SOURCE.format(source=str(found), train=variant[0], test=variant[1], label_key=variant[2],
                                        val_fraction=val_fraction), None
        root = found if found.is_dir() else cache.home() / "cifar10-jpg-extracted" / "cifar10-jpg"
        if not root.is_dir():
            raise RunError(f"eject: the extracted copy of {found} is not in the cache any more; train once more on it")
    else:
        root = Path(data.get("source", [config.dataset])[0])
    files = output.with_name(output.stem + "_files.csv")
    return _FOLDER_SOURCE.format(root=str(root.resolve()), files=files.name), files


def _files_csv(config, data: dict, run: RunDir) -> str:  # noqa: ANN001
    """path (relative to the folder), label (the run's index), class, split: every image the run read."""
    root = Path(data.get("source", [config.dataset])[0]) if config.dataset not in DATASETS else None
    folders = data.get("class_folders") or data["classes"]
    if run.split_path.is_file():  # the split the run carved, or the split file it was given: as it used them
        rows = [(row["path"], row["class"], row["split"]) for row in read_split_file(run.split_path)]
    else:  # the folder's own train/val/test, less the files the run skipped as unreadable
        root = root or Path(config.dataset)
        scan, skipped = scan_folder(root), set(data.get("skipped_files") or [])
        rows = [(relative_path(path, root), name, split) for split, items in scan.splits.items()
                for path, name in items if str(path) not in skipped]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["path", "label", "class", "split"])
    for path, folder, split in rows:
        if folder not in folders:
            raise RunError(f"eject: {path} is in class folder {folder!r}, which the run did not train on")
        writer.writerow([path, folders.index(folder), folder, split])
    return buffer.getvalue()


def recorded_allow_flip(run: RunDir, dataset: str) -> bool:
    """Whether the run's images could be mirrored, as its checkpoint recorded it (what training used)."""
    for path in (run.best, run.last):
        try:
            checkpoint = load_checkpoint(path)
        except CheckpointError:
            continue
        if "allow_flip" in checkpoint:
            return bool(checkpoint["allow_flip"])
    return flip_and_border(dataset)[0]  # no readable checkpoint records it: the dataset's own rule


def _train_transforms(config, data: dict, run: RunDir) -> str:  # noqa: ANN001
    """torchvision transforms for the run's AugmentSpec, resolved by the training code itself, in apply's order."""
    spec = augment_spec(config, recorded_allow_flip(run, config.dataset), flip_and_border(config.dataset)[1])
    size, steps = data["image_size"], []
    if spec.rotation:
        steps.append(f"transforms.RandomRotation({spec.rotation}, interpolation=transforms.InterpolationMode.BILINEAR)")
    if spec.crop_padding:
        mode = ", padding_mode='reflect'" if spec.pad_mode == "reflect" else ""
        steps.append(f"transforms.RandomCrop({size}, padding={spec.crop_padding}{mode})")
    if spec.crop_scale:
        low, high = spec.crop_ratio
        steps.append(f"transforms.RandomResizedCrop({size}, scale=({spec.crop_scale}, 1.0), "
                     f"ratio=({low:.6g}, {high:.6g}))")
    if spec.flip:
        steps.append("transforms.RandomHorizontalFlip()")
    if spec.jitter:
        saturation = f", saturation={spec.jitter}" if data["channels"] == 3 else ""
        steps.append(f"transforms.ColorJitter(brightness={spec.jitter}, contrast={spec.jitter}{saturation})")
    if spec.policy == "trivial":
        steps.append("transforms.TrivialAugmentWide()")
    elif spec.policy == "randaugment":
        steps.append(f"transforms.RandAugment(num_ops={spec.policy_ops}, magnitude={spec.policy_magnitude})")
    return "".join(f"{s}, " for s in steps)


def _mix_source(config) -> str:  # noqa: ANN001
    """MIX: torchvision.transforms.v2's MixUp / CutMix (one of them per batch when both), or None."""
    mixes = [f"v2.MixUp(alpha={config.mixup}, num_classes=len(CLASSES))"] * bool(config.mixup) + \
        [f"v2.CutMix(alpha={config.cutmix}, num_classes=len(CLASSES))"] * bool(config.cutmix)
    if not mixes:
        return "MIX = None  # the run mixed no batches (no MixUp / CutMix)"
    mix = mixes[0] if len(mixes) == 1 else f"v2.RandomChoice([{', '.join(mixes)}])"
    return f"MIX = {mix}  # applied to each training batch"


def _optimizer(config) -> str:  # noqa: ANN001
    if config.optimizer == "sgd":
        return (f"optim.SGD(model.parameters(), lr={config.lr}, momentum={config.momentum}, "
                f"nesterov={config.nesterov and config.momentum > 0}, weight_decay={config.weight_decay})")
    name = "Adam" if config.optimizer == "adam" else "AdamW"
    return f"optim.{name}(model.parameters(), lr={config.lr}, betas=({config.momentum}, 0.999), weight_decay={config.weight_decay})"


def _scheduler(config) -> str:  # noqa: ANN001
    total = "epochs * len(train_loader)"
    if config.schedule == "onecycle":
        return f"optim.lr_scheduler.OneCycleLR(optimizer, max_lr={config.lr}, total_steps={total})  # stepped every batch"
    if config.schedule == "cosine":
        return f"optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max={total})  # stepped every batch"
    if config.schedule == "step":
        return (f"optim.lr_scheduler.StepLR(optimizer, step_size={config.step_size} * len(train_loader), "
                f"gamma={config.gamma})  # StepLR every {config.step_size} epochs, stepped every batch")
    if config.schedule == "linear":
        return f"optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1 - step / ({total}))  # stepped every batch"
    return "optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)  # constant learning rate"


# The script's data sections. Each defines make_datasets(train_transform, test_transform) -> (train, val or None,
# test). validation_split is visiontrain's data/tensors.py stratified_split written out (the script may not import
# visiontrain): the same seed gives the same held-out images.
_VALIDATION_SPLIT = '''

def validation_split(labels, fraction=VAL_FRACTION, seed=SEED):
    """The run's validation split: a seeded `fraction` of every class held out of train (at least one image of a
    class with two or more). Returns (kept, held_out) index tensors."""
    if fraction <= 0:
        return torch.arange(len(labels)), torch.arange(0)
    generator = torch.Generator().manual_seed(seed)
    kept, held = [], []
    for label in labels.unique(sorted=True).tolist():
        members = (labels == label).nonzero().flatten()
        members = members[torch.randperm(len(members), generator=generator)]
        n_held = max(1, round(len(members) * fraction)) if len(members) > 1 else 0
        held.append(members[:n_held])
        kept.append(members[n_held:])
    return torch.cat(kept).sort().values, torch.cat(held).sort().values


class ArrayImages(Dataset):
    """Images in a uint8 tensor (N, H, W) or (N, H, W, 3), handed to the transforms as PIL images."""

    def __init__(self, images, labels, transform):
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, index):
        image = Image.fromarray(self.images[index].numpy()).convert(MODE)
        return self.transform(image), int(self.labels[index])


def split_datasets(train_images, train_labels, test_images, test_labels, train_transform, test_transform):
    kept, held = validation_split(train_labels)
    train = ArrayImages(train_images[kept], train_labels[kept], train_transform)
    val = ArrayImages(train_images[held], train_labels[held], test_transform) if len(held) else None
    return train, val, ArrayImages(test_images, test_labels, test_transform)'''

_IDX_SOURCE = '''FILES = {files}  # the IDX files the run read
VAL_FRACTION = {val_fraction}  # share of train held out for validation, as the run did


def read_idx(path):
    """An IDX file (MNIST's format, gzip-compressed or not) as a uint8 tensor: a magic number, the sizes, the values."""
    with open(path, "rb") as handle:
        data = handle.read()
    if data[:2] == b"\\x1f\\x8b":
        data = gzip.decompress(data)
    ndim = data[3]
    shape = struct.unpack(f">{{ndim}}I", data[4:4 + 4 * ndim])
    return torch.frombuffer(bytearray(data[4 + 4 * ndim:]), dtype=torch.uint8).view(shape)


def make_datasets(train_transform, test_transform):
    return split_datasets(read_idx(FILES["train-images"]), read_idx(FILES["train-labels"]).long(),
                          read_idx(FILES["t10k-images"]), read_idx(FILES["t10k-labels"]).long(),
                          train_transform, test_transform)''' + _VALIDATION_SPLIT.replace("{", "{{").replace("}", "}}")

_CIFAR_SOURCE = '''SOURCE = {source!r}  # the CIFAR batches the run read: the extracted folder or the .tar.gz archive
TRAIN_BATCHES, TEST_BATCHES, LABEL_KEY = {train!r}, {test!r}, {label_key!r}
VAL_FRACTION = {val_fraction}  # share of train held out for validation, as the run did


class BatchUnpickler(pickle.Unpickler):
    """CIFAR's batches are pickles, and unpickling can run code: admit only what a real batch holds."""

    ALLOWED = {{("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),
               ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar")}}

    def find_class(self, module, name):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"{{module}}.{{name}} is not allowed in a CIFAR batch")
        return super().find_class(module, name)


def read_batches(names):
    """uint8 images (N, 32, 32, 3) and labels (N,) of CIFAR's python batches `names`."""
    if os.path.isdir(SOURCE):
        raw = [open(os.path.join(SOURCE, name), "rb").read() for name in names]
    else:
        with tarfile.open(SOURCE) as tar:
            members = {{member.name.rsplit("/", 1)[-1]: member for member in tar if member.isfile()}}
            raw = [tar.extractfile(members[name]).read() for name in names]
    batches = [BatchUnpickler(io.BytesIO(data), encoding="latin1").load() for data in raw]
    images = torch.from_numpy(np.concatenate([batch["data"] for batch in batches]).reshape(-1, 3, 32, 32))
    labels = torch.tensor([label for batch in batches for label in batch[LABEL_KEY]])
    return images.permute(0, 2, 3, 1).contiguous(), labels


def make_datasets(train_transform, test_transform):
    return split_datasets(*read_batches(TRAIN_BATCHES), *read_batches(TEST_BATCHES), train_transform, test_transform)''' \
    + _VALIDATION_SPLIT.replace("{", "{{").replace("}", "}}")

_FOLDER_SOURCE = '''DATA_ROOT = {root!r}
# Every image the run read, one row each: its path under DATA_ROOT, its label (the run's class index: visiontrain
# orders class folders naturally, '2' before '10', where ImageFolder would sort them as text), class and split.
FILES = os.path.join(os.path.dirname(os.path.abspath(__file__)), {files!r})


class ImageList(Dataset):
    """The images of one split listed in FILES, decoded with Pillow (EXIF rotation applied)."""

    def __init__(self, split, transform):
        with open(FILES, newline="", encoding="utf-8") as handle:
            rows = [row for row in csv.DictReader(handle) if row["split"] == split]
        self.items = [(os.path.join(DATA_ROOT, row["path"]), int(row["label"])) for row in rows]
        self.transform = transform

    def __len__(self):
        return len(self.items)

    def __getitem__(self, index):
        path, label = self.items[index]
        with Image.open(path) as image:
            image = ImageOps.exif_transpose(image).convert(MODE)
        return self.transform(image), label


def make_datasets(train_transform, test_transform):
    val, test = ImageList("val", test_transform), ImageList("test", test_transform)
    return ImageList("train", train_transform), (val if len(val) else None), (test if len(test) else None)'''


_TEMPLATE = '''{marker}: a plain PyTorch version of a visiontrain run.
"""Plain PyTorch version of a visiontrain run (RUN below), written by `visiontrain eject`.

Every concept of the course is here, in order: a dataset and transforms, a DataLoader, a model made of
Conv2d/ReLU/MaxPool2d/Linear layers, CrossEntropyLoss, an optimiser and a learning-rate schedule, the training
loop, choosing the best epoch on the validation split, saving that model, and evaluating it once on the test
split with a confusion matrix. It reads the files the run read and does not need visiontrain.
"""
import argparse
import csv
import gzip
import io
import os
import pickle
import struct
import tarfile

import numpy as np
import torch
import torchvision
from PIL import Image, ImageOps
from torch import nn, optim
from torch.utils.data import DataLoader, Dataset, Subset
from torchvision import transforms
from torchvision.transforms import v2  # MixUp / CutMix, where the run mixed its batches

RUN = {run!r}  # the visiontrain run this script repeats
EPOCHS = {epochs}
BATCH_SIZE = {batch_size}
CLASSES = {classes!r}  # the run's classes, index = label
SEED = {seed}
SELECT_BY = {select!r}  # the validation metric that picks the best epoch, as in the run
MODE = {mode!r}  # images are read as 'L' (grayscale) or 'RGB'
torch.manual_seed(SEED)  # the same seed gives the same run

# -- data: decode images, convert to tensors, normalise with the training set's mean and std -------------------
MEAN, STD = {mean}, {std}
train_transform = transforms.Compose([transforms.Resize({size}), transforms.CenterCrop({size}), {train_transforms}transforms.ToTensor(), transforms.Normalize(MEAN, STD)])
test_transform = transforms.Compose([transforms.Resize({size}), transforms.CenterCrop({size}), transforms.ToTensor(), transforms.Normalize(MEAN, STD)])
{mix_source}

{data_source}


# -- the model: one image [C, H, W] -> a batch [B, C, H, W] -> logits [B, classes] ----------------------------
{model_source}


def evaluate(model, loader, loss_fn):
    """Loss, accuracy, balanced accuracy (the mean of the per-class accuracies), predictions and targets."""
    model.eval()  # dropout off, batch-norm uses its running statistics
    total_loss, predictions, targets = 0.0, [], []
    with torch.no_grad():  # no gradients needed to evaluate
        for images, labels in loader:
            logits = model(images)
            total_loss += loss_fn(logits, labels).item() * len(labels)
            predictions.append(logits.argmax(1))
            targets.append(labels)
    predictions, targets = torch.cat(predictions), torch.cat(targets)
    correct = predictions == targets
    per_class = [correct[targets == label].float().mean() for label in targets.unique()]
    return (total_loss / len(targets), correct.float().mean().item(), torch.stack(per_class).mean().item(),
            predictions, targets)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=EPOCHS)
    parser.add_argument("--limit", type=int, help="train, validate and test on the first N images only (a quick check)")
    args = parser.parse_args()
    train_set, val_set, test_set = make_datasets(train_transform, test_transform)
    if args.limit:
        train_set, val_set, test_set = (Subset(s, range(min(args.limit, len(s)))) if s is not None else None
                                        for s in (train_set, val_set, test_set))
    train_loader = DataLoader(train_set, batch_size=BATCH_SIZE, shuffle=True, num_workers=2)
    val_loader = DataLoader(val_set, batch_size=1000, num_workers=2) if val_set is not None else None

    model = build_model()
    loss_fn = nn.CrossEntropyLoss(label_smoothing={label_smoothing})  # softmax + negative log-likelihood
    optimizer = {optimizer}
    epochs = args.epochs
    scheduler = {scheduler}

    best_score = -1.0
    for epoch in range(epochs):
        model.train()  # dropout on, batch-norm learns statistics
        for images, labels in train_loader:
            if MIX is not None:  # MixUp / CutMix: mixed images, and labels that are class probabilities
                images, labels = MIX(images, labels)
            optimizer.zero_grad()  # gradients add up unless cleared
            logits = model(images)  # forward pass
            loss = loss_fn(logits, labels)
            loss.backward()  # back-propagation: d loss / d every weight
            optimizer.step()  # update the weights
            scheduler.step()  # update the learning rate
        if val_loader is None:  # no validation split: the run kept its last epoch, and so does this script
            print(f"epoch {{epoch + 1}}/{{epochs}}  train loss {{loss.item():.4f}}")
            torch.save(model.state_dict(), "best_model.pt")
            continue
        val_loss, val_accuracy, val_balanced, _, _ = evaluate(model, val_loader, loss_fn)
        print(f"epoch {{epoch + 1}}/{{epochs}}  train loss {{loss.item():.4f}}  val loss {{val_loss:.4f}}  "
              f"val accuracy {{val_accuracy:.2%}}")
        score = val_balanced if SELECT_BY == "val_balanced_acc" else val_accuracy
        if score > best_score:  # the best model by the validation split, never by the test split
            best_score = score
            torch.save(model.state_dict(), "best_model.pt")  # a state dict: weights only

    if test_set is None:
        print("no test split: the best model is in best_model.pt")
        return
    model.load_state_dict(torch.load("best_model.pt", weights_only=True))
    test_loader = DataLoader(test_set, batch_size=1000, num_workers=2)
    _, accuracy, _, predictions, targets = evaluate(model, test_loader, loss_fn)  # the test split, once
    confusion = torch.bincount(targets * len(CLASSES) + predictions, minlength=len(CLASSES) ** 2).view(len(CLASSES), -1)
    print(f"best model: test accuracy {{accuracy:.2%}}")
    print("confusion matrix (rows: true class, columns: predicted):")
    for name, row in zip(CLASSES, confusion.tolist()):
        print(f"{{name:>12}} " + " ".join(f"{{n:5d}}" for n in row))


if __name__ == "__main__":
    main()
'''
