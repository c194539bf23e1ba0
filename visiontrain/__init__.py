"""visiontrain: from image data to a trained, evaluated and exported image classifier with PyTorch.

The public API is the CLI's verbs: train, evaluate, load, list_models, list_datasets. Imports are lazy so that
`visiontrain --help` does not pay for importing torch.
"""
from __future__ import annotations

from ._version import __version__
__all__ = ["train", "evaluate", "load", "predict_paths", "export_run", "write_report", "compare_runs", "list_models",
           "list_datasets", "Config", "Callback", "RunInfo", "Step", "__version__"]


def __getattr__(name: str):
    if name in ("train", "evaluate", "load", "Callback", "RunInfo", "Step"):
        from . import api

        return getattr(api, name)
    if name == "predict_paths":
        from .predict import predict_paths

        return predict_paths
    if name == "export_run":
        from .export import export_run

        return export_run
    if name in ("write_report", "compare_runs"):
        from . import report

        return getattr(report, name)
    if name == "list_models":
        from .models import list_models

        return list_models
    if name == "list_datasets":
        from .data import list_datasets

        return list_datasets
    if name == "Config":
        from .config import Config

        return Config
    raise AttributeError(f"module 'visiontrain' has no attribute {name!r}")
