"""`visiontrain eject`: a run written out as one plain PyTorch script, the way a course teaches it.

The script uses torchvision datasets (or ImageFolder), a DataLoader, the model class written out layer by layer,
CrossEntropyLoss, the run's optimiser and schedule, the five-line training step, "save the best model", and a
confusion matrix at the end. It never imports visiontrain: a student can read and change every line.
"""
from __future__ import annotations

from pathlib import Path

from torch import nn

from .config import build_config, load_yaml
from .errors import RunError
from .run import RunDir

_TORCH_DATASETS = {"mnist": "MNIST", "fashion-mnist": "FashionMNIST", "cifar10": "CIFAR10", "cifar100": "CIFAR100"}
_STANDARD = (nn.Conv2d, nn.Linear, nn.ReLU, nn.GELU, nn.MaxPool2d, nn.BatchNorm2d, nn.Dropout, nn.Flatten,
             nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d, nn.Identity)


def model_code(model: nn.Module) -> str:
    """`nn.Sequential(...)` source equal to the model, when it is built only from standard layers in order."""
    leaves = [m for m in model.modules() if next(m.children(), None) is None and not isinstance(m, nn.Identity)]
    if not all(isinstance(m, _STANDARD) for m in leaves) or not isinstance(getattr(model, "features", None), nn.Module):
        return ""
    return "nn.Sequential(\n" + "".join(f"        nn.{m!r},\n" for m in leaves) + "    )"


def eject(run_dir: str | Path, output: str | Path) -> Path:
    run = RunDir.open(run_dir)
    config = build_config(load_yaml(run.config_path), apply_preset=False)
    summary = run.read_summary()
    if not summary:
        raise RunError(f"{run.path} has no summary.json; eject a run that finished")
    data = summary["dataset"]
    from .models import create_model

    model = create_model(config.model, num_classes=len(data["classes"]), in_channels=data["channels"],
                         image_size=data["image_size"], width=config.width)
    from .models.fast import FastNet

    if isinstance(model, FastNet):
        raise RunError(f"eject writes the tutorial networks and torchvision and timm models; {config.model}'s custom "
                       "layers (patch whitening, frozen-scale BatchNorm) are in visiontrain/models/fast.py to read "
                       "instead")
    code = model_code(model)
    gray = "transforms.Grayscale(), " if data["channels"] == 1 else ""
    if code:
        model_source = f"def build_model():\n    return {code}"
    elif type(model.features).__module__.startswith("timm."):  # timm/<name>, and efficientnet_lite0
        name = config.model.removeprefix("timm/")
        model_source = (f"def build_model():\n    import timm  # pip install timm\n\n"
                        f"    # timm's {name}, randomly initialised\n"
                        f"    return timm.create_model({name!r}, pretrained=False, num_classes={len(data['classes'])}, "
                        f"in_chans={data['channels']})")
    else:
        model_source = (f"def build_model():\n    # torchvision's {config.model}, randomly initialised\n"
                        f"    return torchvision.models.get_model({config.model!r}, weights=None, "
                        f"num_classes={len(data['classes'])})")
        if gray:  # torchvision's networks take 3 channels: the gray image, three times (= summed RGB filters)
            gray = "transforms.Grayscale(num_output_channels=3), "
    text = _TEMPLATE.format(
        run=run.path, dataset=config.dataset, data_source=_data_source(config, data), model_source=model_source,
        mean=tuple(round(m, 4) for m in data["mean"]), std=tuple(round(s, 4) for s in data["std"]),
        train_transforms=_train_transforms(config, data, run), epochs=config.epochs, batch_size=config.batch_size,
        optimizer=_optimizer(config), scheduler=_scheduler(config), label_smoothing=config.label_smoothing,
        seed=config.seed, classes=data["classes"], gray=gray,
        size=data["image_size"])
    output = Path(output)
    output.write_text(text)
    return output


def _data_source(config, data: dict) -> str:  # noqa: ANN001
    if config.dataset in _TORCH_DATASETS:
        name = _TORCH_DATASETS[config.dataset]
        return (f"DATA_ROOT = {str(Path(config.data_dir or 'data'))!r}  # torchvision downloads here if the files are missing\n"
                f"def make_datasets(train_transform, test_transform):\n"
                f"    train = datasets.{name}(DATA_ROOT, train=True, download=True, transform=train_transform)\n"
                f"    test = datasets.{name}(DATA_ROOT, train=False, download=True, transform=test_transform)\n"
                f"    return train, test")
    root = Path(config.dataset).expanduser().resolve()
    test = next((root / s for s in ("test", "val", "valid") if (root / s).is_dir()), None)
    if test is None:
        raise RunError(f"eject needs a test/ or val/ folder beside {root}/train to evaluate on")
    return (f"DATA_ROOT = {str(root)!r}\n"
            f"def make_datasets(train_transform, test_transform):\n"
            f"    train = datasets.ImageFolder(DATA_ROOT + '/train', transform=train_transform)\n"
            f"    test = datasets.ImageFolder({str(test)!r}, transform=test_transform)\n"
            f"    return train, test")


def recorded_allow_flip(run: RunDir, dataset: str) -> bool:
    """Whether the run's images could be mirrored, as its checkpoint recorded it (what training used)."""
    from .engine.checkpoint import load_checkpoint
    from .errors import CheckpointError

    for path in (run.best, run.last):
        try:
            checkpoint = load_checkpoint(path)
        except CheckpointError:
            continue
        if "allow_flip" in checkpoint:
            return bool(checkpoint["allow_flip"])
    from .data import flip_and_border

    return flip_and_border(dataset)[0]  # no readable checkpoint records it: the dataset's own rule


def _train_transforms(config, data: dict, run: RunDir) -> str:  # noqa: ANN001
    """torchvision transforms for the run's AugmentSpec, resolved by the training code itself, in apply's order."""
    from types import SimpleNamespace

    from .data import flip_and_border
    from .engine.fit import augment_spec

    recorded = SimpleNamespace(allow_flip=recorded_allow_flip(run, config.dataset),
                               pad_mode=flip_and_border(config.dataset)[1])
    spec, size, steps = augment_spec(config, recorded), data["image_size"], []
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
    return "".join(f"{s}, " for s in steps)


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


_TEMPLATE = '''"""Plain PyTorch version of the visiontrain run {run} (written by `visiontrain eject`).

Every concept of the course is here, in order: a dataset and transforms, a DataLoader, a model made of
Conv2d/ReLU/MaxPool2d/Linear layers, CrossEntropyLoss, an optimiser and a learning-rate schedule, the training
loop, evaluation, saving the best model, and a confusion matrix. It does not need visiontrain.
"""
import argparse

import torch
import torchvision
from torch import nn, optim
from torch.utils.data import DataLoader, Subset
from torchvision import datasets, transforms

EPOCHS = {epochs}
BATCH_SIZE = {batch_size}
CLASSES = {classes}
torch.manual_seed({seed})  # the same seed gives the same run

# -- data: decode images, convert to tensors, normalise with the training set's mean and std -------------------
MEAN, STD = {mean}, {std}
train_transform = transforms.Compose([{gray}transforms.Resize({size}), transforms.CenterCrop({size}), {train_transforms}transforms.ToTensor(), transforms.Normalize(MEAN, STD)])
test_transform = transforms.Compose([{gray}transforms.Resize({size}), transforms.CenterCrop({size}), transforms.ToTensor(), transforms.Normalize(MEAN, STD)])
{data_source}


# -- the model: one image [C, H, W] -> a batch [B, C, H, W] -> logits [B, classes] ----------------------------
{model_source}


def evaluate(model, loader, loss_fn):
    model.eval()  # dropout off, batch-norm uses its running statistics
    total_loss, correct, count = 0.0, 0, 0
    predictions, targets = [], []
    with torch.no_grad():  # no gradients needed to evaluate
        for images, labels in loader:
            logits = model(images)
            total_loss += loss_fn(logits, labels).item() * len(labels)
            predicted = logits.argmax(1)
            correct += (predicted == labels).sum().item()
            count += len(labels)
            predictions.append(predicted)
            targets.append(labels)
    return total_loss / count, correct / count, torch.cat(predictions), torch.cat(targets)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=EPOCHS)
    parser.add_argument("--limit", type=int, help="train and test on the first N images only (a quick check)")
    args = parser.parse_args()
    train_set, test_set = make_datasets(train_transform, test_transform)
    if args.limit:
        train_set = Subset(train_set, torch.randperm(len(train_set))[: args.limit].tolist())
        test_set = Subset(test_set, torch.randperm(len(test_set))[: args.limit].tolist())
    train_loader = DataLoader(train_set, batch_size=BATCH_SIZE, shuffle=True, num_workers=2)
    test_loader = DataLoader(test_set, batch_size=1000, shuffle=False, num_workers=2)

    model = build_model()
    loss_fn = nn.CrossEntropyLoss(label_smoothing={label_smoothing})  # softmax + negative log-likelihood
    optimizer = {optimizer}
    epochs = args.epochs
    scheduler = {scheduler}

    best_accuracy = 0.0
    for epoch in range(epochs):
        model.train()  # dropout on, batch-norm learns statistics
        for images, labels in train_loader:
            optimizer.zero_grad()  # gradients add up unless cleared
            logits = model(images)  # forward pass
            loss = loss_fn(logits, labels)
            loss.backward()  # back-propagation: d loss / d every weight
            optimizer.step()  # update the weights
            scheduler.step()  # update the learning rate
        test_loss, test_accuracy, _, _ = evaluate(model, test_loader, loss_fn)
        print(f"epoch {{epoch + 1}}/{{epochs}}  train loss {{loss.item():.4f}}  test loss {{test_loss:.4f}}  "
              f"test accuracy {{test_accuracy:.2%}}")
        if test_accuracy > best_accuracy:  # save the best model (a state dict: weights only)
            best_accuracy = test_accuracy
            torch.save(model.state_dict(), "best_model.pt")

    model.load_state_dict(torch.load("best_model.pt", weights_only=True))
    _, accuracy, predictions, targets = evaluate(model, test_loader, loss_fn)
    confusion = torch.bincount(targets * len(CLASSES) + predictions, minlength=len(CLASSES) ** 2).view(len(CLASSES), -1)
    print(f"best model: test accuracy {{accuracy:.2%}}")
    print("confusion matrix (rows: true class, columns: predicted):")
    for name, row in zip(CLASSES, confusion.tolist()):
        print(f"{{name:>12}} " + " ".join(f"{{n:5d}}" for n in row))


if __name__ == "__main__":
    main()
'''
