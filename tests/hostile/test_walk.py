"""The one walk every verb uses (data/walk.py): regular files only, each real folder once, a problem per entry."""
from __future__ import annotations

import os
from pathlib import Path

from visiontrain.data import cache
from visiontrain.data.walk import Walker

from .builders import NOT_UTF8, picture


def tree(root: Path) -> Path:
    """a/{1,2}.png, a/sub/3.png, b/4.png: a plain tree, the order os.walk gave before the walker existed."""
    for name in ("a/1.png", "a/2.png", "a/sub/3.png", "b/4.png", "b/10.png"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        picture(len(name)).save(root / name)
    return root


def os_walk_order(root: Path) -> list[Path]:
    files = []
    for folder, dirnames, filenames in os.walk(root):
        dirnames.sort()
        files += [Path(folder, name) for name in sorted(filenames)]
    return files


def test_a_plain_tree_is_listed_in_the_order_os_walk_gave(tmp_path):
    root = tree(tmp_path / "t")
    assert cache.list_files(root) == os_walk_order(root)  # split files and cache keys depend on this order


def test_link_loops_end_and_each_real_folder_is_listed_once(tmp_path):
    root = tree(tmp_path / "t")
    os.symlink(".", root / "a" / "self")  # a -> a
    os.symlink("..", root / "a" / "sub" / "up")  # a/sub -> a
    os.symlink("..", root / "b" / "root")  # b/root -> the root
    os.symlink(root / "a", root / "c")  # a second name for a: its files must not count twice
    walker = Walker()
    files = walker.files_under(root)
    assert sorted(p.relative_to(root).as_posix() for p in files) == ["a/1.png", "a/2.png", "a/sub/3.png",
                                                                      "b/10.png", "b/4.png"]
    repeats = dict(walker.repeats)
    assert set(repeats) == {str(root / "a" / "self"), str(root / "a" / "sub" / "up"), str(root / "b" / "root"),
                            str(root / "c")}
    assert "loop" in repeats[str(root / "a" / "self")] and "linked twice" in repeats[str(root / "c")]


def test_a_link_to_a_folder_that_contains_the_walk_is_not_followed(tmp_path):
    root = tree(tmp_path / "t")
    os.symlink("/", root / "a" / "everything")  # once per folder, but the whole disk
    os.symlink(tmp_path, root / "b" / "parent")
    walker = Walker()
    assert len(walker.files_under(root)) == 5
    repeats = dict(walker.repeats)
    assert "contains" in repeats[str(root / "a" / "everything")] and "contains" in repeats[str(root / "b" / "parent")]


def test_only_regular_files_are_returned_and_every_other_entry_says_why(tmp_path):
    root = tree(tmp_path / "t")
    a = root / "a"
    os.mkfifo(a / "pipe.png")
    os.symlink("/dev/zero", a / "zeros.png")
    os.symlink(root / "nowhere.png", a / "gone.png")
    os.symlink("loop.png", a / "loop.png")
    picture(9).save(a / f"{NOT_UTF8}.png")
    (a / f"{NOT_UTF8}-folder").mkdir()
    walker = Walker()
    files = walker.files_under(root)
    assert all(p.is_file() for p in files) and len(files) == 5
    reasons = {problem.path: problem.reason for problem in walker.problems}
    assert "FIFO" in reasons[str(a / "pipe.png")] and "device" in reasons[str(a / "zeros.png")]
    assert "dangling" in reasons[str(a / "gone.png")] and "loop" in reasons[str(a / "loop.png")]
    assert "not valid UTF-8" in reasons[f"{a}/caf\\xe9.png"]  # shown with an escape: printable
    assert "folder whose name is not valid UTF-8" in reasons[f"{a}/caf\\xe9-folder"]
    for text in reasons:
        text.encode("utf-8")  # every path a problem names can be printed and written


def test_hidden_entries_and_macosx_are_ignored_and_reported(tmp_path):
    root = tree(tmp_path / "t")
    (root / "a" / ".DS_Store").write_bytes(b"junk")
    (root / ".git" / "objects").mkdir(parents=True)
    (root / "__MACOSX" / "a").mkdir(parents=True)
    (root / "__MACOSX" / "a" / "._1.png").write_bytes(b"fork")
    (root / "__pycache__").mkdir()
    picture(3).save(root / "__pycache__" / "kept.png")  # only __MACOSX is special: other __ folders are walked
    walker = Walker()
    files = walker.files_under(root)
    ignored = dict(walker.ignored)
    assert set(ignored) == {str(root / "a" / ".DS_Store"), str(root / ".git"), str(root / "__MACOSX")}
    assert "hidden" in ignored[str(root / ".git")] and "__MACOSX" in ignored[str(root / "__MACOSX")]
    assert root / "__pycache__" / "kept.png" in files
