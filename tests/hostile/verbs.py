"""Running verbs as a user does, with the checks every hostile-input test makes of the result."""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

from conftest import REPO, run_main

QUICK = ["--model", "simple-cnn", "--epochs", "1", "--batch-size", "2", "--progress", "none", "--no-report"]


def checked(result: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    """No verb may end in an internal error or a traceback, whatever it was given."""
    assert "internal error" not in result.stderr and "Traceback" not in result.stderr, result.stderr[-3000:]
    return result


def main(capsys, *args) -> subprocess.CompletedProcess:
    """`visiontrain ARGS` in this process (fast), checked."""
    return checked(run_main(capsys, *args))


def cli(*args, cwd: Path | None = None, env: dict | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    """`visiontrain ARGS` in a new process that must end within `timeout` seconds (a hang fails the test), checked."""
    full_env = os.environ | {"PYTHONPATH": str(REPO)} | (env or {})
    return checked(subprocess.run([sys.executable, "-m", "visiontrain", *map(str, args)], capture_output=True,
                                  text=True, cwd=cwd, env=full_env, timeout=timeout))


def refused(result: subprocess.CompletedProcess, *names: str) -> str:
    """The verb refused in one sentence (exit 2, one line) that names each of `names`; returns the sentence."""
    lines = [line for line in result.stderr.splitlines() if line.startswith("visiontrain: error:")]
    assert result.returncode == 2 and len(lines) == 1, result.stderr
    for name in names:
        assert str(name) in lines[0], (name, lines[0])
    return lines[0]


def digests(root: Path) -> dict[str, str]:
    """SHA-256 of every regular file under `root` (links not followed): what 'nothing was written over' means."""
    found = {}
    for folder, _, files in os.walk(root):
        for name in files:
            path = Path(folder, name)
            if path.is_file() and not path.is_symlink():
                found[os.fsencode(path).decode("utf-8", "backslashreplace")] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found
