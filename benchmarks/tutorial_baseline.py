"""The tutorial baseline: a plain PyTorch training loop, written the way computer-vision courses teach it.

`visiontrain` is benchmarked against this file (time to reach a test accuracy). To be a fair and
honest reference it is deliberately *typical*, not tuned: torchvision datasets that decode one image
at a time through PIL and `transforms`, `DataLoader(shuffle=True, num_workers=2)`, the model written
out inline, Adam with a fixed learning rate, the five-line training step, and a full pass over the
official test split after every epoch. Nothing is optimised (no channels-last, no compilation, no
in-memory tensor pipeline, no mixed precision, no learning-rate schedule, no thread tuning): each of
those is something `visiontrain` does for the user, and the point of the benchmark is to measure what
that is worth. Please keep it that way: speeding up this file would make the comparison dishonest.

The only thing that is not tutorial code is `prepare_cache`, which puts the offline copies of the data
where torchvision expects its downloads (a tutorial user has downloaded them already), so its time is
excluded; building the dataset objects is timed.

    python benchmarks/tutorial_baseline.py --task fashion-mnist --epochs 10 [--data-dir DIR] [--limit-train N]
        [--limit-test N] [--json out.json]

--data-dir: the folder with the four IDX .gz files (mnist, fashion-mnist; Fashion-MNIST defaults to Debian's
/usr/share/datasets/fashion-mnist), or with cifar10-jpg.tar.gz (cifar10).

This module must not import visiontrain.
"""
from __future__ import annotations

import argparse
import gzip
import json
import os
import resource
import shutil
import tarfile
import time

import torch
import torch.nn as nn
from torch.utils.data import DataLoader, Subset
from torchvision import datasets, transforms

FASHION_DIR = "/usr/share/datasets/fashion-mnist"  # Debian's dataset-fashion-mnist
IDX_FILES = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]
TASKS = ("fashion-mnist", "mnist", "cifar10")


# --------------------------------------------------------------------------- data cache (not timed)
def prepare_cache(task: str, data_dir: str | None = None, work_dir: str | None = None) -> str:
    """Lay the offline data out as torchvision's downloads would be; done once, reused afterwards.

    torchvision's MNIST/FashionMNIST with download=False need the *uncompressed* IDX files in
    <root>/<ClassName>/raw/ (it checks for the names without .gz and reads them with a plain open()),
    so the .gz files are gunzipped there. CIFAR-10 (JPEG folders) is extracted once under <root>.
    Every step writes to a temporary name and renames it, so an interrupted run leaves no half file.
    """
    root = os.path.expanduser(work_dir or "~/.cache/visiontrain-baseline")
    os.makedirs(root, exist_ok=True)
    if task in ("mnist", "fashion-mnist"):
        if task == "mnist" and data_dir is None:
            raise SystemExit("the mnist baseline needs --data-dir: the folder with MNIST's four IDX .gz files")
        src, cls = (data_dir or FASHION_DIR, "MNIST" if task == "mnist" else "FashionMNIST")
        raw = os.path.join(root, cls, "raw")
        os.makedirs(raw, exist_ok=True)
        for name in IDX_FILES:
            dst = os.path.join(raw, name)
            if not os.path.isfile(dst):
                with gzip.open(os.path.join(src, name + ".gz"), "rb") as fin, open(dst + ".part", "wb") as fout:
                    shutil.copyfileobj(fin, fout)
                os.replace(dst + ".part", dst)
    elif task == "cifar10":
        if not os.path.isdir(os.path.join(root, "cifar10-jpg")):
            tmp = os.path.join(root, f"cifar10-jpg.part{os.getpid()}")
            if data_dir is None:
                raise SystemExit("the cifar10 baseline needs --data-dir: the folder with cifar10-jpg.tar.gz")
            with tarfile.open(os.path.join(data_dir, "cifar10-jpg.tar.gz"), "r:gz") as tar:
                tar.extractall(tmp, filter="data")
            os.replace(os.path.join(tmp, "cifar10-jpg"), os.path.join(root, "cifar10-jpg"))
            shutil.rmtree(tmp)
    else:
        raise ValueError(f"unknown task {task!r}; choose from {TASKS}")
    return root


# --------------------------------------------------------------------------- the tutorial code (timed)
def make_datasets(task: str, root: str):
    """The datasets, transforms, model and hyper-parameters exactly as a course notebook sets them up."""
    if task == "fashion-mnist":
        transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.2860,), (0.3530,))])
        train_set = datasets.FashionMNIST(root, train=True, download=False, transform=transform)
        test_set = datasets.FashionMNIST(root, train=False, download=False, transform=transform)
        model = nn.Sequential(  # "lenet"
            nn.Conv2d(1, 6, 5), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(6, 12, 5), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(12 * 4 * 4, 120),
            nn.Linear(120, 60),
            nn.Linear(60, 10),
        )
        return train_set, test_set, model, 0.01, 100
    if task == "mnist":
        transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.1307,), (0.3081,))])
        train_set = datasets.MNIST(root, train=True, download=False, transform=transform)
        test_set = datasets.MNIST(root, train=False, download=False, transform=transform)
        model = nn.Sequential(  # "simple-cnn"
            nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(32 * 7 * 7, 128), nn.ReLU(),
            nn.Linear(128, 10),
        )
        return train_set, test_set, model, 1e-3, 64
    if task == "cifar10":
        mean, std = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
        train_transform = transforms.Compose([
            transforms.RandomHorizontalFlip(),
            transforms.RandomCrop(32, padding=4),
            transforms.ToTensor(),
            transforms.Normalize(mean, std),
        ])
        test_transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize(mean, std)])
        train_set = datasets.ImageFolder(os.path.join(root, "cifar10-jpg", "train"), transform=train_transform)
        test_set = datasets.ImageFolder(os.path.join(root, "cifar10-jpg", "test"), transform=test_transform)
        model = nn.Sequential(  # "vgg-cifar"
            nn.Conv2d(3, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(),
            nn.Conv2d(64, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(64, 128, 3, padding=1), nn.BatchNorm2d(128), nn.ReLU(),
            nn.Conv2d(128, 128, 3, padding=1), nn.BatchNorm2d(128), nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(128, 256, 3, padding=1), nn.BatchNorm2d(256), nn.ReLU(),
            nn.Conv2d(256, 256, 3, padding=1), nn.BatchNorm2d(256), nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Dropout(0.5),
            nn.Linear(256 * 4 * 4, 512), nn.ReLU(),
            nn.Dropout(0.5),
            nn.Linear(512, 10),
        )
        return train_set, test_set, model, 1e-3, 128
    raise ValueError(f"unknown task {task!r}; choose from {TASKS}")


def peak_rss_mb() -> float:
    """Peak RSS of this process plus the largest finished child (the DataLoader workers), in MiB.

    Linux reports ru_maxrss in KiB; RUSAGE_CHILDREN is the maximum over terminated children (not a
    sum) and counts pages shared copy-on-write with the parent again, so this is a rough upper figure.
    """
    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss + resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return kib / 1024


def run_baseline(task: str, *, epochs: int, data_dir: str | None = None, limit_train: int | None = None,
                 limit_test: int | None = None, seed: int = 0, work_dir: str | None = None, threads: int | None = None,
                 on_epoch=None) -> list[dict]:
    """Train `task` for `epochs` epochs the tutorial way; evaluate on the (full) test split after each.

    Returns one dict per epoch: {"epoch", "seconds" (wall seconds since run_baseline was called, dataset
    construction included, cache preparation excluded), "test_acc" (fraction 0..1), "train_loss",
    "images_per_second" (training images / training seconds of that epoch), "peak_rss_mb"}.
    on_epoch(row) is called after each epoch if given. limit_train/limit_test keep the first N samples
    (for smoke runs only: the CIFAR-10 image folder is sorted by class, so its first N are one class).
    """
    root = prepare_cache(task, data_dir, work_dir)  # not timed: stands in for an earlier download
    start = time.perf_counter()
    torch.manual_seed(seed)
    if threads is not None:
        torch.set_num_threads(threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")

    train_set, test_set, model, lr, batch_size = make_datasets(task, root)
    if limit_train is not None:
        train_set = Subset(train_set, range(min(limit_train, len(train_set))))
    if limit_test is not None:
        test_set = Subset(test_set, range(min(limit_test, len(test_set))))
    train_loader = DataLoader(train_set, batch_size=batch_size, shuffle=True, num_workers=2)
    test_loader = DataLoader(test_set, batch_size=1000, shuffle=False, num_workers=2)

    model = model.to(device)
    criterion = nn.CrossEntropyLoss()
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)

    rows = []
    for epoch in range(1, epochs + 1):
        model.train()
        epoch_start = time.perf_counter()
        running_loss, seen = 0.0, 0
        for images, labels in train_loader:
            images, labels = images.to(device), labels.to(device)
            optimizer.zero_grad()
            outputs = model(images)
            loss = criterion(outputs, labels)
            loss.backward()
            optimizer.step()
            running_loss += loss.item() * images.size(0)
            seen += images.size(0)
        train_seconds = time.perf_counter() - epoch_start

        model.eval()
        correct, total = 0, 0
        with torch.no_grad():
            for images, labels in test_loader:
                images, labels = images.to(device), labels.to(device)
                outputs = model(images)
                predicted = outputs.argmax(dim=1)
                correct += (predicted == labels).sum().item()
                total += labels.size(0)

        row = {
            "epoch": epoch,
            "seconds": time.perf_counter() - start,
            "test_acc": correct / total,
            "train_loss": running_loss / seen,
            "images_per_second": seen / train_seconds,
            "peak_rss_mb": peak_rss_mb(),
        }
        rows.append(row)
        if on_epoch is not None:
            on_epoch(row)
    return rows


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description="Tutorial-style PyTorch baseline (time-to-accuracy reference).")
    parser.add_argument("--task", choices=TASKS, required=True)
    parser.add_argument("--epochs", type=int, required=True)
    parser.add_argument("--data-dir", help="the task's files (see above)")
    parser.add_argument("--limit-train", type=int, default=None, help="keep the first N training samples")
    parser.add_argument("--limit-test", type=int, default=None, help="keep the first N test samples")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work-dir", default=None, help="data cache (default ~/.cache/visiontrain-baseline)")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's own)")
    parser.add_argument("--json", default=None, help="write the per-epoch rows to this file")
    args = parser.parse_args(argv)

    def show(row):
        print(f"epoch {row['epoch']:3d}  {row['seconds']:8.1f}s  test_acc {row['test_acc']:.4f}  "
              f"loss {row['train_loss']:.4f}  {row['images_per_second']:8.0f} img/s  "
              f"peak_rss {row['peak_rss_mb']:.0f} MiB", flush=True)

    rows = run_baseline(args.task, epochs=args.epochs, data_dir=args.data_dir, limit_train=args.limit_train,
                        limit_test=args.limit_test,
                        seed=args.seed, work_dir=args.work_dir, threads=args.threads, on_epoch=show)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()
