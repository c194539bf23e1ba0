"""visiontrain in someone else's environment: a wheel in a fresh venv, no fcntl (Windows), another torch on resume."""
from __future__ import annotations

import os
import subprocess
import sys
import sysconfig

import pytest
import torch

import visiontrain
from visiontrain.run import RunDir
from conftest import REPO, run_cli
from realdata import write_digits_folder


@pytest.fixture(scope="module")
def digit_folder(tmp_path_factory):
    return write_digits_folder(tmp_path_factory.mktemp("digits"), 200, 40)


def test_version_flag_prints_the_package_version():
    result = run_cli("--version")
    assert result.returncode == 0 and result.stdout.strip() == f"visiontrain {visiontrain.__version__}"


def test_the_package_imports_and_answers_help_without_fcntl():
    """fcntl exists only on Linux and macOS: every module imports without it, and --help works (Windows)."""
    code = ("import sys; sys.modules['fcntl'] = None\n"  # `import fcntl` now raises ImportError, as on Windows
            "import pkgutil, importlib, visiontrain\n"
            "for module in pkgutil.walk_packages(visiontrain.__path__, 'visiontrain.'):\n"
            "    if module.name != 'visiontrain.__main__':  # it runs the CLI\n"
            "        importlib.import_module(module.name)\n"
            "from visiontrain.cli import main\n"
            "main(['--help'])\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO,
                            env=os.environ | {"PYTHONPATH": str(REPO)}, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "usage: visiontrain" in result.stdout


@pytest.mark.slow
def test_a_wheel_installed_in_a_fresh_venv_trains_from_another_folder(digit_folder, tmp_path):
    """`pip wheel . --no-deps`, installed into a new venv outside the repository. The venv reuses this environment's
    torch and other dependencies through a .pth line (a fresh torch would cost minutes), and nothing of the
    checkout is on its path: the run imports the installed wheel."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"OMP_NUM_THREADS": "1"}  # nothing of the
    wheels = tmp_path / "wheels"  # checkout on the path
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(REPO), "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(wheels)], check=True, cwd=tmp_path, timeout=300)
    (wheel,) = wheels.glob("visiontrain-*.whl")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    site = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    # the dependencies' folder, after the venv's own: a .pth line adds it, and its own .pth files (this checkout's
    # editable install among them) are not read from there
    (venv_site := type(tmp_path)(site)).mkdir(parents=True, exist_ok=True)
    (venv_site / "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    # --ignore-installed and no PYTHONPATH: pip would otherwise take the visiontrain.egg-info that `pip wheel` leaves
    # in the checkout for an installed visiontrain of the wheel's version, and install nothing
    subprocess.run([python, "-m", "pip", "install", "--no-deps", "--no-index", "--ignore-installed", "-q", str(wheel)],
                   check=True, timeout=300, env=env)

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    where = subprocess.run([python, "-c", "import visiontrain; print(visiontrain.__file__)"], capture_output=True,
                           text=True, cwd=elsewhere, env=env, check=True).stdout.strip()
    assert where.startswith(str(venv_site)), where  # the wheel's copy, not the checkout's
    version = subprocess.run([venv / "bin" / "visiontrain", "--version"], capture_output=True, text=True, env=env,
                             cwd=elsewhere)
    assert version.stdout.strip() == f"visiontrain {visiontrain.__version__}"
    result = subprocess.run([venv / "bin" / "visiontrain", "train", "--dataset", str(digit_folder), "--model", "lenet",
                             "--epochs", "1", "--batch-size", "32", "--progress", "none", "--name", "wheel"],
                            capture_output=True, text=True, cwd=elsewhere, env=env, timeout=600)
    assert result.returncode == 0, result.stderr
    assert "test accuracy" in result.stdout
    run = elsewhere / "runs" / "wheel"
    assert (run / "summary.json").is_file() and (run / "report.html").is_file()


def test_resuming_under_another_torch_warns_in_one_line_and_goes_on(digit_folder, tmp_path):
    first = visiontrain.train(dataset=str(digit_folder), model="mlp", epochs=1, batch_size=32, progress="none",
                              report=False, runs_dir=str(tmp_path))
    for name in ("last.pt", "best.pt"):  # as if another torch had written it
        path = first.path / "checkpoints" / name
        checkpoint = torch.load(path, weights_only=True)
        torch.save(checkpoint | {"torch_version": "2.9.1"}, path)
    result = run_cli("train", "--resume", first.path, "--epochs", "2")
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if "torch 2.9.1" in line]
    assert warnings == [f"visiontrain: warning: {first.path} was trained with torch 2.9.1 and resumes with torch "
                        f"{torch.__version__}; bit-exact resume holds per torch version, so the rest of the run may "
                        "differ slightly from an uninterrupted one"]
    assert RunDir(first.path).read_summary()["epochs_completed"] == 2


def test_the_declared_python_and_dependency_ranges_admit_the_tested_versions():
    """pyproject.toml states ranges (users keep their torch); constraints.txt pins what CI tests, inside them."""
    import tomllib

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert project["requires-python"] == ">=3.11"  # hashlib.file_digest
    pins = dict(map(str.strip, line.split("==")) for line in (REPO / "constraints.txt").read_text().splitlines()
                if line and not line.startswith("#"))
    pins = {canonicalize_name(name): version for name, version in pins.items()}
    for text in project["dependencies"]:
        requirement = Requirement(text)
        assert "==" not in text, f"{text}: a pin in the package would change a user's installed version"
        assert requirement.specifier.contains(pins[canonicalize_name(requirement.name)]), text
