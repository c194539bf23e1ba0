"""A live one-line progress bar on a terminal; one plain line per epoch otherwise (logs, CI, notebooks)."""
from __future__ import annotations

import sys
import time


class Progress:
    def __init__(self, mode: str, total_epochs: int, steps_per_epoch: int, stream=None):  # noqa: ANN001
        self.stream = stream or sys.stdout
        is_tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.mode = ("bar" if is_tty else "line") if mode == "auto" else mode
        self.total_epochs, self.steps_per_epoch = total_epochs, steps_per_epoch
        self.last_draw = 0.0

    def step(self, epoch: int, step: int, loss: float, acc: float, images_per_second: float) -> None:
        now = time.perf_counter()
        if self.mode != "bar" or (now - self.last_draw < 0.2 and step + 1 < self.steps_per_epoch):
            return
        self.last_draw = now
        done = (step + 1) / self.steps_per_epoch
        bar = "#" * int(done * 24)
        self.stream.write(f"\repoch {epoch + 1}/{self.total_epochs} [{bar:<24}] {step + 1}/{self.steps_per_epoch} "
                          f"loss {loss:.4f} acc {acc:.2%} {images_per_second:,.0f} img/s ")
        self.stream.flush()

    def epoch_end(self, row: dict) -> None:
        if self.mode == "none":
            return
        val = f"  val_loss {row['val_loss']:.4f}  val_acc {row['val_acc']:.2%}" if row.get("val_acc") is not None else ""
        prefix = "\r" if self.mode == "bar" else ""
        self.stream.write(f"{prefix}epoch {row['epoch']}/{self.total_epochs}  {row['seconds']:.1f}s  lr {row['lr']:.3g}  "
                          f"train_loss {row['train_loss']:.4f}  train_acc {row['train_acc']:.2%}{val}"
                          f"{' ' * 12}\n")
        self.stream.flush()

    def message(self, text: str) -> None:
        if self.mode != "none":
            self.stream.write(text + "\n")
            self.stream.flush()
