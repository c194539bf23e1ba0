"""The airbench94 recipe (Jordan 2024, "94% on CIFAR-10 in 3.29 seconds on a single GPU"), written out in plain
PyTorch from its published description, on the same decoded CIFAR-10 tensors visiontrain trains on.

Why it exists: visiontrain's cifar10-gpu preset is compared against airbench94's published 94% (on the original
CIFAR-10 binaries). This copy of CIFAR-10 is JPEG (quality 75, 4:2:0), and this script says how much of any gap is
the data: the reference recipe, unchanged (fp16 weights, summed loss, its lr/wd parametrisation, 9.9 epochs,
whitening bias trained for 3 epochs, lookahead, alternating flips, 6-view TTA), on the same pixels.

    python benchmarks/airbench_reference.py --data-dir DATA [--epochs 9.9] [--seeds 0,1]   (needs a CUDA GPU)
"""
from __future__ import annotations

import argparse
import math
import time

import torch
import torch.nn.functional as F
from torch import nn

HYP = {"batch_size": 1024, "lr": 11.5, "momentum": 0.85, "weight_decay": 0.0153, "bias_scaler": 64.0,
       "label_smoothing": 0.2, "whiten_bias_epochs": 3, "translate": 2, "widths": (64, 256, 256),
       "bn_momentum": 0.6, "scaling_factor": 1 / 9}


DTYPE = {"cuda": torch.half, "cpu": torch.float}  # fp16 as airbench on the GPU; fp32 for a CPU smoke test


class BatchNorm(nn.BatchNorm2d):
    def __init__(self, features: int):
        super().__init__(features, eps=1e-12, momentum=1 - HYP["bn_momentum"])
        self.weight.requires_grad = False


class Conv(nn.Conv2d):
    def __init__(self, cin: int, cout: int, kernel_size: int = 3, padding="same", bias: bool = False):
        super().__init__(cin, cout, kernel_size, padding=padding, bias=bias)

    def reset_parameters(self) -> None:
        super().reset_parameters()
        if self.bias is not None:
            self.bias.data.zero_()
        nn.init.dirac_(self.weight.data[:self.weight.size(1)])


def group(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(Conv(cin, cout), nn.MaxPool2d(2), BatchNorm(cout), nn.GELU(),
                         Conv(cout, cout), BatchNorm(cout), nn.GELU())


class Scale(nn.Module):
    def forward(self, x):
        return x * HYP["scaling_factor"]


def make_net(device) -> nn.Sequential:
    w = HYP["widths"]
    net = nn.Sequential(Conv(3, 24, 2, padding=0, bias=True), nn.GELU(), group(24, w[0]), group(w[0], w[1]),
                        group(w[1], w[2]), nn.MaxPool2d(3), nn.Flatten(), nn.Linear(w[2], 10, bias=False), Scale())
    net[0].weight.requires_grad = False
    net = net.to(device, DTYPE[device.type]).to(memory_format=torch.channels_last)
    for module in net.modules():
        if isinstance(module, BatchNorm):
            module.float()
    return net


def init_whitening(layer: nn.Conv2d, images: torch.Tensor, eps: float = 5e-4) -> None:
    c = images.shape[1]
    patches = images.unfold(2, 2, 1).unfold(3, 2, 1).transpose(1, 3).reshape(-1, c, 2, 2).float()
    flat = patches.view(len(patches), -1)
    eigenvalues, eigenvectors = torch.linalg.eigh(flat.T @ flat / len(flat), UPLO="U")
    eigenvalues, eigenvectors = eigenvalues.flip(0).view(-1, 1, 1, 1), eigenvectors.T.reshape(-1, c, 2, 2).flip(0)
    scaled = eigenvectors / torch.sqrt(eigenvalues + eps)
    layer.weight.data[:] = torch.cat((scaled, -scaled))


def batch_crop(images: torch.Tensor, size: int) -> torch.Tensor:
    r = (images.size(-1) - size) // 2
    shifts = torch.randint(-r, r + 1, (len(images), 2), device=images.device)
    out = torch.empty((len(images), images.shape[1], size, size), device=images.device, dtype=images.dtype)
    for sy in range(-r, r + 1):
        for sx in range(-r, r + 1):
            mask = (shifts[:, 0] == sy) & (shifts[:, 1] == sx)
            out[mask] = images[mask, :, r + sy:r + sy + size, r + sx:r + sx + size]
    return out


def tta_logits(net: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """airbench's level 2: mirror, and mirror of 1-pixel translations up-left and down-right, half weight each."""
    def mirror(x):
        return 0.5 * net(x) + 0.5 * net(x.flip(-1))
    outputs = []
    for x in images.split(2000):
        padded = F.pad(x, (1,) * 4, "reflect")
        shifted = 0.5 * (mirror(padded[:, :, 0:32, 0:32]) + mirror(padded[:, :, 2:34, 2:34]))
        outputs.append(0.5 * mirror(x) + 0.5 * shifted)
    return torch.cat(outputs)


def train(train_x, train_y, test_x, test_y, epochs: float, seed: int) -> tuple[float, float, float]:
    torch.manual_seed(seed)
    device = train_x.device
    bs, momentum = HYP["batch_size"], HYP["momentum"]
    kilostep = 1024 * (1 + 1 / (1 - momentum))
    lr, wd = HYP["lr"] / kilostep, HYP["weight_decay"] * bs / kilostep
    lr_biases = lr * HYP["bias_scaler"]
    net = make_net(device)
    norm_biases = [p for k, p in net.named_parameters() if isinstance(net.get_submodule(k.rsplit(".", 1)[0]), BatchNorm)
                   and p.requires_grad]
    other = [p for p in net.parameters() if p.requires_grad and all(p is not q for q in norm_biases)]
    optimizer = torch.optim.SGD([dict(params=norm_biases, lr=lr_biases, weight_decay=wd / lr_biases),
                                 dict(params=other, lr=lr, weight_decay=wd / lr)], momentum=momentum, nesterov=True)
    steps_per_epoch = len(train_x) // bs
    total = math.ceil(steps_per_epoch * epochs)
    warm = int(total * 0.23)
    schedule = lambda s: 0.2 + 0.8 * s / warm if s < warm else 1 - 0.93 * (s - warm) / (total - warm)  # noqa: E731
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    alpha = 0.95 ** 5 * (torch.arange(total + 1) / total) ** 3
    slow = {k: v.clone() for k, v in net.state_dict().items()}
    loss_fn = nn.CrossEntropyLoss(label_smoothing=HYP["label_smoothing"], reduction="none")

    def lookahead(decay: float) -> None:
        for (key, value) in net.state_dict().items():
            if value.dtype.is_floating_point:
                slow[key].lerp_(value, 1 - decay)
                value.copy_(slow[key])

    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    sync()
    started = time.perf_counter()
    init_whitening(net[0], train_x[torch.randperm(len(train_x), device=device)[:5000]])  # the split is sorted by class
    flipped = torch.where((torch.rand(len(train_x), device=device) < 0.5).view(-1, 1, 1, 1), train_x.flip(-1), train_x)
    padded = F.pad(flipped, (HYP["translate"],) * 4, "reflect")
    step = 0
    for epoch in range(math.ceil(epochs)):
        net[0].bias.requires_grad = epoch < HYP["whiten_bias_epochs"]
        images = batch_crop(padded, 32)
        images = images.flip(-1) if epoch % 2 else images
        order = torch.randperm(len(images), device=device)
        net.train()
        for i in range(steps_per_epoch):
            idx = order[i * bs:(i + 1) * bs]
            loss = loss_fn(net(images[idx]), train_y[idx]).sum()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            step += 1
            if step % 5 == 0:
                lookahead(alpha[step].item())
            if step >= total:
                lookahead(1.0)
                break
    net.eval()
    with torch.no_grad():
        plain = (torch.cat([net(x) for x in test_x.split(2000)]).argmax(1) == test_y).float().mean().item()
        tta = (tta_logits(net, test_x).argmax(1) == test_y).float().mean().item()
    sync()
    return tta, plain, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--epochs", default="9.9", help="comma-separated, e.g. 9.9,20")
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--limit", type=int, default=None, help="train on the first N images (a smoke test)")
    parser.add_argument("--device", default="cuda")
    args = parser.parse_args()
    from visiontrain.data import load_dataset

    data = load_dataset("cifar10", data_dir=args.data_dir, val_fraction=0.0)
    device = torch.device(args.device)
    mean = torch.tensor(data.mean, device=device).view(1, 3, 1, 1)
    std = torch.tensor(data.std, device=device).view(1, 3, 1, 1)

    def prepared(images):  # uint8 (N, 3, 32, 32) -> normalised fp16, channels_last, as airbench's loader
        images = (images.to(device, DTYPE[device.type]) / 255 - mean) / std
        return images.to(DTYPE[device.type]).contiguous(memory_format=torch.channels_last)

    keep = torch.randperm(len(data.train.images), generator=torch.Generator().manual_seed(0))[:args.limit]
    train_x, test_x = prepared(data.train.images[keep]), prepared(data.test.images)
    train_y, test_y = data.train.labels[keep].to(device), data.test.labels.to(device)
    train(train_x, train_y, test_x, test_y, 1, seed=99)  # warm-up: cuDNN autotuning, kernels
    for epochs in map(float, args.epochs.split(",")):
        for seed in map(int, args.seeds.split(",")):
            tta, plain, seconds = train(train_x, train_y, test_x, test_y, epochs, seed)
            print(f"airbench94 reference  epochs {epochs:5.1f}  seed {seed}  test {100 * tta:.2f}% (TTA)  "
                  f"{100 * plain:.2f}% (plain)  {seconds:.2f} s", flush=True)


if __name__ == "__main__":
    main()
