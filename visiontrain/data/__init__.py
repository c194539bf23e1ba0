"""Data: named datasets and image folders, decoded once into uint8 tensors and cached (data/dataset.py).

The names load lazily (PEP 562), so a decoding worker (data/workers.py) imports data.decode without torch.
"""
from __future__ import annotations

import importlib
from typing import Any

_NAMES = {"dataset": ("Dataset", "load_dataset", "load_dataset_of", "list_datasets", "flip_and_border", "subsample",
                      "subset_note", "typical_side"),
          "tensors": ("ImageTensors",), "registry": ("DATASETS",)}
_MODULE_OF = {name: module for module, names in _NAMES.items() for name in names}
__all__ = ["Dataset", "ImageTensors", "load_dataset", "load_dataset_of", "list_datasets", "DATASETS"]


def __getattr__(name: str) -> Any:
    if name not in _MODULE_OF:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_MODULE_OF[name]}", __name__), name)
    globals()[name] = value  # once: later lookups are plain attribute reads
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_MODULE_OF))
