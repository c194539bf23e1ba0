"""torch.optim without torch._dynamo: the same numbers as torch's own optimisers, and no 1.7 s import per run."""
from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from conftest import REPO
from visiontrain.config import build_config
from visiontrain.engine.optim import build_optimizer
from visiontrain.models import create_model


@pytest.mark.parametrize("optimizer", ["sgd", "adam", "adamw"])
def test_the_eager_optimisers_step_exactly_as_torchs(optimizer):
    config = build_config({"model": "lenet", "optimizer": optimizer, "lr": 0.05, "weight_decay": 1e-3,
                           "momentum": 0.9}, apply_preset=False)
    models = []
    for compiled in (False, True):  # --compile takes torch's stock classes
        torch.manual_seed(0)
        model = create_model("vgg-cifar", num_classes=3, in_channels=1, image_size=8)  # BatchNorm, dropout, a head
        opt = build_optimizer(model, config.replace(compile=compiled))
        assert type(opt).__module__.startswith("visiontrain" if not compiled else "torch")
        generator = torch.Generator().manual_seed(1)
        for _ in range(5):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(torch.randn(8, 1, 8, 8, generator=generator)),
                                        torch.randint(0, 3, (8,), generator=generator)).backward()
            opt.step()
        opt.load_state_dict(opt.state_dict())
        models.append(model.state_dict())
    assert all(torch.equal(models[0][key], models[1][key]) for key in models[0])


def test_a_training_run_never_imports_torch_dynamo(digits_small, tmp_path):
    code = ("import sys; import visiontrain\n"
            f"visiontrain.train(dataset={str(digits_small)!r}, model='lenet', epochs=1, batch_size=64, "
            f"progress='none', report=False, runs_dir={str(tmp_path)!r})\n"
            "print('torch._dynamo' in sys.modules)\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "False"
