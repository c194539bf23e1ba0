"""JPEG draft decoding (data/decode.py, policy jpeg_draft): libjpeg reduces a large JPEG while decoding. The pixels
change slightly, the geometry (centre crop, EXIF orientation) does not, and a policy recorded before the field
existed keeps decoding in full, so an older model predicts from the pixels it was trained on."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from realdata import photos
from visiontrain.data import workers
from visiontrain.data.decode import DecodePolicy, decode_image

FULL, DRAFT = DecodePolicy(jpeg_draft=False), DecodePolicy()


@pytest.fixture(scope="module")
def photo_jpeg(tmp_path_factory):
    """scikit-learn's china.jpg (640x427) saved as a JPEG: a real camera photo."""
    path = tmp_path_factory.mktemp("photo") / "china.jpg"
    Image.fromarray(photos()["china"]).save(path, quality=92)
    return path


def reference(path, size: int) -> np.ndarray:
    """The whole file decoded, the shorter side resized to `size` (bilinear, antialiased) and the centre kept."""
    image = Image.open(path).convert("RGB")
    scale = size / min(image.size)
    resized = image.resize((max(size, round(image.width * scale)), max(size, round(image.height * scale))),
                           Image.Resampling.BILINEAR)
    left, top = (resized.width - size) // 2, (resized.height - size) // 2
    return np.asarray(resized.crop((left, top, left + size, top + size))).transpose(2, 0, 1)


@pytest.mark.parametrize("size", [32, 96, 160])
def test_draft_pixels_stay_within_a_few_levels_of_a_full_decode(photo_jpeg, size):
    full, draft = decode_image(photo_jpeg, FULL, size), decode_image(photo_jpeg, DRAFT, size)
    assert full.shape == draft.shape == (3, size, size)
    difference = np.abs(full.astype(int) - draft.astype(int))
    assert difference.mean() < 2.0  # measured: 0.7-1.7 levels
    assert np.abs(reference(photo_jpeg, size).astype(int) - draft).mean() < 2.5  # the same part of the photo
    assert (difference > 0).any()  # 427 px to at most 160: libjpeg did reduce it (to 213 px)


def test_a_jpeg_no_larger_than_twice_the_size_is_decoded_in_full(photo_jpeg):
    assert np.array_equal(decode_image(photo_jpeg, FULL, 256), decode_image(photo_jpeg, DRAFT, 256))


def test_draft_follows_the_exif_orientation(photo_jpeg, tmp_path):
    """A photo stored sideways with orientation 6 (turn 90 degrees clockwise): the drafted crop is the same part of
    the upright photo as the full decode's; a box computed from the stored (unturned) sides would not be."""
    upright = Image.open(photo_jpeg)
    exif = Image.Exif()
    exif[0x0112] = 6
    sideways = tmp_path / "sideways.jpg"
    upright.transpose(Image.Transpose.ROTATE_90).save(sideways, quality=92, exif=exif.tobytes())
    for size in (48, 100):
        full, draft = decode_image(sideways, FULL, size), decode_image(sideways, DRAFT, size)
        assert full.shape == draft.shape == (3, size, size)
        assert np.abs(full.astype(int) - draft.astype(int)).mean() < 2.0
        assert np.abs(full.astype(int) - decode_image(photo_jpeg, FULL, size).astype(int)).mean() < 2.0


def test_large_images_without_a_size_are_reduced_by_draft_to_max_side(photo_jpeg):
    policy = DecodePolicy(max_side=100)
    drafted = decode_image(photo_jpeg, policy, None)
    assert drafted.shape == (3, 100, 100)
    assert np.abs(drafted.astype(int) - decode_image(photo_jpeg, FULL, 100)).mean() < 2.0


def test_a_policy_recorded_before_jpeg_draft_existed_decodes_in_full():
    old = {"max_pixels": 64_000_000, "exif_transpose": True, "max_side": 256, "window": None,
           "sixteen_bit": "value/257"}
    assert DecodePolicy.from_dict(old).jpeg_draft is False
    assert DecodePolicy.from_dict(DecodePolicy().to_dict()) == DecodePolicy()  # new runs record it
    with pytest.raises(ValueError, match="jpeg_draft"):
        DecodePolicy(jpeg_draft="yes")


def test_decoding_workers_follow_the_cores_this_process_may_use(monkeypatch):
    monkeypatch.setattr(workers.os, "sched_getaffinity", lambda pid: {0, 1, 2}, raising=False)
    assert workers.decode_workers() == 3
    monkeypatch.setattr(workers.os, "sched_getaffinity", lambda pid: set(range(200)), raising=False)
    assert workers.decode_workers() == workers.MAX_WORKERS
