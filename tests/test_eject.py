"""`visiontrain eject`: the run as a plain PyTorch script that learns and never imports visiontrain."""
from __future__ import annotations

import re
import subprocess
import sys

import visiontrain
from conftest import run_cli, run_main


def test_ejected_script_learns_without_visiontrain(fashion_folder, tmp_path):
    run = visiontrain.train(dataset=str(fashion_folder), model="simple-cnn", epochs=1, batch_size=64, optimizer="adam",
                            lr=2e-3, schedule="step", augment="none", runs_dir=str(tmp_path), progress="none", threads=1)
    script = tmp_path / "train_plain.py"
    result = run_cli("eject", run.path, "-o", script)
    assert result.returncode == 0, result.stderr
    text = script.read_text()
    assert "import visiontrain" not in text and "nn.Conv2d(1, 16" in text and "StepLR" in text
    trained = subprocess.run([sys.executable, "-I", str(script), "--epochs", "1"], capture_output=True, text=True,
                             cwd=tmp_path, timeout=300)
    assert trained.returncode == 0, trained.stderr[-2000:]
    accuracy = float(re.search(r"best model: test accuracy ([\d.]+)%", trained.stdout).group(1))
    assert accuracy > 65  # one epoch on 1,800 Fashion-MNIST images: measured 74.2-75.0% over seeds 0-2 (chance: 10%)
    assert "confusion matrix" in trained.stdout and (tmp_path / "best_model.pt").is_file()


def test_eject_refuses_fastnet_with_a_pointer(digits_small, tmp_path, capsys):
    run = visiontrain.train(dataset=str(digits_small), model="fastnet", epochs=1, runs_dir=str(tmp_path),
                            progress="none", threads=1)
    result = run_main(capsys, "eject", run.path, "-o", tmp_path / "x.py")
    assert result.returncode == 2 and "models/fast.py" in result.stderr


def test_a_timm_run_ejects_to_timm_create_model_for_its_channels(digits_small, tmp_path, capsys):
    run = visiontrain.train(dataset=str(digits_small), model="timm/mobilenetv3_small_050", epochs=1, batch_size=64,
                            optimizer="adam", lr=2e-3, augment="none", runs_dir=str(tmp_path), progress="none",
                            threads=1, report=False)
    assert run.path.parent == tmp_path and run.path.name.endswith("-timm-mobilenetv3_small_050")  # one flat folder
    script = tmp_path / "train_plain.py"
    result = run_main(capsys, "eject", run.path, "-o", script)  # the real-process `eject`: the first test
    assert result.returncode == 0, result.stderr
    assert "timm.create_model('mobilenetv3_small_050', pretrained=False, num_classes=10, in_chans=1)" in script.read_text()
    trained = subprocess.run([sys.executable, "-I", str(script), "--epochs", "1"], capture_output=True, text=True,
                             cwd=tmp_path, timeout=300)
    assert trained.returncode == 0, trained.stderr[-2000:]  # grayscale digits into a 1-channel timm network
