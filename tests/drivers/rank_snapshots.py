"""Driver: run `visiontrain train ...` (under torchrun) and let every rank, not only rank 0, record what it holds.

usage: python rank_snapshots.py OUT_DIR -- <train args>
Writes OUT_DIR/rank<R>-epoch<E>.pt after each epoch's end (E = epochs completed; E = 0: before the first step) with
the rank's model state dict, the metrics rows it computed and the run's finetune mode; and OUT_DIR/rank<R>-summary.json
with the summary the rank returned. Observes from outside the product code (wraps three methods of Fit).
"""
import json
import sys
from pathlib import Path

import torch

from visiontrain.cli import main
from visiontrain.fit import Fit

out = Path(sys.argv[1])
args = sys.argv[sys.argv.index("--") + 1:]
original_save, original_run_epochs, original_finish = Fit.save, Fit.run_epochs, Fit.finish


def snapshot(fit: Fit) -> None:
    state = {k: v.detach().clone() for k, v in fit.built.model.state_dict().items()}
    torch.save({"model": state, "rows": [dict(r) for r in fit.state.rows], "finetune": fit.built.finetune},
               out / f"rank{fit.env.rank}-epoch{fit.state.epoch}.pt")


def save(self, *, best=False):
    original_save(self, best=best)
    if self.state.step_in_epoch == 0:  # an epoch's end, not a step checkpoint
        snapshot(self)


def run_epochs(self):
    snapshot(self)
    original_run_epochs(self)


def finish(self):
    summary = original_finish(self)
    (out / f"rank{self.env.rank}-summary.json").write_text(json.dumps(summary, default=str))
    return summary


Fit.save, Fit.run_epochs, Fit.finish = save, run_epochs, finish
sys.exit(main(args))
