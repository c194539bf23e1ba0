"""A live one-line progress bar on a terminal; one plain line per epoch otherwise (logs, CI, notebooks).

In line mode a long epoch (or the probe's feature extraction) also gets a line FIRST_LINE_SECONDS after it starts
and then every LINE_EVERY_SECONDS, so a run on a slow CPU shows that it is working within seconds, not after its
first epoch."""
from __future__ import annotations

import sys
import time

FIRST_LINE_SECONDS = 5.0
LINE_EVERY_SECONDS = 30.0


class Progress:
    def __init__(self, mode: str, total_epochs: int, steps_per_epoch: int, stream=None):  # noqa: ANN001
        self.stream = stream or sys.stdout
        is_tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.mode = ("bar" if is_tty else "line") if mode == "auto" else mode
        self.total_epochs, self.steps_per_epoch = total_epochs, steps_per_epoch
        self.last_draw = 0.0
        self.started: tuple[object, float] | None = None  # (what: an epoch or a task, when it started)
        self.next_line = 0.0

    def _due(self, what: object) -> bool:
        """Line mode: whether `what` (running since its first call) is due a line now."""
        now = time.perf_counter()
        if self.started is None or self.started[0] != what:
            self.started, self.next_line = (what, now), now + FIRST_LINE_SECONDS
        if now < self.next_line:
            return False
        self.next_line = now + LINE_EVERY_SECONDS
        return True

    def _elapsed(self) -> float:
        return time.perf_counter() - self.started[1] if self.started else 0.0

    def epoch_begin(self, epoch: int) -> None:
        """The epoch's clock starts (its first step's line comes FIRST_LINE_SECONDS after this, in line mode)."""
        self.started, self.next_line = (("epoch", epoch), time.perf_counter()), time.perf_counter() + FIRST_LINE_SECONDS

    def step(self, epoch: int, step: int, loss: float, acc: float, images_per_second: float) -> None:
        if self.mode == "line" and self._due(("epoch", epoch)) and step + 1 < self.steps_per_epoch:
            left = self._elapsed() * (self.steps_per_epoch - step - 1) / (step + 1)
            self.stream.write(f"epoch {epoch + 1}/{self.total_epochs}: step {step + 1}/{self.steps_per_epoch}  loss "
                              f"{loss:.4f}  acc {acc:.2%}  {images_per_second:,.0f} img/s  ~{left:.0f} s left in "
                              "this epoch\n")
            self.stream.flush()
        now = time.perf_counter()
        if self.mode != "bar" or (now - self.last_draw < 0.2 and step + 1 < self.steps_per_epoch):
            return
        self.last_draw = now
        done = (step + 1) / self.steps_per_epoch
        bar = "#" * int(done * 24)
        self.stream.write(f"\repoch {epoch + 1}/{self.total_epochs} [{bar:<24}] {step + 1}/{self.steps_per_epoch} "
                          f"loss {loss:.4f} acc {acc:.2%} {images_per_second:,.0f} img/s ")
        self.stream.flush()

    def task(self, what: str, done: int, total: int) -> None:
        """Progress of a step outside the epochs' training steps (the probe's feature extraction): redrawn on a
        terminal, a line now and then in line mode."""
        if self.mode == "none" or (self.mode == "line" and not self._due(what) and done < total):
            return
        now = time.perf_counter()
        if self.mode == "bar" and now - self.last_draw < 0.2 and done < total:
            return
        self.last_draw = now
        rate = done / max(1e-9, self._elapsed())
        text = f"{what}: {done:,}/{total:,} ({rate:,.0f}/s, ~{(total - done) / max(rate, 1e-9):.0f} s left)"
        self.stream.write(f"\r{text} " if self.mode == "bar" else text + "\n")
        if self.mode == "bar" and done >= total:
            self.stream.write("\n")
        self.stream.flush()

    def epoch_end(self, row: dict) -> None:
        if self.mode == "none":
            return
        val = f"  val_loss {row['val_loss']:.4f}  val_acc {row['val_acc']:.2%}" if row.get("val_acc") is not None else ""
        prefix = "\r" if self.mode == "bar" else ""
        rate = "probe (head by L-BFGS)" if row.get("stage") == "probe" else f"lr {row['lr']:.3g}" + (
            f" (backbone {row['backbone_lr']:.3g})" if row.get("backbone_lr") else "")
        self.stream.write(f"{prefix}epoch {row['epoch']}/{self.total_epochs}  {row['seconds']:.1f}s  {rate}  "
                          f"train_loss {row['train_loss']:.4f}  train_acc {row['train_acc']:.2%}{val}"
                          f"{' ' * 12}\n")
        self.stream.flush()

    def message(self, text: str) -> None:
        if self.mode != "none":
            self.stream.write(text + "\n")
            self.stream.flush()
