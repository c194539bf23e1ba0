"""Models of other packages: the `visiontrain.models` entry-point group, read as a provider of the MODELS registry.

A package registers a builder under a name in its pyproject.toml:

    [project.entry-points."visiontrain.models"]
    tiny-cnn = "mymodels:tiny_cnn"        # a function or an nn.Module class

and once the package is installed, `--model tiny-cnn` trains it, and predict, eval, explain and export rebuild it
from a run's checkpoint (which holds weights only). The builder is called with those of `num_classes`,
`in_channels`, `image_size` and `width` that it accepts, and may return any nn.Module (models/own.py wraps it).

Entry points load when a name is not among visiontrain's own (a lazy registration, as torchvision's are): a package
that fails to import is one warning naming it, not a broken `visiontrain`.
"""
from __future__ import annotations

import sys
from functools import partial
from importlib.metadata import EntryPoint, entry_points

from .._registry import MODELS
from .own import call_builder

GROUP = "visiontrain.models"


def _register(entry: EntryPoint) -> None:
    try:
        builder = entry.load()
    except Exception as error:  # noqa: BLE001 - someone else's package: any import error is theirs, said once
        print(f"visiontrain: warning: skipped model {entry.name!r} of the {GROUP} entry points ({entry.value}): "
              f"{type(error).__name__}: {error}", file=sys.stderr)
        return
    if not callable(builder):
        print(f"visiontrain: warning: skipped model {entry.name!r} ({entry.value}): it is not a function or class",
              file=sys.stderr)
        return
    build = partial(call_builder, builder, entry.name)
    build.__doc__ = (builder.__doc__ or f"{entry.value} (from the {GROUP} entry points)").strip()
    build.__wrapped__ = builder  # python_name() finds the registered name of the builder passed to train(model=)
    try:
        MODELS.register(entry.name)(build)
    except ValueError:  # a built-in keeps its name; silently replacing it would change what old runs rebuild
        print(f"visiontrain: warning: skipped model {entry.name!r} ({entry.value}): visiontrain has a model of "
              "that name; register it under another", file=sys.stderr)


def _load_entry_points() -> None:
    for entry in entry_points(group=GROUP):
        _register(entry)


MODELS.register_lazy(_load_entry_points)
