"""Atomic file writes: a reader sees the old file or the new one, never a part of either.

Same-directory temp file -> flush + fsync -> os.replace -> fsync of the directory. A failure (disk full, a
read-only folder) leaves the previous file untouched and raises OSError naming the path.
"""
from __future__ import annotations

import errno
import io
import os
import tempfile
from pathlib import Path
from typing import Any

from .errors import OutputError

TMP_SUFFIX = ".tmp"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return  # some filesystems do not allow opening a directory; the rename is still atomic
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


TEMP_NAME_CHARS = 64  # of the final name kept in the temp file's name: a name near the filesystem's limit
# (255 bytes) must not fail only because its temp name is longer


def output_error(path: Path, error: OSError) -> OSError:
    """The OutputError (one sentence naming the file and what to do) for the usual reasons a user's output path
    cannot be written; other errors (a full disk...) unchanged."""
    if isinstance(error, OutputError):
        return error
    if error.errno == errno.ENAMETOOLONG:
        longest = max((part for part in path.parts), key=lambda part: len(os.fsencode(part)))
        return OutputError(f"cannot write {path}: the name {longest[:40]}... is {len(os.fsencode(longest))} bytes "
                           "long, more than the filesystem allows (usually 255); choose a shorter name")
    if error.errno in (errno.EISDIR, errno.ENOTDIR, errno.EEXIST):
        blocker = next((parent for parent in [*reversed(path.parents)] if parent.is_file()), None)
        return OutputError(f"cannot write {path}: {blocker} is a file, not a folder; choose another path" if blocker
                           else f"cannot write {path}: it is a folder; give the name of a file")
    if error.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return OutputError(f"cannot write {path} ({error.strerror}); choose a folder you can write to")
    return error


def output_file(path: str | Path, flag: str) -> Path:
    """`path` as a file to write, refused at once (before any work) if it names a folder: `flag` is the option
    that gave it, for the sentence."""
    path = Path(path).expanduser()
    if _is_dir(path):
        raise OutputError(f"{flag} {path} is a folder; give the name of a file to write, such as {path / 'NAME'}")
    return path


def _is_dir(path: Path) -> bool:
    """Path.is_dir, with a name too long for the filesystem refused as one sentence (is_dir raises for it)."""
    try:
        return path.is_dir()
    except OSError as error:
        raise output_error(path, error) from None


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    path = Path(path)
    if _is_dir(path):  # os.replace would fail only after the data is written, with a bare errno
        raise OutputError(f"cannot write {path}: it is a folder; give the name of a file")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name[:TEMP_NAME_CHARS]}.", suffix=TMP_SUFFIX)
    except OSError as error:
        raise output_error(path, error) from None
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp creates 0600; a run folder should be readable like any file
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException as error:
        Path(tmp_name).unlink(missing_ok=True)
        if isinstance(error, OSError) and error.errno == errno.ENOSPC:
            raise OSError(errno.ENOSPC, f"No space left on the device while writing {path}; the previous "
                          "version of the file is unchanged. Free some disk space and resume") from None
        if isinstance(error, OSError):
            raise output_error(path, error) from None
        raise
    _fsync_dir(path.parent)


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def atomic_torch_save(path: str | Path, obj: Any) -> None:
    import torch

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def remove_stale_temp_files(folder: Path) -> list[Path]:
    """Delete temp files left by a process killed mid-write (they never carry a final name)."""
    stale = [p for p in folder.glob(f".*{TMP_SUFFIX}") if p.is_file()] if folder.is_dir() else []
    for path in stale:
        path.unlink(missing_ok=True)
    return stale
