"""Tuned recipes, selectable by name (`--preset`). The plain `visiontrain train` uses the Fashion-MNIST one.

Each was measured on 2 Zen 4 cores; the figures and commands are in the README. Explicit flags override fields.
"""
from .config import PRESETS

_FAST = {"model": "fastnet", "optimizer": "sgd", "momentum": 0.85, "nesterov": True, "schedule": "onecycle",
         "label_smoothing": 0.2, "tta": True, "augment": "auto", "crop_padding": 2, "val_fraction": 0.1}

PRESETS.register("fashion-mnist")(_FAST | {"dataset": "fashion-mnist", "width": 0.5, "epochs": 10, "batch_size": 256,
                                           "lr": 0.2, "weight_decay": 5e-4})
PRESETS.register("mnist")(_FAST | {"dataset": "mnist", "width": 0.5, "epochs": 5, "batch_size": 256, "lr": 0.2,
                                   "weight_decay": 5e-4})
PRESETS.register("cifar10")(_FAST | {"dataset": "cifar10", "width": 1.0, "epochs": 10, "batch_size": 512, "lr": 0.2,
                                     "weight_decay": 5e-4, "crop_padding": 4})
