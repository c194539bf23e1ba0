"""Predictor.predict takes what a Python session holds: paths, PIL images, numpy arrays and tensors, mixed in one list,
each prepared exactly as a file of it is (the decode policy: EXIF orientation, alpha on white, 16-bit scaling), and
each result names its input."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import visiontrain
from realdata import photo_crops, write_photo_folder
from visiontrain.errors import DataError


@pytest.fixture(scope="module")
def rgb_run(tmp_path_factory):
    """A 2-class RGB model (real photo crops) at 32 px: the objects below are resized and checked against it."""
    root = tmp_path_factory.mktemp("objects")
    data = write_photo_folder(root / "photos", 20, 6, size=48)
    return visiontrain.train(dataset=str(data), model="simple-cnn", image_size=32, epochs=1, batch_size=16,
                             runs_dir=str(root / "runs"), progress="none", report=False, threads=1)


@pytest.fixture(scope="module")
def predictor(rgb_run):
    return visiontrain.load(rgb_run.path)


@pytest.fixture(scope="module")
def photos():
    return photo_crops("china", 3, 40, seed=5) + photo_crops("flower", 2, 56, seed=6)  # RGB PIL images, two sizes


def test_pil_images_arrays_and_tensors_give_what_their_files_give(predictor, photos, tmp_path):
    paths = []
    for i, photo in enumerate(photos):
        paths.append(tmp_path / f"{i}.png")
        photo.save(paths[-1])
    from_files, _ = predictor.prepare(paths)
    arrays = [np.array(photo) for photo in photos]
    tensors = [torch.from_numpy(array).permute(2, 0, 1) for array in arrays]  # torchvision's (C, H, W)
    for objects in (photos, arrays, tensors, [t.float() / 255 for t in tensors]):
        images, _ = predictor.prepare(objects)
        assert torch.equal(images, from_files)
    mixed = [paths[0], photos[1], arrays[2], tensors[3], str(paths[4])]
    assert torch.equal(predictor.prepare(mixed)[0], from_files)
    results = predictor.predict(mixed, top_k=2)
    assert [r["input"] for r in results] == [str(paths[0]), "<PIL image 1>", "<array 2>", "<tensor 3>", str(paths[4])]
    assert [r["index"] for r in results] == [0, 1, 2, 3, 4]
    assert [r["top"] for r in results] == [r["top"] for r in predictor.predict(paths, top_k=2)]


def test_a_batch_tensor_is_each_of_its_images(predictor, photos):
    crops = torch.stack([torch.from_numpy(np.array(p.resize((40, 40)))).permute(2, 0, 1) for p in photos])
    results = predictor.predict([photos[0], crops], top_k=1)
    assert [r["input"] for r in results] == ["<PIL image 0>"] + [f"<tensor 1, image {j}>" for j in range(5)]
    assert [r["input"] for r in predictor.predict(crops)] == [f"<image {j}>" for j in range(5)]
    exact = predictor.prepare(crops)[0]  # the model's own size, uint8: used as it is, as Predictor.logits takes it
    assert predictor.prepare(exact)[0] is exact


def test_the_decode_policy_applies_to_objects_exif_alpha_and_16_bit(predictor, photos, tmp_path):
    # EXIF orientation: a phone photo opened with PIL is not yet turned upright; decoding it turns it as its file is
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated 90 degrees clockwise
    photos[3].save(tmp_path / "phone.jpg", exif=exif)
    opened = Image.open(tmp_path / "phone.jpg")
    assert torch.equal(predictor.prepare(opened)[0], predictor.prepare(tmp_path / "phone.jpg")[0])
    assert not torch.equal(predictor.prepare(np.asarray(opened))[0], predictor.prepare(opened)[0])  # no EXIF: as is

    # transparency is composited on white, as a PNG with alpha is
    rgba = photos[0].convert("RGBA")
    alpha = np.zeros(rgba.size[::-1], np.uint8)
    alpha[:, : rgba.size[0] // 2] = 255
    rgba.putalpha(Image.fromarray(alpha))
    rgba.save(tmp_path / "alpha.png")
    on_white = Image.alpha_composite(Image.new("RGBA", rgba.size, "white"), rgba).convert("RGB")
    for item in (rgba, np.asarray(rgba), tmp_path / "alpha.png"):
        assert torch.equal(predictor.prepare(item)[0], predictor.prepare(on_white)[0])

    # 16-bit gray: value / 257, as a 16-bit PNG is (then repeated to the model's 3 channels)
    wide = (np.linspace(0, 65535, 48 * 48).reshape(48, 48)).astype(np.uint16)
    Image.fromarray(wide).save(tmp_path / "wide.png")
    assert torch.equal(predictor.prepare(wide)[0], predictor.prepare(tmp_path / "wide.png")[0])
    assert torch.equal(predictor.prepare(wide)[0], predictor.prepare(np.rint(wide / 257).astype(np.uint8))[0])


@pytest.mark.parametrize("item, message", [
    (object(), "<object 0>: a object is not an image"),
    (np.zeros((4, 4, 7), np.uint8), "<array 0>: an array of shape (4, 4, 7) is not an image"),
    (np.full((4, 4), 3.0), "<array 0>: a float array must hold values from 0 to 1"),
    (torch.zeros(2, 3, 4, 4, 5), "<tensor 0>: a tensor of shape (2, 3, 4, 4, 5) is not an image"),
    ("missing.png", "missing.png: "),
])
def test_what_is_not_an_image_is_named_in_one_sentence(predictor, item, message):
    with pytest.raises(DataError) as error:
        predictor.predict([item])
    assert str(error.value).startswith(message)
