"""A VISIONTRAIN_HOME that cannot hold the cache: a file, not a folder. (A read-only folder is the same error, but
tests run as root, who may write anywhere, so it cannot be shown here.)"""
from __future__ import annotations

from .verbs import QUICK, main, refused


def test_the_memory_mapped_cache_in_an_unusable_home_is_one_sentence(clean_root, tmp_path, capsys, monkeypatch):
    home = tmp_path / "home"
    home.write_text("a file where the cache folder should be")
    monkeypatch.setenv("VISIONTRAIN_HOME", str(home))
    monkeypatch.setenv("VISIONTRAIN_MEMMAP", "1")
    sentence = refused(main(capsys, "train", "--dataset", clean_root, *QUICK, "--runs-dir", tmp_path / "runs"),
                       str(home / "cache"), "VISIONTRAIN_HOME")
    assert "VISIONTRAIN_MEMMAP=0" in sentence
    monkeypatch.setenv("VISIONTRAIN_MEMMAP", "0")  # in memory: the cache only saves time, so the run goes on
    result = main(capsys, "train", "--dataset", clean_root, *QUICK, "--runs-dir", tmp_path / "runs")
    assert result.returncode == 0 and "continuing without it" in result.stderr
    assert home.read_text() == "a file where the cache folder should be"
