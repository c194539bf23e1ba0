"""A model and data of your own from Python, and models of other packages through the `visiontrain.models` entry
points (docs/ecosystem.md); examples/06 end to end."""
from __future__ import annotations

import json
import os
import textwrap

import numpy as np
import pytest
import torch
from torch import nn

import realdata
import visiontrain
from conftest import REPO, run_cli, run_main
from helpers import run_example
from visiontrain.data.memory import from_python
from visiontrain.errors import CheckpointError, ConfigError, DataError

# -- a model and data of your own -------------------------------------------------------------------------------------
def plain_cnn() -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Linear(16 * 7 * 7, 10))


def test_own_module_on_a_torch_dataset_trains_evaluates_predicts_and_exports(digits_small, tmp_path, capsys):
    from torchvision.datasets import ImageFolder

    from visiontrain.export import export_predictor

    net = plain_cnn()
    data = {"train": ImageFolder(digits_small / "train"), "test": ImageFolder(digits_small / "test")}  # PIL, RGB
    result = visiontrain.train(model=net, data=data, channels=1, epochs=3, batch_size=32, lr=5e-3, progress="none",
                               runs_dir=str(tmp_path), threads=1)
    run = result.path
    config = (run / "config.yaml").read_text()
    assert "model: python/Sequential" in config and "dataset: python/ImageFolder" in config
    described = result.summary["dataset"]
    assert described["classes"] == [str(d) for d in range(10)] and described["train"] + described["val"] == 400
    assert "torchvision.datasets.folder.ImageFolder of 400 items (PIL images, mode RGB)" in \
        described["origin"]["splits"]["train"] and described["origin"]["class_names"].startswith("the dataset's")
    assert result.test_acc > 0.25  # it learns: 10 classes, chance is 0.1 (3 epochs of 11 steps)
    assert (run / "plots" / "gradcam.png").is_file()  # Grad-CAM found the module's last convolution
    trained = net[0].weight.detach().clone()
    assert not torch.equal(trained, plain_cnn()[0].weight)  # the module passed was the one trained

    refused = run_main(capsys, "predict", run, digits_small / "test" / "3")
    assert refused.returncode == 2 and len(refused.stderr.strip().splitlines()) == 1
    assert "visiontrain.load(RUN, model=Sequential(...))" in refused.stderr and "entry points" in refused.stderr
    predictor = visiontrain.load(run, model=plain_cnn())
    files = sorted((digits_small / "test").rglob("*.png"))
    predicted = [row["top"][0][0] for row in predictor.predict(files)]
    assert np.mean([p == f.parent.name for p, f in zip(predicted, files)]) == pytest.approx(result.test_acc)
    bundle = export_predictor(predictor, "onnx", tmp_path / "onnx", run_dir=run)  # verified on the run's samples.pt
    assert json.loads((bundle / "model.json").read_text())["verification"]["top1_agreement"] == 1.0
    with pytest.raises(CheckpointError, match="does not fit the weights of python/Sequential"):
        visiontrain.load(run, model=nn.Sequential(nn.Flatten(), nn.Linear(784, 10)))


def test_tensors_become_uint8_images_with_numbered_classes():
    train_x, train_y, _, _ = realdata.digits_slice(60, 0)  # uint8 (N, 28, 28)
    as_float = torch.from_numpy(train_x).float().unsqueeze(1) / 255
    dataset = from_python((as_float, torch.from_numpy(train_y)), name="python/tensors", val_fraction=0)
    assert dataset.classes == [str(k) for k in range(int(train_y.max()) + 1)]
    assert torch.equal(dataset.train.images[:, 0], torch.from_numpy(train_x))  # [0, 1] floats back to the same bytes
    assert dataset.describe()["origin"]["splits"]["train"] == "tensors float32 (60, 1, 28, 28)"


class Items(torch.utils.data.Dataset):
    def __init__(self, items):
        self.items = items

    def __len__(self):
        return len(self.items)

    def __getitem__(self, index):
        return self.items[index]


GRAY = torch.zeros(1, 8, 8, dtype=torch.uint8)


@pytest.mark.parametrize("data, message", [
    (Items([(GRAY, 0), (torch.zeros(1, 8, 9, dtype=torch.uint8), 1)]), "train item 1 is 1x8x9 but item 0 is 1x8x8"),
    (Items([(GRAY, 0.5)]), "train item 0's label is 0.5 (float); labels must be class indices"),
    (Items([(GRAY, torch.tensor([0, 1]))]), "train item 0's label is tensor([0, 1])"),
    (Items([(torch.full((1, 8, 8), 2.0), 0)]), "are floats from 2 to 2; give them in [0, 1]"),
    (Items([(torch.zeros(4, 8, 8), 0)]), "give 1 or 3 channels"),
    (Items([("cat.jpg", 0)]), "train item 0's image is a str"),
    ((torch.zeros(3, 1, 8, 8, dtype=torch.uint8), torch.tensor([0.0, 1.0, 1.0])), "the train labels are float32"),
    ({"train": Items([(GRAY, 3)]), "classes": ["a", "b"]}, "the train labels go up to 3, but there are 2 classes"),
    ({"training": Items([(GRAY, 0)])}, "a dict of splits needs a 'train' entry"),
])
def test_data_that_does_not_fit_is_refused_in_one_sentence(data, message):
    with pytest.raises(DataError) as error:
        from_python(data, name="python/x")
    assert message in str(error.value) and "\n" not in str(error.value)


def test_data_too_large_for_memory_is_refused_before_converting(monkeypatch):
    monkeypatch.setattr("visiontrain.data.memory.MAX_BYTES", 1000)
    with pytest.raises(DataError, match="more than the 0.0 GB .* write the images to an image folder"):
        from_python(Items([(torch.zeros(3, 32, 32, dtype=torch.uint8), 0)] * 2), name="python/x")


def test_a_model_that_does_not_fit_the_data_is_one_sentence(digits_small, tmp_path):
    wrong = nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, 3))  # 3 outputs, 10 classes
    with pytest.raises(ConfigError, match=r"returns \(2, 3\) for 2 images, but the data has 10"):
        visiontrain.train(model=wrong, dataset=str(digits_small), runs_dir=str(tmp_path / "runs"), epochs=1)
    assert not (tmp_path / "runs").exists()  # no run folder left behind


# -- entry points -----------------------------------------------------------------------------------------------------
def test_models_of_other_packages_register_through_entry_points(tmp_path):
    """An installed distribution, as pip leaves one: the module and its NAME-VERSION.dist-info with entry_points.txt."""
    (tmp_path / "epnet.py").write_text(textwrap.dedent('''
        from torch import nn

        def build(num_classes, in_channels):
            """A plain network of another package."""
            return nn.Sequential(nn.Conv2d(in_channels, 4, 3), nn.ReLU(), nn.Flatten(), nn.LazyLinear(num_classes))
    '''))
    info = tmp_path / "epnet-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: epnet\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[visiontrain.models]\nep-net = epnet:build\nbroken-net = epnet_gone:build\n"
                                           "lenet = epnet:build\n")
    env = {"PYTHONPATH": os.pathsep.join([str(tmp_path), str(REPO)])}
    listed = run_cli("models", env=env)
    assert listed.returncode == 0 and "ep-net" in listed.stdout and "A plain network of another package" in listed.stdout
    assert "skipped model 'broken-net'" in listed.stderr and "ModuleNotFoundError" in listed.stderr
    assert "skipped model 'lenet'" in listed.stderr and "visiontrain has a model of that name" in listed.stderr
    shapes = run_cli("summary", "--model", "ep-net", "--input", "1x28x28", "--num-classes", "5", env=env)
    assert shapes.returncode == 0 and "Linear               [5]" in shapes.stdout, shapes.stdout + shapes.stderr


@pytest.mark.slow
def test_example_own_model_and_data(tmp_path):
    """examples/06: a user's nn.Sequential (a package with an entry point, pip-installed into a temporary folder) on
    a user's torch Dataset, trained from Python; then `visiontrain predict` and `visiontrain export` use the run."""
    out = run_example("06_own_model_and_data.py", tmp_path)
    assert "trained tiny-cnn on Shapes: test accuracy" in out
    predicted = [line.split() for line in out.splitlines() if "shapes-to-predict" in line]
    assert len(predicted) == 3 and all(row[1] in ("circle", "square", "triangle") for row in predicted)
    assert "export/onnx (verified on 60 real images" in out and "top-1 agreement 100%" in out
    run = tmp_path / "runs" / "Shapes-tiny-cnn"
    assert "model: tiny-cnn" in (run / "config.yaml").read_text() and (run / "samples.pt").is_file()
