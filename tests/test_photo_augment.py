"""Photo augmentation: batched random resized crop + colour jitter (data/augment.py), `--augment photo`, exact resume,
and eject writing the run's own augmentation (RandomResizedCrop, ColorJitter; no flip where the run recorded none)."""
from __future__ import annotations

import math
import runpy
import shutil
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

import visiontrain
from helpers import assert_bit_identical, reference_and_resumed
from visiontrain.config import ConfigError, build_config, load_yaml, to_yaml
from visiontrain.data.augment import (PHOTO_JITTER, PHOTO_RATIO, AugmentSpec, apply, color_jitter, crop_boxes,
                                      make_params, resized_crop, step_generator)
from visiontrain.data.augment import augment_spec

PHOTO = AugmentSpec(flip=True, crop_scale=0.35, jitter=0.4)


# -- parameters ------------------------------------------------------------------------------------------------
def test_parameters_are_a_function_of_seed_epoch_and_step():
    first = make_params(PHOTO, 64, step_generator(7, 2, 5))
    again = make_params(PHOTO, 64, step_generator(7, 2, 5))
    assert set(first) == {"flip", "crop_area", "crop_log_ratio", "crop_position", "jitter", "jitter_order"}
    assert all(torch.equal(first[k], again[k]) for k in first)
    for other in (step_generator(7, 2, 6), step_generator(7, 3, 5), step_generator(8, 2, 5)):
        params = make_params(PHOTO, 64, other)
        assert not torch.equal(params["crop_area"], first["crop_area"])
        assert not torch.equal(params["jitter"], first["jitter"])
    assert torch.equal(first["jitter_order"].sort(1).values, torch.arange(3).expand(64, 3))  # a permutation each
    assert first["jitter"].min() >= 0.6 and first["jitter"].max() <= 1.4


def test_the_older_modes_draw_exactly_what_they_drew_before():
    """The photo fields draw after the old ones and only when on: crop/flip/rotation runs replay unchanged."""
    spec = AugmentSpec(crop_padding=2, flip=True, rotation=10)
    generator = step_generator(0, 1, 3)
    shift = torch.randint(-2, 3, (32, 2), generator=generator)  # the original make_params, draw by draw
    flip = torch.rand(32, generator=generator) < 0.5
    angle = (torch.rand(32, generator=generator) * 2 - 1) * 10
    params = make_params(spec, 32, step_generator(0, 1, 3))
    assert set(params) == {"shift", "flip", "angle"}
    assert torch.equal(params["shift"], shift) and torch.equal(params["flip"], flip)
    assert torch.equal(params["angle"], angle)


@pytest.mark.parametrize("height, width", [(32, 32), (20, 36), (36, 20)])
@pytest.mark.parametrize("scale", [0.35, 0.08, 1.0])
def test_crop_boxes_stay_inside_and_respect_scale_and_ratio(height, width, scale):
    spec = AugmentSpec(crop_scale=scale)
    boxes = crop_boxes(make_params(spec, 4096, step_generator(1, 0, 0)), spec, height, width)
    top, left, h, w = boxes.unbind(1)
    assert boxes.dtype == torch.int64 and boxes.shape == (4096, 4)
    assert (top >= 0).all() and (left >= 0).all() and (h >= 1).all() and (w >= 1).all()
    assert (top + h <= height).all() and (left + w <= width).all()
    low, high = PHOTO_RATIO
    tried = (w + 0.5) * (h + 0.5) >= scale * height * width  # a box that fits: its area before rounding >= scale
    ratio_ok = ((w + 0.5) / (h - 0.5) >= low) & ((w - 0.5) / (h + 0.5) <= high)
    if width / height < low:  # no try fits: torchvision's centre crop at the nearest allowed ratio
        fallback_h, fallback_w = round(width / low), width
    else:
        fallback_h, fallback_w = (height, round(height * high)) if width / height > high else (height, width)
    centre = torch.tensor([(height - fallback_h) // 2, (width - fallback_w) // 2, fallback_h, fallback_w])
    assert (tried & ratio_ok | (boxes == centre).all(1)).all()
    if scale < 1:  # the boxes spread over the allowed range and over the image
        area = (h * w).double() / (height * width)
        assert area.min() < scale + 0.05 and area.max() > 0.7  # 0.75 is the most a 3:4 box keeps of 20x36
        assert len(set(top.tolist())) > 3 and len(set(left.tolist())) > 3


def test_whole_image_box_is_the_identity():
    images = torch.rand(6, 3, 24, 24) * 255
    spec = AugmentSpec(crop_scale=1.0, crop_ratio=(1.0, 1.0))
    params = make_params(spec, 6, step_generator(0, 0, 0))
    assert torch.equal(crop_boxes(params, spec, 24, 24), torch.tensor([[0, 0, 24, 24]] * 6))
    torch.testing.assert_close(apply(images, params, spec), images, atol=1e-3, rtol=0)


def test_resized_crop_equals_torchvision_per_image():
    from torchvision.transforms.v2 import functional as TF

    images = torch.rand(16, 3, 28, 28) * 255
    spec = AugmentSpec(crop_scale=0.2)
    boxes = crop_boxes(make_params(spec, 16, step_generator(3, 0, 0)), spec, 28, 28)
    batched = resized_crop(images, boxes)
    for image, out, (top, left, h, w) in zip(images, batched, boxes.tolist()):  # the reference, one image at a time
        expected = TF.resized_crop(image, top, left, h, w, [28, 28], antialias=True)
        torch.testing.assert_close(out, expected, atol=2e-3, rtol=1e-4)


# -- colour jitter ---------------------------------------------------------------------------------------------
def test_zero_jitter_is_the_identity():
    images = torch.rand(8, 3, 16, 16) * 255
    assert torch.equal(apply(images, make_params(AugmentSpec(jitter=0.0), 8, step_generator(0, 0, 0)),
                             AugmentSpec(jitter=0.0)), images)
    orders = torch.rand(8, 3).argsort(1)
    assert torch.equal(color_jitter(images, torch.ones(8, 3), orders), images)  # factors of 1 change nothing


def test_saturation_leaves_grayscale_untouched():
    gray = torch.rand(8, 1, 16, 16) * 255
    factors = torch.stack([torch.ones(8), torch.ones(8), torch.linspace(0.0, 2.0, 8)], 1)  # saturation only
    orders = torch.rand(8, 3).argsort(1)
    assert torch.equal(color_jitter(gray, factors, orders), gray)
    gray_rgb = gray.expand(8, 3, 16, 16)  # a gray image stored as RGB is left as it is too
    torch.testing.assert_close(color_jitter(gray_rgb, factors, orders), gray_rgb, atol=1e-3, rtol=0)
    colour = torch.rand(8, 3, 16, 16) * 255
    assert not torch.allclose(color_jitter(colour, factors, orders)[:-1], colour[:-1])  # and changes colour


def test_jitter_equals_torchvision_colour_adjustments():
    from torchvision.transforms.v2 import functional as TF

    images = torch.rand(6, 3, 12, 12) * 255
    factors = torch.tensor([[0.7, 1.3, 0.6], [1.2, 0.8, 1.4], [1.0, 1.0, 0.0]] * 2)
    orders = torch.tensor([[0, 1, 2], [2, 1, 0], [1, 0, 2], [1, 2, 0], [2, 0, 1], [0, 2, 1]])
    out = color_jitter(images, factors, orders)
    steps = (TF.adjust_brightness, TF.adjust_contrast, TF.adjust_saturation)
    for image, result, (b, c, s), order in zip(images, out, factors.tolist(), orders.tolist()):
        expected = image / 255
        for k in order:  # torchvision's own functions, in this image's order (its gray weights differ by 1e-4)
            expected = steps[k](expected, (b, c, s)[k])
        torch.testing.assert_close(result / 255, expected, atol=2e-3, rtol=0)


# -- configuration ---------------------------------------------------------------------------------------------
def test_photo_fields_validate_and_round_trip_through_config_yaml(tmp_path):
    config = build_config({"model": "lenet", "augment": "photo", "crop_scale": 0.5, "jitter": 0.25},
                          apply_preset=False)
    path = tmp_path / "config.yaml"
    path.write_text(to_yaml(config))
    assert build_config(load_yaml(path), apply_preset=False) == config
    assert "augment: photo" in path.read_text() and "crop_scale: 0.5" in path.read_text()
    default = build_config({"model": "lenet"}, apply_preset=False)
    path.write_text(to_yaml(default))
    assert build_config(load_yaml(path), apply_preset=False) == default and default.jitter is None
    for field, value, message in (("jitter", 1.5, "jitter: 1.5 is out of range"),
                                  ("crop_scale", 0.0, "crop_scale: 0.0 is out of range"),
                                  ("augment", "photos", "augment: 'photos' is not allowed")):
        with pytest.raises(ConfigError, match=message):
            build_config({field: value}, apply_preset=False)


def test_augment_spec_keeps_auto_and_makes_photo_opt_in():
    flips, digits = (True, "reflect"), (False, "constant")  # (allow_flip, pad_mode): a photo folder, digits
    plain = build_config({"model": "lenet"}, apply_preset=False)
    assert augment_spec(plain, *flips) == AugmentSpec(crop_padding=2, flip=True, pad_mode="reflect")  # as before
    assert augment_spec(plain, *digits) == AugmentSpec(crop_padding=2, flip=False, pad_mode="constant")
    photo = plain.replace(augment="photo")
    assert augment_spec(photo, *flips) == AugmentSpec(flip=True, pad_mode="reflect", crop_scale=0.35,
                                                     jitter=PHOTO_JITTER)
    assert not augment_spec(photo, *digits).flip  # photo mirrors only what auto mirrors
    assert augment_spec(photo.replace(jitter=0.0), *flips).jitter == 0.0
    assert augment_spec(plain.replace(jitter=0.2), *flips).jitter == 0.2  # jitter also adds to the other modes
    assert augment_spec(plain.replace(augment="none"), *flips) == AugmentSpec(pad_mode="reflect")


# -- a photo-mode run on a tiny RGB folder: trains, resumes bit-identically, ejects ----------------------------
def write_colour_folder(root, per_class=40, test_per_class=6, size=20):
    """Three classes of 20x20 RGB images: a red, green or blue square at a random place on a noisy background."""
    rng = np.random.default_rng(0)
    for split, count in (("train", per_class), ("test", test_per_class)):
        for label, channel in enumerate("rgb"):
            folder = root / split / channel
            folder.mkdir(parents=True)
            for index in range(count):
                image = rng.integers(40, 120, (size, size, 3), dtype=np.uint8)
                top, left = rng.integers(0, size - 8, 2)
                image[top:top + 8, left:left + 8] = 60
                image[top:top + 8, left:left + 8, label] = 230
                Image.fromarray(image).save(folder / f"{index:03d}.png")
    return root


def photo_fields(folder, runs, name):
    return dict(dataset=str(folder), model="simple-cnn", epochs=2, batch_size=16, optimizer="adam", lr=0.003,
                augment="photo", ema=0.9, threads=1, runs_dir=str(runs), name=name, progress="none", report=False)


@pytest.fixture(scope="module")
def photo_runs(tmp_path_factory):
    """An uninterrupted photo-mode run and one stopped mid-epoch 2 (SIGTERM's path: checkpoint, then stop) and
    resumed, both in this process."""
    base = tmp_path_factory.mktemp("photo")
    folder, runs = write_colour_folder(base / "colours"), base / "runs"
    reference, resumed = reference_and_resumed(lambda name: photo_fields(folder, runs, name), runs, base / "vt-home",
                                               stop_at=9, stopped_at="epoch 2, step 3")
    return SimpleNamespace(folder=folder, reference=reference, resumed=resumed)


def test_photo_run_trains_and_resumes_bit_identical(photo_runs):
    reference, resumed = photo_runs.reference, photo_runs.resumed
    assert reference.summary["status"] == resumed.summary["status"] == "complete"
    assert reference.summary["dataset"]["train"] == 108 and len(reference.metrics) == 2  # 6 steps of 16 per epoch
    assert math.isfinite(float(reference.metrics[-1]["train_loss"]))
    assert_bit_identical(resumed.path, reference.path)


def test_show_batch_shows_the_photo_pixels_the_trainer_trains_on(photo_runs):
    from visiontrain.engine.build import build
    from visiontrain.engine.loop import Normalizer
    from visiontrain.engine.precision import Precision
    from visiontrain.report.batch import training_batch

    config = build_config({"dataset": str(photo_runs.folder), "model": "simple-cnn", "augment": "photo",
                           "batch_size": 16, "seed": 2})
    built = build(config)
    trainer, loader = built.trainer, built.loader
    trainer.normalize = Normalizer([0.0, 0.0, 0.0], [1 / 255] * 3, Precision(torch.device("cpu"), None, False, False))
    expected = torch.cat([trainer.batch(indices, 0, step)[0] for step, indices in loader.batches(0)][:2])[:20]
    images, names, spec, _ = training_batch(config, 20, augmented=True, verbose=False)
    assert torch.equal(images, expected) and len(names) == 20
    assert spec.describe() == "random resized crop (area 0.35-1, ratio 0.75-1.33), horizontal flip, colour jitter 0.4"
    raw, _, _, _ = training_batch(config, 20, augmented=False, verbose=False)
    assert (raw - images).abs().mean() > 5  # cropped, flipped and recoloured


def ejected(run_path, tmp_path, name="train_plain.py"):
    from visiontrain.eject import eject

    text = eject(run_path, tmp_path / name).read_text()
    return text, text.split("train_transform = ")[1].split("\n")[0]


def test_eject_of_a_photo_run_writes_its_augmentation(photo_runs, tmp_path):
    text, train_line = ejected(photo_runs.reference.path, tmp_path)
    assert ("transforms.RandomResizedCrop(20, scale=(0.35, 1.0), ratio=(0.75, 1.33333)), "
            "transforms.RandomHorizontalFlip(), "
            "transforms.ColorJitter(brightness=0.4, contrast=0.4, saturation=0.4), ") in train_line
    assert "RandomCrop(" not in train_line and "import visiontrain" not in text
    script = runpy.run_path(str(tmp_path / "train_plain.py"))  # its transforms run on a real image of the folder
    image = Image.open(next((photo_runs.folder / "train" / "r").glob("*.png")))
    assert script["train_transform"](image).shape == (3, 20, 20)


def test_eject_follows_the_flip_the_run_recorded_not_the_dataset_name(photo_runs, tmp_path):
    """A Fashion-MNIST-like run (one whose images must not be mirrored): its checkpoints record allow_flip false."""
    run = shutil.copytree(photo_runs.reference.path, tmp_path / "no-flip")
    for path in (run / "checkpoints").glob("*.pt"):
        checkpoint = torch.load(path, weights_only=True)
        torch.save(checkpoint | {"allow_flip": False}, path)
    _, train_line = ejected(run, tmp_path)
    assert "RandomResizedCrop" in train_line and "ColorJitter" in train_line
    assert "RandomHorizontalFlip" not in train_line  # photo mode mirrors only what the run allowed
    (run / "config.yaml").write_text((run / "config.yaml").read_text().replace("augment: photo", "augment: auto"))
    _, train_line = ejected(run, tmp_path)
    assert "transforms.RandomCrop(20, padding=2, padding_mode='reflect'), " in train_line
    assert "RandomHorizontalFlip" not in train_line and "ColorJitter" not in train_line


def test_the_named_digit_datasets_never_flip_and_pad_black_and_the_clothes_may_flip():
    """The registry entries themselves (the stand-in below keeps the `mnist` entry's, so this is what it tests)."""
    from visiontrain.data.registry import DATASETS

    mnist, fashion = DATASETS.get("mnist"), DATASETS.get("fashion-mnist")
    assert (mnist.allow_flip, mnist.pad_mode) == (False, "constant")
    assert (fashion.allow_flip, fashion.pad_mode) == (True, "constant")


def test_eject_of_a_named_mnist_run_never_flips(mnist_stand_in, tmp_path):
    """The real no-flip dataset: a named `mnist` run (its files: scikit-learn's digits, conftest.mnist_stand_in)
    records allow_flip false, and auto means crop only."""
    assert (mnist_stand_in.allow_flip, mnist_stand_in.pad_mode) == (False, "constant")
    run = visiontrain.train(dataset="mnist", model="mlp", epochs=1, batch_size=512, runs_dir=str(tmp_path),
                            progress="none", report=False)
    assert run.summary["dataset"]["test"] == 500  # the stand-in's digits, through the named dataset
    assert torch.load(run.path / "checkpoints" / "last.pt", weights_only=True)["allow_flip"] is False
    _, train_line = ejected(run.path, tmp_path)
    assert "transforms.RandomCrop(28, padding=2), " in train_line and "RandomHorizontalFlip" not in train_line
