"""The one walk of a folder tree that every verb uses to find files: the folder scan (train, eval, `data`), the
cache key, and the inputs of predict and explain.

What it guarantees, whatever is on disk:
- only regular files are returned (a symbolic link to one counts); a FIFO, a device file or a socket is never
  opened, so nothing can block on it;
- symbolic links to folders are followed, but each real folder is entered once: a link loop, or a second link
  to a folder already listed, is reported (`repeats`) and not entered again, so the walk ends and its memory is
  bounded by the number of real folders;
- a problem with one entry (a dangling link, a link loop, a folder that cannot be listed, a name that is not
  valid UTF-8) is reported for that entry (`problems`) and the walk goes on;
- what is ignored on purpose is reported too (`ignored`): hidden entries (names starting with '.', such as
  .DS_Store or .ipynb_checkpoints) and __MACOSX folders (the resource forks zip archives made on a Mac carry).

Entries are visited in name order, a folder's files before its subfolders, so the same tree always gives the same
list (split files and the cache rely on that order).
"""
from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

IGNORED_FOLDERS = {"__MACOSX": "a __MACOSX folder (the macOS resource forks that zip archives made on a Mac carry), "
                               "not images"}
HIDDEN = "hidden (its name starts with '.')"


def shown(path: str | Path) -> str:
    """`path` as printable text: bytes of a name that are not UTF-8 appear as \\xNN escapes (a str holding lone
    surrogates cannot be printed, written to a UTF-8 file or shown in a page)."""
    return os.fsencode(str(path)).decode("utf-8", "backslashreplace")


def is_utf8(name: str) -> bool:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe), not a regular file; only regular files are read"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device file, not a regular file; only regular files are read"
    if stat.S_ISSOCK(mode):
        return "a socket, not a regular file; only regular files are read"
    return "not a regular file; only regular files are read"


@dataclass
class Problem:
    path: str  # as shown(): printable
    reason: str
    folder: bool = False  # the entry is (or was meant to be) a folder
    bad_name: bool = False  # its name is not valid UTF-8


@dataclass
class Walker:
    """Walks folders, entering each real folder once across all its walks; collects what it met on the way."""

    ignored: list[tuple[str, str]] = field(default_factory=list)  # (path, reason): left out on purpose
    problems: list[Problem] = field(default_factory=list)  # entries that cannot be used
    repeats: list[tuple[str, str]] = field(default_factory=list)  # (path, reason): folders reached a second time
    seen: dict[tuple[int, int], Path] = field(default_factory=dict)  # (st_dev, st_ino) -> the path it was entered by
    base: str | None = None  # the real path of the first folder entered: links to folders that contain it are not
    # followed (a link to / inside a class folder would otherwise walk the whole disk, once per folder but for hours)

    def enter(self, folder: Path) -> bool:
        """Register `folder` as entered; False (and a repeat reported) if its real folder was entered already."""
        try:
            info = folder.stat()
        except OSError as error:
            self.problems.append(Problem(shown(folder), f"cannot be opened ({error.strerror or error})", True))
            return False
        if self.base is None:
            self.base = os.path.realpath(folder)
        elif folder.is_symlink() and (target := os.path.realpath(folder)) != self.base and \
                Path(self.base).is_relative_to(target):
            self.repeats.append((shown(folder), f"a symbolic link to {shown(target)}, a folder that contains "
                                 f"{shown(self.base)}; not followed"))
            return False
        identity = (info.st_dev, info.st_ino)
        first = self.seen.setdefault(identity, folder)
        if first == folder:
            return True
        loop = folder.is_relative_to(first)
        self.repeats.append((shown(folder), f"a symbolic link loop back to {shown(first)}; not followed (each folder "
                             "is listed once)" if loop else f"the same folder as {shown(first)} (linked twice); not "
                             "followed, so its files are listed once, there"))
        return False

    def listing(self, folder: Path) -> tuple[list[Path], list[Path]]:
        """(regular files, subfolders) directly in `folder`, each sorted by name; subfolders entered already (a
        loop, a second link) are left out and reported, and so are hidden, ignored and unusable entries."""
        try:
            with os.scandir(folder) as scan:
                entries = sorted(scan, key=lambda entry: entry.name)
        except OSError as error:
            self.problems.append(Problem(shown(folder), f"cannot be listed ({error.strerror or error})", True))
            return [], []
        files, folders = [], []
        for entry in entries:
            path = Path(folder, entry.name)
            if entry.name.startswith("."):
                self.ignored.append((shown(path), HIDDEN))
                continue
            try:
                is_dir = entry.is_dir()  # follows a link
                is_file = not is_dir and entry.is_file()
            except OSError:  # a link to itself (ELOOP), or into a folder that cannot be searched
                self.problems.append(Problem(shown(path), self.not_a_file(path)))
                continue
            if not is_utf8(entry.name):
                what = "folder" if is_dir else "file"
                self.problems.append(Problem(shown(path), f"a {what} whose name is not valid UTF-8 text; rename it "
                                             "(names are written into CSV, JSON and HTML files)", is_dir, True))
            elif is_dir and entry.name in IGNORED_FOLDERS:
                self.ignored.append((shown(path), IGNORED_FOLDERS[entry.name]))
            elif is_dir:
                if self.enter(path):
                    folders.append(path)
            elif is_file:
                files.append(path)
            else:
                self.problems.append(Problem(shown(path), self.not_a_file(path)))
        return files, folders

    @staticmethod
    def not_a_file(path: Path) -> str:
        """Why `path`, which exists as a name but is neither a folder nor a regular file, is not read."""
        try:
            return _kind(os.stat(path).st_mode)
        except OSError as error:
            if os.path.islink(path):
                try:
                    target = os.readlink(path)
                except OSError:
                    target = "?"
                if error.errno == errno.ELOOP:
                    return f"a symbolic link loop ({shown(target)}), not a file"
                return f"a symbolic link to {shown(target)}, which does not exist (a dangling link)"
            return f"cannot be examined ({error.strerror or error})"

    def files_under(self, folder: Path) -> list[Path]:
        """Every regular file under `folder` (which the caller has entered, or enters here), subfolders included:
        a folder's files first, then each subfolder's, in name order."""
        if not self.enter(Path(folder)):  # entering it again by the same path is not a repeat
            return []
        found: list[Path] = []
        stack = [Path(folder)]
        while stack:
            files, folders = self.listing(stack.pop())
            found += files
            stack += reversed(folders)
        return found
