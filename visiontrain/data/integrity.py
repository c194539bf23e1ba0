"""Checksums, verified downloads and safe archive extraction.

Everything that brings bytes from outside goes through here: a download is checked before it gets its final
name (a partial or wrong file is deleted), HTTPS is never downgraded to HTTP, and archives are extracted only
when no member could land outside the target folder.
"""
from __future__ import annotations

import hashlib
import os
import tarfile
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from ..errors import DataError

_LOOPBACK = ("127.0.0.1", "localhost", "::1")


def file_digest(path: Path, algorithm: str = "sha256") -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, algorithm).hexdigest()


def bytes_digest(data: bytes, algorithm: str) -> str:
    return hashlib.new(algorithm, data).hexdigest()


def _check_url_scheme(url: str) -> None:
    parts = urllib.parse.urlsplit(url)
    # Plain HTTP is accepted only from this machine (a local mirror); anything remote must be HTTPS.
    if parts.scheme != "https" and not (parts.scheme == "http" and parts.hostname in _LOOPBACK):
        raise DataError(f"refusing to download {url}: only https:// URLs (or http:// on this machine) are allowed")


class _NoDowngrade(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):  # noqa: ANN001 (urllib's signature)
        if urllib.parse.urlsplit(req.full_url).scheme == "https" and urllib.parse.urlsplit(newurl).scheme != "https":
            raise DataError(f"refusing the redirect from {req.full_url} to {newurl}: it downgrades HTTPS to HTTP")
        _check_url_scheme(newurl)
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def download(url: str, target: Path, *, sha256: str | None = None, md5: str | None = None,
             timeout: float = 60.0) -> Path:
    """Download `url` to `target`, verify its checksum, and only then give it the final name."""
    _check_url_scheme(url)
    target.parent.mkdir(parents=True, exist_ok=True)
    opener = urllib.request.build_opener(_NoDowngrade)
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out, opener.open(url, timeout=timeout) as response:
            while chunk := response.read(1 << 20):
                out.write(chunk)
        for algorithm, expected in (("sha256", sha256), ("md5", md5)):
            if expected is not None and (actual := file_digest(tmp, algorithm)) != expected:
                raise DataError(f"the file downloaded from {url} has {algorithm} {actual}, expected {expected}; "
                                f"it was deleted. Try again later or place a good copy in the data folder")
        os.replace(tmp, target)
        return target
    except (urllib.error.URLError, OSError) as error:
        raise DataError(f"could not download {url} ({error}); place the file in --data-dir instead") from None
    finally:
        tmp.unlink(missing_ok=True)


def safe_extract_tar(archive: Path, destination: Path) -> None:
    """Extract a tar archive, refusing (before writing anything) any member that would escape `destination`."""
    destination = destination.resolve()
    try:
        with tarfile.open(archive) as tar:
            members = tar.getmembers()
            for member in members:
                _check_member(archive, member, destination)
            destination.mkdir(parents=True, exist_ok=True)
            tar.extractall(destination, members=members, filter="data")  # the stdlib's own second line of defence
    except (tarfile.TarError, EOFError, OSError) as error:
        raise DataError(f"{archive} is not a readable tar archive ({error}); download it again") from None


def _check_member(archive: Path, member: tarfile.TarInfo, destination: Path) -> None:
    name = member.name
    target = (destination / name).resolve()
    if os.path.isabs(name) or not target.is_relative_to(destination):
        raise DataError(f"refusing to extract {archive}: member {name!r} would be written outside {destination}")
    if member.issym() or member.islnk():
        link = (target.parent / member.linkname).resolve() if member.issym() else (destination / member.linkname).resolve()
        if os.path.isabs(member.linkname) or not link.is_relative_to(destination):
            raise DataError(f"refusing to extract {archive}: member {name!r} links outside {destination}")
    if not (member.isfile() or member.isdir() or member.issym() or member.islnk()):
        raise DataError(f"refusing to extract {archive}: member {name!r} is a device or special file")
