"""TrivialAugmentWide / RandAugment and MixUp / CutMix (data/autoaugment.py, data/mixing.py): torchvision's operations
on real images, drawn per step from (seed, epoch, step), a run that trains with them and resumes bit-identically,
show-batch drawing what the trainer trains on, and eject writing torchvision's transforms."""
from __future__ import annotations

import math
import runpy
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from realdata import digits_slice, photo_crops, write_digits_folder
from helpers import assert_bit_identical, reference_and_resumed
from visiontrain.config import ConfigError, build_config
from visiontrain.data.augment import AugmentSpec, apply, augment_spec, make_params, step_generator
from visiontrain.data.autoaugment import COLOUR_OPS, POLICIES, affine, magnitudes
from visiontrain.data.mixing import cutmix_box, describe_targets, mix, mix_params


@pytest.fixture(scope="module")
def photos():
    """uint8 (8, 3, 32, 32): crops of scikit-learn's two sample photos."""
    crops = photo_crops("china", 4, 32, 0) + photo_crops("flower", 4, 32, 0)
    return torch.from_numpy(np.stack([np.asarray(c) for c in crops])).permute(0, 3, 1, 2).contiguous()


@pytest.fixture(scope="module")
def digits():
    """uint8 (8, 1, 28, 28): real handwritten digits."""
    return torch.from_numpy(digits_slice(8, 1)[0][:, None].copy())


def torchvision_op(image: torch.Tensor, name: str, magnitude: float) -> torch.Tensor:
    """torchvision's public functional ops with the arguments TrivialAugmentWide/RandAugment pass them."""
    from torchvision.transforms.v2 import InterpolationMode
    from torchvision.transforms.v2 import functional as TF

    nearest = InterpolationMode.NEAREST
    if name in ("ShearX", "ShearY"):
        shear = [math.degrees(math.atan(magnitude)), 0.0][:: 1 if name == "ShearX" else -1]
        return TF.affine(image, angle=0.0, translate=[0, 0], scale=1.0, shear=shear, interpolation=nearest,
                         center=[0, 0])
    if name in ("TranslateX", "TranslateY"):
        translate = [int(magnitude), 0][:: 1 if name == "TranslateX" else -1]
        return TF.affine(image, angle=0.0, translate=translate, scale=1.0, shear=[0.0, 0.0], interpolation=nearest)
    if name == "Rotate":
        return TF.rotate(image, angle=magnitude, interpolation=nearest)
    functions = {"Brightness": TF.adjust_brightness, "Color": TF.adjust_saturation, "Contrast": TF.adjust_contrast,
                 "Sharpness": TF.adjust_sharpness}
    if name in functions:
        return functions[name](image, 1.0 + magnitude)
    if name == "Posterize":
        return TF.posterize(image, int(magnitude))
    if name == "Solarize":
        return TF.solarize(image, magnitude)
    return {"AutoContrast": TF.autocontrast, "Equalize": TF.equalize}[name](image)


CASES = [("ShearX", 0.4), ("ShearX", -0.99), ("ShearY", 0.3), ("TranslateX", 9.6), ("TranslateX", -32.0),
         ("TranslateY", 13.0), ("Rotate", 30.0), ("Rotate", -135.0), ("Brightness", 0.5), ("Brightness", -0.66),
         ("Color", 0.7), ("Color", -0.99), ("Contrast", 0.9), ("Contrast", -0.5), ("Sharpness", 0.99),
         ("Sharpness", -0.8), ("Posterize", 2.0), ("Posterize", 5.0), ("Solarize", 128.0), ("Solarize", 17.0),
         ("AutoContrast", 0.0), ("Equalize", 0.0)]


@pytest.mark.parametrize(("name", "magnitude"), CASES)
@pytest.mark.parametrize("kind", ["photos", "digits"])
def test_each_operation_is_torchvisions_on_real_images(request, kind, name, magnitude):
    images = request.getfixturevalue(kind)
    values = torch.full((len(images),), magnitude, dtype=torch.float64)
    if name in COLOUR_OPS:
        ours = COLOUR_OPS[name](images.float(), values.float())
    else:
        ours = affine(images.float(), [name] * len(images), values)
    expected = torch.stack([torchvision_op(image, name, magnitude) for image in images]).float()
    if name in COLOUR_OPS and name not in ("Posterize", "Solarize", "Equalize"):
        # torchvision truncates to uint8 after the blend, and its gray reference before it: at most 2 levels apart
        assert (ours - expected).abs().max() <= 2.0, name
        assert (ours - expected).abs().mean() <= 1.0, name
    else:  # the geometric ones sample the same pixels; posterize, solarize and equalize are exact on integer levels
        assert torch.equal(ours, expected), (name, int((ours != expected).sum()))
    if name not in ("Color",) or kind == "photos":
        assert not torch.equal(ours, images.float()) or name == "AutoContrast", "the operation did nothing"


def test_the_policies_draw_every_operation_and_magnitude_from_the_step_generator():
    spec = AugmentSpec(policy="trivial")
    params = make_params(spec, 4096, step_generator(3, 1, 2))
    assert set(params) == {"policy_op", "policy_bin", "policy_sign"}
    counts = torch.bincount(params["policy_op"][:, 0], minlength=14)
    assert len(counts) == 14 and counts.min() > 200  # all 14 operations, about 4096 / 14 each
    assert set(params["policy_bin"].unique().tolist()) == set(range(31))
    again = make_params(spec, 4096, step_generator(3, 1, 2))
    assert all(torch.equal(params[k], again[k]) for k in params)
    other = make_params(spec, 4096, step_generator(3, 1, 3))
    assert not torch.equal(params["policy_op"], other["policy_op"])
    rand = make_params(AugmentSpec(policy="randaugment", policy_ops=3, policy_magnitude=7), 64, step_generator(0, 0, 0))
    assert rand["policy_op"].shape == (64, 3) and set(rand["policy_bin"].unique().tolist()) == {7}
    values = magnitudes("randaugment", torch.tensor([5, 5]), torch.tensor([30, 30]), torch.tensor([False, True]), 32, 32)
    assert values.tolist() == [30.0, -30.0]  # Rotate's largest RandAugment magnitude, and its sign flip
    assert list(POLICIES["trivial"]) == list(POLICIES["randaugment"])  # one operation index, two tables


def test_the_older_augmentations_draw_exactly_what_they_drew_before():
    """The new draws come after the old ones: a crop + flip run replays as it did before these existed."""
    old = make_params(AugmentSpec(crop_padding=2, flip=True), 32, step_generator(0, 1, 3))
    new = make_params(AugmentSpec(crop_padding=2, flip=True, policy="trivial", mixup=0.2), 32, step_generator(0, 1, 3))
    assert torch.equal(old["shift"], new["shift"]) and torch.equal(old["flip"], new["flip"])


def test_a_policy_batch_changes_images_and_keeps_them_in_range(photos):
    spec = AugmentSpec(policy="randaugment", policy_ops=2, policy_magnitude=15)
    params = make_params(spec, len(photos), step_generator(0, 0, 0))
    out = apply(photos.float(), params, spec)
    assert out.shape == photos.shape and out.min() >= 0 and out.max() <= 255
    changed = (out != photos.float()).flatten(1).any(1)
    identity = (params["policy_op"] == 0).all(1)  # both rounds drew Identity
    assert bool(changed[~identity].all())


# -- MixUp / CutMix ----------------------------------------------------------------------------------------------
def test_mixup_blends_images_and_labels_by_the_same_weight(photos):
    params = mix_params(0.4, 0.0, step_generator(0, 0, 0))
    labels = torch.tensor([0, 1, 1, 0, 2, 2, 0, 1])
    images, targets = mix(photos.float(), labels, params, 3)
    lam = float(params["mix_lambda"][0])
    assert not bool(params["mix_cutmix"][0]) and 0 < lam < 1
    torch.testing.assert_close(images, lam * photos.float() + (1 - lam) * photos.float().roll(1, 0))
    assert torch.allclose(targets.sum(1), torch.ones(8))
    assert targets[0].tolist() == pytest.approx([lam, (1 - lam), 0.0])  # image 0 mixed with image 7 (label 1)
    assert describe_targets(targets, ["a", "b", "c"])[2] == "b"  # 1 mixed with 1: one class


def test_cutmix_pastes_a_box_and_mixes_the_labels_by_its_area(photos):
    params = mix_params(0.0, 1.0, step_generator(0, 0, 1))
    labels = torch.arange(8) % 2
    images, targets = mix(photos.float(), labels, params, 2)
    top, left, bottom, right = cutmix_box(float(params["mix_lambda"][0]), params["mix_center"], 32, 32)
    area = (bottom - top) * (right - left)
    assert area > 0
    pasted = photos.float().roll(1, 0)[..., top:bottom, left:right]
    assert torch.equal(images[..., top:bottom, left:right], pasted)
    outside = torch.ones(32, 32, dtype=torch.bool)
    outside[top:bottom, left:right] = False
    assert torch.equal(images[..., outside], photos.float()[..., outside])
    assert targets[0, 0].item() == pytest.approx(1 - area / 1024)  # its own label keeps the area it kept


def test_with_both_each_batch_takes_one_and_lambda_follows_beta():
    draws = [mix_params(0.2, 1.0, step_generator(0, 0, step)) for step in range(400)]
    cutmix = [bool(p["mix_cutmix"][0]) for p in draws]
    assert 150 < sum(cutmix) < 250  # even odds
    mixup_lams = np.array([float(p["mix_lambda"][0]) for p, c in zip(draws, cutmix) if not c])
    cutmix_lams = np.array([float(p["mix_lambda"][0]) for p, c in zip(draws, cutmix) if c])
    # Beta(0.2, 0.2) piles up near 0 and 1; Beta(1, 1) is uniform
    assert np.mean((mixup_lams < 0.1) | (mixup_lams > 0.9)) > 0.5
    assert 0.35 < np.mean(cutmix_lams < 0.5) < 0.65


def test_fields_validate_and_describe():
    config = build_config({"dataset": "fashion-mnist", "model": "mlp", "auto_augment": "TRIVIAL", "mixup": 0.2,
                           "cutmix": 1.0})
    spec = augment_spec(config, allow_flip=True, pad_mode="constant")
    assert spec.describe().endswith("TrivialAugmentWide, MixUp alpha 0.2 or CutMix alpha 1 (one per batch)")
    with pytest.raises(ConfigError, match="auto_augment: 'autoaugment' is not allowed; choose one of none, trivial, "
                                          "randaugment"):
        build_config({"auto_augment": "autoaugment"})
    with pytest.raises(ConfigError, match="mixup: -0.1 is out of range; use an alpha >= 0"):
        build_config({"mixup": -0.1})
    with pytest.raises(ConfigError, match="randaugment_magnitude: 31 is out of range; use a whole number from 0 to 30"):
        build_config({"randaugment_magnitude": 31})


# -- a run with all of them: trains, resumes bit-identically, show-batch, eject ------------------------------------
def fields(folder, runs, name):
    return dict(dataset=str(folder), model="simple-cnn", epochs=2, batch_size=32, optimizer="adam", lr=0.003,
                auto_augment="trivial", mixup=0.4, cutmix=1.0, label_smoothing=0.1, ema=0.9, threads=1, runs_dir=str(runs),
                name=name, progress="none", report=False)


@pytest.fixture(scope="module")
def mixed_runs(tmp_path_factory):
    """An uninterrupted run and one stopped mid-epoch 2 (SIGTERM's path) and resumed, in this process."""
    base = tmp_path_factory.mktemp("mixed")
    folder, runs = write_digits_folder(base / "digits", 300, 100), base / "runs"
    reference, resumed = reference_and_resumed(lambda name: fields(folder, runs, name), runs, base / "vt-home",
                                               stop_at=11, stopped_at="epoch 2, step 3")
    return SimpleNamespace(folder=folder, reference=reference, resumed=resumed)


def test_a_run_with_trivialaugment_mixup_and_cutmix_trains_and_resumes_bit_identical(mixed_runs):
    reference, resumed = mixed_runs.reference, mixed_runs.resumed
    assert reference.summary["status"] == resumed.summary["status"] == "complete"
    assert reference.summary["augmentation"].endswith("TrivialAugmentWide, MixUp alpha 0.4 or CutMix alpha 1 "
                                                      "(one per batch)")
    for row in reference.metrics:
        assert math.isfinite(float(row["train_loss"])) and 0 <= float(row["train_acc"]) <= 1
    assert reference.summary["test_acc"] > 0.2  # twice chance: it learns from mixed, soft-labelled batches
    assert_bit_identical(resumed.path, reference.path)


def test_show_batch_shows_the_mixed_pixels_and_labels_the_trainer_trains_on(mixed_runs):
    from visiontrain.engine.build import build
    from visiontrain.engine.loop import Normalizer
    from visiontrain.engine.precision import Precision
    from visiontrain.report.batch import training_batch

    config = build_config({k: v for k, v in fields(mixed_runs.folder, "unused", None).items()
                           if k not in ("runs_dir", "name", "threads")})
    built = build(config)
    trainer, loader = built.trainer, built.loader
    trainer.normalize = Normalizer([0.0], [1 / 255], Precision(torch.device("cpu"), None, False, False))
    batches = [trainer.batch(indices, 0, step) for step, indices in loader.batches(0)][:2]
    expected = torch.cat([images for images, _ in batches])[:40]
    targets = torch.cat([labels for _, labels in batches])[:40]
    assert targets.shape == (40, 10) and torch.allclose(targets.sum(1), torch.ones(40))  # soft labels
    images, names, spec, _ = training_batch(config, 40, augmented=True, verbose=False)
    assert torch.equal(images, expected)
    assert names == describe_targets(targets, [str(d) for d in range(10)])
    assert any("%" in name for name in names)  # mixed captions such as '62% 3\n38% 8'


def test_show_batch_cli_takes_the_new_overrides(mixed_runs, tmp_path):
    from conftest import run_cli

    out = tmp_path / "batch.png"
    result = run_cli("show-batch", mixed_runs.folder, "--augmented", "--auto-augment", "randaugment",
                     "--randaugment-ops", "1", "--cutmix", "1.0", "-n", "8", "-o", out)
    assert result.returncode == 0, result.stderr
    with Image.open(out) as image:
        assert image.size[0] > 0


def test_eject_writes_torchvisions_policy_and_batch_mixing(mixed_runs, tmp_path):
    from visiontrain.eject import eject

    text = eject(mixed_runs.reference.path, tmp_path / "plain.py").read_text()
    train_line = text.split("train_transform = ")[1].split("\n")[0]
    assert "transforms.TrivialAugmentWide(), transforms.ToTensor()" in train_line
    assert ("MIX = v2.RandomChoice([v2.MixUp(alpha=0.4, num_classes=len(CLASSES)), "
            "v2.CutMix(alpha=1.0, num_classes=len(CLASSES))])") in text
    assert "images, labels = MIX(images, labels)" in text
    script = runpy.run_path(str(tmp_path / "plain.py"))  # the transforms and the mixing run on real images
    image = Image.open(next((mixed_runs.folder / "train" / "3").glob("*.png")))
    batch = torch.stack([script["train_transform"](image) for _ in range(4)])
    images, labels = script["MIX"](batch, torch.tensor([3, 3, 5, 1]))
    assert images.shape == (4, 1, 28, 28) and labels.shape == (4, 10)


def test_eject_of_randaugment_writes_its_settings(mixed_runs, tmp_path):
    from visiontrain.eject import eject

    run = mixed_runs.resumed.path
    config = (run / "config.yaml").read_text()
    (run / "config.yaml").write_text(config.replace("auto_augment: trivial", "auto_augment: randaugment")
                                     .replace("mixup: 0.4", "mixup: 0.0").replace("cutmix: 1.0", "cutmix: 0.0"))
    try:
        text = eject(run, tmp_path / "plain.py").read_text()
    finally:
        (run / "config.yaml").write_text(config)
    assert "transforms.RandAugment(num_ops=2, magnitude=9)" in text
    assert "MIX = None" in text


@pytest.mark.gpu
def test_the_policy_and_mixing_on_a_gpu_match_the_cpu(photos):
    """The trainer applies them on the device its batch is on: the same parameters give the same pixels there."""
    spec = AugmentSpec(policy="trivial", cutmix=1.0, mixup=0.8)
    images = torch.cat([photos] * 32).float()  # 256 images: every operation drawn several times
    labels = torch.arange(len(images)) % 2
    params = make_params(spec, len(images), step_generator(0, 0, 0))
    on_cpu = mix(apply(images, params, spec), labels, params, 2)
    on_gpu = mix(apply(images.cuda(), params, spec), labels.cuda(), params, 2)
    assert (on_gpu[0].cpu() - on_cpu[0]).abs().mean() < 0.05
    assert torch.allclose(on_gpu[1].cpu(), on_cpu[1])
