"""Readers on small files written in the real formats; location order; checksums; downloads; archives."""
from __future__ import annotations

import gzip
import hashlib
import http.server
import io
import pickle
import tarfile
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from realdata import write_idx
from visiontrain.data import load_dataset
from visiontrain.data import registry as data_registry
from visiontrain.data.cifar import read_cifar
from visiontrain.data.idx import read_idx_pair
from visiontrain.data.integrity import download, safe_extract_tar
from visiontrain.errors import DataError

NAMES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def fake_mnist(folder: Path, n_train=60, n_test=20, compress=True, seed=0) -> dict[str, bytes]:
    rng = np.random.default_rng(seed)
    arrays = {NAMES[0]: rng.integers(0, 256, (n_train, 28, 28)), NAMES[1]: np.arange(n_train) % 10,
              NAMES[2]: rng.integers(0, 256, (n_test, 28, 28)), NAMES[3]: np.arange(n_test) % 10}
    for name, array in arrays.items():
        write_idx(folder / (name + (".gz" if compress else "")), array, compress)
    return {name: gzip.decompress((folder / f"{name}.gz").read_bytes()) if compress else (folder / name).read_bytes()
            for name in arrays}


def patch_md5(monkeypatch, raw: dict[str, bytes], dataset="mnist"):
    """Point the registry's expected checksums at our small files (the reader code itself is unchanged)."""
    md5 = {f"{n.split('-')[0]}-{n.split('-')[1]}": hashlib.md5(b).hexdigest() for n, b in raw.items()}
    source = data_registry.DATASETS.get(dataset)
    # the read() closure checks against its md5 dict: swap the cell content for this test only
    for cell in source.read.__closure__:
        if isinstance(cell.cell_contents, dict) and "train-images" in cell.cell_contents:
            monkeypatch.setitem(cell.cell_contents, "train-images", md5["train-images"])
            for key in ("train-labels", "t10k-images", "t10k-labels"):
                monkeypatch.setitem(cell.cell_contents, key, md5[key])


@pytest.mark.parametrize("compress", [True, False])
def test_idx_reader_reads_gz_and_raw(tmp_path, compress):
    fake_mnist(tmp_path, compress=compress)
    suffix = ".gz" if compress else ""
    images, labels = read_idx_pair(tmp_path / f"{NAMES[0]}{suffix}", tmp_path / f"{NAMES[1]}{suffix}")
    assert images.shape == (60, 1, 28, 28) and images.dtype == torch.uint8
    assert labels.tolist()[:12] == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1]


def test_truncated_idx_names_the_file(tmp_path):
    fake_mnist(tmp_path, compress=False)
    path = tmp_path / NAMES[0]
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(DataError, match=f"{path}.*truncated"):
        read_idx_pair(path, tmp_path / NAMES[1])


def test_checksum_mismatch_names_file_and_hashes_and_writes_no_cache(tmp_path, isolated_home):
    fake_mnist(tmp_path)
    with pytest.raises(DataError) as error:  # our fake files are not the real MNIST
        load_dataset("mnist", data_dir=str(tmp_path))
    message = str(error.value)
    assert "train-images-idx3-ubyte.gz" in message and "expected 6bbc9ace898e44ae57da46a324031adb" in message
    assert not list((isolated_home / "cache").glob("mnist-*"))  # (no cache folder at all globs to nothing too)


def test_location_order_data_dir_then_home(tmp_path, isolated_home, monkeypatch):
    raw_home = fake_mnist(isolated_home / "mnist", n_train=40, seed=1)
    patch_md5(monkeypatch, raw_home)
    data = load_dataset("mnist", val_fraction=0)  # no data_dir: found in VISIONTRAIN_HOME/mnist
    assert len(data.train) == 40
    with pytest.raises(DataError, match="does not hold the mnist IDX files"):
        load_dataset("mnist", data_dir=str(tmp_path / "empty"))  # explicit folder: never falls back silently


def test_second_load_comes_from_the_cache(tmp_path, monkeypatch):
    raw = fake_mnist(tmp_path)
    patch_md5(monkeypatch, raw)
    first = load_dataset("mnist", data_dir=str(tmp_path))
    second = load_dataset("mnist", data_dir=str(tmp_path))
    assert first.cache_status == "built" and second.cache_status == "hit"
    assert torch.equal(first.train.images, second.train.images) and first.fingerprint == second.fingerprint


def test_corrupt_cache_is_rebuilt_not_trained_on(tmp_path, monkeypatch, isolated_home, capsys):
    raw = fake_mnist(tmp_path)
    patch_md5(monkeypatch, raw)
    fresh = load_dataset("mnist", data_dir=str(tmp_path), val_fraction=0)
    (entry,) = (isolated_home / "cache").glob("mnist-*.pt")
    data = bytearray(entry.read_bytes())
    middle = len(data) // 2
    data[middle:middle + 64] = bytes(64)  # zero a run of bytes inside the tensor payload
    entry.write_bytes(bytes(data))
    again = load_dataset("mnist", data_dir=str(tmp_path), val_fraction=0)
    assert again.cache_status == "rebuilt" and "cache rebuilt" in capsys.readouterr().err
    assert torch.equal(again.train.images, fresh.train.images)


def test_changed_source_file_means_a_fresh_decode(tmp_path, monkeypatch):
    raw = fake_mnist(tmp_path)
    patch_md5(monkeypatch, raw)
    load_dataset("mnist", data_dir=str(tmp_path))
    raw2 = fake_mnist(tmp_path, seed=5)  # new pixels, same names
    patch_md5(monkeypatch, raw2)
    again = load_dataset("mnist", data_dir=str(tmp_path), val_fraction=0)
    assert again.cache_status == "built"
    expected, _ = read_idx_pair(tmp_path / f"{NAMES[0]}.gz", tmp_path / f"{NAMES[1]}.gz")
    assert torch.equal(again.train.images, expected)


# -- CIFAR python batches ---------------------------------------------------------------------------------
def write_cifar10_tar(path: Path, per_batch=20, payload=None) -> Path:
    rng = np.random.default_rng(0)
    members = {"cifar-10-batches-py/batches.meta": {"label_names": [f"c{i}" for i in range(10)]}}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        members[f"cifar-10-batches-py/{name}"] = {"data": rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8),
                                                  "labels": list(np.arange(per_batch) % 10)}
    with tarfile.open(path, "w:gz") as tar:
        for name, obj in members.items():
            data = payload if (payload is not None and name.endswith("data_batch_1")) else pickle.dumps(obj)
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def test_cifar_reader_from_tarball(tmp_path):
    splits = read_cifar(write_cifar10_tar(tmp_path / "cifar-10-python.tar.gz"), variant="cifar10")
    images, labels, classes = splits["train"]
    assert images.shape == (100, 3, 32, 32) and labels.shape == (100,) and classes[3] == "c3"
    assert splits["test"][0].shape == (20, 3, 32, 32)


class _Evil:
    def __reduce__(self):
        import os

        return (os.system, ("touch PWNED",))


def test_cifar_batch_with_code_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    archive = write_cifar10_tar(tmp_path / "c.tar.gz", payload=pickle.dumps({"data": _Evil()}))
    with pytest.raises(DataError, match="not a valid CIFAR batch"):
        read_cifar(archive, variant="cifar10")
    assert not (tmp_path / "PWNED").exists()


def test_truncated_cifar_tarball_names_the_file(tmp_path):
    archive = write_cifar10_tar(tmp_path / "cifar-10-python.tar.gz")
    archive.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    with pytest.raises(DataError, match="cifar-10-python.tar.gz"):
        read_cifar(archive, variant="cifar10")


# -- downloads (a local HTTP server on 127.0.0.1, never the internet) ------------------------------------
@pytest.fixture
def http_server(tmp_path):
    served = tmp_path / "served"
    served.mkdir()
    redirects = {}

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(served), **kwargs)

        def do_GET(self):  # noqa: N802
            if self.path in redirects:
                self.send_response(302)
                self.send_header("Location", redirects[self.path])
                self.end_headers()
                return
            super().do_GET()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", served, redirects
    server.shutdown()


def test_download_verifies_the_checksum_and_deletes_a_wrong_file(tmp_path, http_server):
    url, served, _ = http_server
    (served / "good.bin").write_bytes(b"hello")
    target = download(f"{url}/good.bin", tmp_path / "out" / "good.bin", sha256=hashlib.sha256(b"hello").hexdigest())
    assert target.read_bytes() == b"hello"
    with pytest.raises(DataError, match=r"good.bin has sha256 .* expected 0+"):
        download(f"{url}/good.bin", tmp_path / "out" / "bad.bin", sha256="0" * 64)
    assert not (tmp_path / "out" / "bad.bin").exists() and not list((tmp_path / "out").glob("*.part"))


def test_dataset_download_through_a_mirror(tmp_path, http_server, monkeypatch, isolated_home):
    url, served, _ = http_server
    raw = fake_mnist(served)
    patch_md5(monkeypatch, raw)
    monkeypatch.setenv("VISIONTRAIN_DATASET_MIRROR", url)
    data = load_dataset("mnist", val_fraction=0)
    assert len(data.train) == 60 and (isolated_home / "mnist" / f"{NAMES[0]}.gz").is_file()


def test_remote_plain_http_and_https_downgrade_are_refused(tmp_path, http_server):
    with pytest.raises(DataError, match="only https"):
        download("http://example.com/x.gz", tmp_path / "x.gz")
    from visiontrain.data.integrity import _NoDowngrade
    import urllib.request

    request = urllib.request.Request("https://example.com/a")
    with pytest.raises(DataError, match="downgrades HTTPS to HTTP"):
        _NoDowngrade().redirect_request(request, None, 302, "Found", {}, "http://example.com/a")


# -- archives -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("member, kind", [("../escape.txt", "file"), ("/tmp/vt-abs-escape.txt", "file"),
                                          ("link", "symlink")])
def test_archive_members_that_escape_are_refused(tmp_path, member, kind):
    archive = tmp_path / "evil.tar"
    with tarfile.open(archive, "w") as tar:
        ok = tarfile.TarInfo("fine.txt")
        ok.size = 2
        tar.addfile(ok, io.BytesIO(b"ok"))
        info = tarfile.TarInfo(member)
        if kind == "symlink":
            info.type, info.linkname = tarfile.SYMTYPE, "/etc"
            tar.addfile(info)
        else:
            info.size = 4
            tar.addfile(info, io.BytesIO(b"evil"))
    target = tmp_path / "out"
    with pytest.raises(DataError, match=repr(member).strip("'")):
        safe_extract_tar(archive, target)
    assert not target.exists()  # refused before anything was written
    assert not (tmp_path / "escape.txt").exists() and not Path("/tmp/vt-abs-escape.txt").exists()
