"""The CUDA path: data and augmentation on the GPU, bf16/fp16 autocast, channels_last. Skipped without CUDA."""
from __future__ import annotations

import pytest
import torch

import visiontrain

pytestmark = pytest.mark.gpu
# 2 epochs of simple-cnn (adam, crop) on the 1,800 Fashion-MNIST training images of conftest.fashion_folder: measured
# 0.73-0.75 test accuracy over seeds 0-2 with these settings on the CPU (fp32 and bf16); not yet measured on CUDA.
LEARNT = 0.65


def test_cuda_run_records_device_and_precision(fashion_folder, tmp_path):
    run = visiontrain.train(dataset=str(fashion_folder), model="simple-cnn", epochs=2, batch_size=64, optimizer="adam",
                            lr=2e-3, augment="crop", device="cuda", runs_dir=str(tmp_path), progress="none")
    hardware = run.summary["hardware"]
    assert hardware["device"].startswith("cuda") and hardware["gpu"]
    assert hardware["precision"] == ("bf16" if torch.cuda.is_bf16_supported() else "fp16")
    assert run.test_acc > LEARNT
    checkpoint = torch.load(run.path / "checkpoints" / "last.pt", weights_only=True)
    assert all(t.device.type == "cpu" for t in checkpoint["model"].values())  # loadable on a CPU-only machine


def test_deterministic_cuda_runs_are_identical(fashion_folder, tmp_path):
    runs = [visiontrain.train(dataset=str(fashion_folder), model="simple-cnn", epochs=1, batch_size=64, device="cuda",
                              deterministic=True, precision="fp32", runs_dir=str(tmp_path), progress="none")
            for _ in range(2)]
    states = [torch.load(r.path / "checkpoints" / "last.pt", weights_only=True)["model"] for r in runs]
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])


def test_cuda_resume_continues_bit_identical(fashion_folder, tmp_path):
    """Checkpoints made on the GPU (CUDA RNG, optimiser state on the device) resume exactly."""
    args = dict(dataset=str(fashion_folder), model="simple-cnn", batch_size=64, schedule="constant", lr=0.01,
                optimizer="sgd", augment="crop", device="cuda", deterministic=True, precision="fp32",
                runs_dir=str(tmp_path), progress="none", report=False)
    whole = visiontrain.train(**args, epochs=2, name="whole")
    visiontrain.train(**args, epochs=1, name="split")
    resumed = visiontrain.train(resume=tmp_path / "split", epochs=2)
    states = [torch.load(r.path / "checkpoints" / "last.pt", weights_only=True)["model"] for r in (whole, resumed)]
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])


def test_cuda_fp16_with_grad_scaler_and_compile_learn(fashion_folder, tmp_path):
    """The fp16 path (loss scaling) and torch.compile both train to a useful accuracy on the GPU."""
    for name, extra in (("fp16", dict(precision="fp16")), ("compiled", dict(compile=True))):
        run = visiontrain.train(dataset=str(fashion_folder), model="simple-cnn", epochs=2, batch_size=64, lr=2e-3,
                                optimizer="adam", augment="crop", device="cuda", runs_dir=str(tmp_path), name=name, progress="none",
                                report=False, **extra)
        assert run.test_acc > LEARNT, (name, run.test_acc)
        assert run.summary["hardware"]["grad_scaler"] == (name == "fp16")
