"""The decoded-tensor cache: decode a dataset once, load it in well under a second afterwards.

An entry is keyed by a hash of its sources (path, size, mtime of every file) and the decode parameters, so
a changed source file means a new key and a fresh decode. The entry stores a SHA-256 of its own tensors; a
corrupted entry is detected on load, deleted and rebuilt, never trained on.
"""
from __future__ import annotations

import hashlib
import json
import os
import pickle
import zipfile
import sys
from pathlib import Path
from typing import Any, Callable

import torch

from .._io import atomic_torch_save
from .walk import Walker

CACHE_VERSION = 1


def home() -> Path:
    """visiontrain's own folder: $VISIONTRAIN_HOME, else ~/.cache/visiontrain."""
    return Path(os.environ.get("VISIONTRAIN_HOME") or Path.home() / ".cache" / "visiontrain").expanduser()


def list_files(root: Path) -> list[Path]:
    """Every regular file under `root` that the folder loader would look at, in a fixed order: data/walk.py's walk
    (symbolic links followed, each real folder once; hidden entries and __MACOSX left out).

    scandir rather than rglob + is_file: no extra stat per file (60,000 CIFAR-10 JPEGs: 0.5 s, not 3 s)."""
    return Walker().files_under(Path(root))


def files_key(paths: list[Path]) -> list[tuple[str, int, int]]:
    """(resolved path, size, mtime) of each file: a changed, added or removed file changes the key.

    Each folder is resolved once, not each file (realpath per file was 5 of a CIFAR-10 cache hit's 6 s here)."""
    result, folders = [], {}
    for path in paths:
        stat = path.stat()
        folder = folders.get(path.parent) or folders.setdefault(path.parent, path.parent.resolve())
        result.append((str(folder / path.name), stat.st_size, stat.st_mtime_ns))
    return result


def _tensor_digest(entry: dict[str, Any]) -> str:
    digest = hashlib.sha256()
    for name in sorted(entry):
        value = entry[name]
        if isinstance(value, torch.Tensor):
            digest.update(name.encode())
            digest.update(memoryview(value.contiguous().view(torch.uint8).flatten().numpy()))
        elif name != "checksum":
            digest.update(json.dumps(value, sort_keys=True).encode())
    return digest.hexdigest()


def cached(name: str, key: dict[str, Any], build: Callable[[], dict[str, Any]]) -> tuple[dict[str, Any], str]:
    """Return (entry, status) where status is 'hit', 'built' or 'rebuilt' (the old entry was corrupt).

    entry: a dict of tensors and JSON-able values produced by `build()`.
    """
    key_hash = hashlib.sha256(json.dumps({"v": CACHE_VERSION} | key, sort_keys=True).encode()).hexdigest()[:20]
    path = home() / "cache" / f"{name}-{key_hash}.pt"
    status = "built"
    if path.is_file():
        try:
            entry = torch.load(path, weights_only=True)
            if isinstance(entry, dict) and entry.get("checksum") == _tensor_digest(entry):
                return entry, "hit"
        except (RuntimeError, OSError, EOFError, ValueError, KeyError, pickle.UnpicklingError, zipfile.BadZipFile):
            pass  # an unreadable cache file is rebuilt: the source files are the truth
        print(f"visiontrain: the cached copy {path} is corrupt; cache rebuilt from the source files", file=sys.stderr)
        path.unlink(missing_ok=True)
        status = "rebuilt"
    entry = build()
    entry["checksum"] = _tensor_digest(entry)
    try:
        atomic_torch_save(path, entry)
    except OSError as error:  # a read-only or full cache folder costs speed, not the run
        print(f"visiontrain: could not write the cache {path} ({error}); continuing without it", file=sys.stderr)
    return entry, status
