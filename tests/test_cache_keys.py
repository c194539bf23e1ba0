"""The decoded-tensor cache's key: cheap to compute for 60,000 files, and still changed by any changed source."""
from __future__ import annotations

import hashlib
import io
import os
import tarfile
from pathlib import Path

import pytest

from visiontrain.data import cache, registry
from visiontrain.errors import DataError


def test_the_key_changes_with_any_file_and_follows_linked_folders(tmp_path):
    root = tmp_path / "data"
    (root / "b").mkdir(parents=True)
    (root / "a").mkdir()
    for path in (root / "b" / "2.png", root / "a" / "1.png", root / "a" / "0.png"):
        path.write_bytes(b"x")
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "3.png").write_bytes(b"y")
    os.symlink(tmp_path / "elsewhere", root / "c")
    files = cache.list_files(root)
    assert [p.relative_to(root).as_posix() for p in files] == ["a/0.png", "a/1.png", "b/2.png", "c/3.png"]
    key = cache.files_key(files)
    assert key[3][0] == str((tmp_path / "elsewhere" / "3.png").resolve())  # the same key however the folder is reached
    (root / "a" / "1.png").write_bytes(b"xx")  # an edited file
    assert cache.files_key(files) != key
    (root / "d.png").write_bytes(b"z")  # an added file
    assert len(cache.files_key(cache.list_files(root))) == 5


def _tarball(path: Path, content: bytes) -> str:
    with tarfile.open(path, "w:gz") as tar:
        info = tarfile.TarInfo("cifar10-jpg/train/cat/0.jpg")
        info.size = len(content)
        tar.addfile(info, io.BytesIO(content))
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_the_cifar_jpeg_archive_is_the_key_and_is_extracted_once_per_content(tmp_path, monkeypatch):
    monkeypatch.setenv("VISIONTRAIN_HOME", str(tmp_path / "home"))
    archive = tmp_path / "data" / "cifar10-jpg.tar.gz"
    archive.parent.mkdir()
    digest = _tarball(archive, b"first")
    # the cache is keyed by one archive, not its 60,000 members (a cache hit listed and resolved each: ~6 s)
    assert registry.source_files(registry.DATASETS.get("cifar10").find(archive.parent)) == [archive]

    folder = registry._extract_jpg_copy(archive, digest)
    image = folder / "train" / "cat" / "0.jpg"
    assert image.read_bytes() == b"first"
    os.utime(image, ns=(1, 1))
    registry._extract_jpg_copy(archive, digest)
    assert image.stat().st_mtime_ns == 1  # the same archive: not extracted again

    other = _tarball(archive, b"second")  # other bytes (a test double's; the real one has a fixed SHA-256)
    assert registry._extract_jpg_copy(archive, other) == folder and image.read_bytes() == b"second"
    with pytest.raises(DataError, match="cifar10-jpg.tar.gz fails its checksum"):
        registry._extract_jpg_copy(archive, digest)
