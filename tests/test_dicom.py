"""DICOM slices and windows: rescale + window by hand, MONOCHROME1, bad files named, the policy recorded and reused."""
from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pydicom = pytest.importorskip("pydicom", reason="pydicom (the 'medical' extra) is not installed")
from pydicom.dataset import Dataset, FileMetaDataset  # noqa: E402
from pydicom.encaps import encapsulate  # noqa: E402
from pydicom.uid import (CTImageStorage, ExplicitVRLittleEndian, JPEGLSLossless, MRImageStorage,  # noqa: E402
                         generate_uid)

import visiontrain  # noqa: E402
from visiontrain.cli import main  # noqa: E402
from visiontrain.config import ConfigError, build_config, load_yaml, to_yaml  # noqa: E402
from visiontrain.data import load_dataset  # noqa: E402
from visiontrain.data.decode import PYDICOM_MISSING, DecodeError, DecodePolicy, decode_image  # noqa: E402
from visiontrain.errors import DataError  # noqa: E402

TINY = dict(model="mlp", epochs=1, batch_size=8, augment="none", threads=1, progress="none", report=False)


def write_slice(path: Path, hu: np.ndarray, *, photometric: str = "MONOCHROME2", modality: str = "CT",
                slope: float = 1.0, intercept: float = -1024.0, window: tuple | None = None,
                syntax: str = ExplicitVRLittleEndian, pixels: bool = True) -> Path:
    """A single-frame DICOM slice whose stored int16 values are (hu - intercept) / slope."""
    stored = np.rint((np.asarray(hu, dtype=np.float64) - intercept) / slope).astype(np.int16)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage if modality == "CT" else MRImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = syntax
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.PatientID = modality, "anonymous"
    ds.Rows, ds.Columns = stored.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, photometric
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    ds.RescaleSlope, ds.RescaleIntercept = slope, intercept
    if window is not None:
        ds.WindowCenter, ds.WindowWidth = window
    if pixels and syntax == ExplicitVRLittleEndian:
        ds.PixelData = stored.tobytes()
    elif pixels:  # encapsulated (compressed) pixel data: a fragment that only the syntax's decoder could read
        ds.PixelData = encapsulate([b"\xff\xd8\xff\xf7" + bytes(64)])
        ds["PixelData"].VR = "OB"
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def by_hand(hu: np.ndarray, level: float, width: float) -> np.ndarray:
    """The documented window: level - width/2 -> 0, level + width/2 -> 255, linear, clipped, rounded."""
    return np.rint(np.clip((hu - (level - width / 2)) / width, 0, 1) * 255).astype(np.uint8)


def phantom(rng: np.random.Generator, inside: float, size: int = 24) -> np.ndarray:
    """Air (-1000 HU) with a noisy disc of `inside` HU in the middle."""
    yy, xx = np.mgrid[:size, :size]
    disc = (yy - size / 2) ** 2 + (xx - size / 2) ** 2 < (size / 3) ** 2
    return np.where(disc, inside, -1000.0) + rng.normal(0, 20, (size, size)).round()


def make_dicom_folder(root: Path, per_class: tuple[int, int] = (16, 6)) -> Path:
    """Two classes with a visible difference: soft tissue (~50 HU) and bone (~700 HU) discs. Each file carries its own
    (different) lung window, so a decode that ignored the run's window would see other pixels."""
    rng = np.random.default_rng(0)
    for split, count in zip(("train", "test"), per_class):
        for name, inside in (("soft", 50.0), ("bone", 700.0)):
            for i in range(count):
                path = root / split / name / (f"{i}.dcm" if i % 4 else f"IM{i:04d}")  # DICOM files often lack a suffix
                write_slice(path, phantom(rng, inside), window=(-600, 1500))
    return root


HU = np.linspace(-1200, 1600, 16 * 12).reshape(16, 12).round()


def test_decoded_values_match_rescale_and_window_by_hand(tmp_path):
    path = write_slice(tmp_path / "ct.dcm", HU)
    for window, (level, width) in (("40,400", (40, 400)), ("lung", (-600, 1500)), ("bone", (400, 1800)),
                                   ("brain", (40, 80)), ("-500.5, 1000", (-500.5, 1000))):
        pixels = decode_image(path, DecodePolicy(window=window))
        assert pixels.shape == (1, 16, 12) and pixels.dtype == np.uint8
        np.testing.assert_array_equal(pixels[0], by_hand(HU, level, width))
    # no window: the slice's own min..max; the file's own WindowCenter/WindowWidth when it has them (first of several)
    full_range = by_hand(HU, (HU.min() + HU.max()) / 2, np.ptp(HU))
    np.testing.assert_array_equal(decode_image(path, DecodePolicy())[0], full_range)
    own = write_slice(tmp_path / "own.dcm", HU, window=([50, 400], [350, 2000]))
    np.testing.assert_array_equal(decode_image(own, DecodePolicy())[0], by_hand(HU, 50, 350))
    np.testing.assert_array_equal(decode_image(own, DecodePolicy(window="bone"))[0], by_hand(HU, 400, 1800))
    # the slope is applied too (stored values are half the HU here), and the magic finds a file without a suffix
    halves = write_slice(tmp_path / "slope" / "IM0001", HU, slope=2.0, intercept=-1024.0)
    stored = np.rint((HU + 1024) / 2)  # what the file holds
    np.testing.assert_array_equal(decode_image(halves, DecodePolicy(window="40,400"))[0],
                                  by_hand(stored * 2 - 1024, 40, 400))


def test_monochrome1_is_inverted(tmp_path):
    path = write_slice(tmp_path / "mono1.dcm", HU, photometric="MONOCHROME1")
    np.testing.assert_array_equal(decode_image(path, DecodePolicy(window="40,400"))[0], 255 - by_hand(HU, 40, 400))


def test_sixteen_bit_png_takes_the_window_in_raw_units(tmp_path):
    raw = np.linspace(0, 4095, 32 * 32).reshape(32, 32).astype(np.uint16)  # a 12-bit scan in a 16-bit PNG
    path = tmp_path / "scan16.png"
    Image.fromarray(raw).save(path)
    np.testing.assert_array_equal(decode_image(path, DecodePolicy(window="1000,2000"))[0],
                                  by_hand(raw.astype(float), 1000, 2000))
    default = decode_image(path, DecodePolicy())[0]  # unchanged without a window: value / 257, nothing clipped
    np.testing.assert_array_equal(default, np.rint(raw / 257).astype(np.uint8))
    eight_bit = tmp_path / "gray8.png"  # 8-bit files are not windowed
    Image.fromarray((raw // 16).astype(np.uint8)).save(eight_bit)
    np.testing.assert_array_equal(decode_image(eight_bit, DecodePolicy(window="lung")),
                                  decode_image(eight_bit, DecodePolicy()))


def test_bad_dicom_files_are_named_with_one_clear_reason(tmp_path):
    root = make_dicom_folder(tmp_path / "ct", per_class=(4, 0))
    write_slice(root / "train" / "soft" / "report.dcm", HU, pixels=False)
    frames = write_slice(root / "train" / "soft" / "cine.dcm", HU)
    ds = pydicom.dcmread(frames)
    ds.NumberOfFrames = 3
    ds.PixelData = np.tile(np.frombuffer(ds.PixelData, dtype=np.int16), 3).tobytes()
    ds.save_as(frames, enforce_file_format=True)
    decoder = pydicom.pixels.get_decoder(JPEGLSLossless)
    compressed = not decoder.is_available
    if compressed:  # JPEG-LS needs a handler that pydicom lacks by default (pylibjpeg, gdcm or pyjpegls)
        write_slice(root / "train" / "bone" / "jpegls.dcm", HU, syntax=JPEGLSLossless)
    with pytest.raises(DataError) as error:
        load_dataset(str(root), val_fraction=0)
    message, soft = str(error.value), root / "train" / "soft"
    assert f"{soft / 'report.dcm'}: a DICOM file without pixel data (no PixelData element)" in message
    assert f"{root / 'train' / 'soft' / 'cine.dcm'}: a multi-frame DICOM (3 frames)" in message
    assert ("3" if compressed else "2") + " unreadable image file(s)" in message and "--strict" in message
    if compressed:
        assert f"{root / 'train' / 'bone' / 'jpegls.dcm'}: compressed as JPEG-LS Lossless" in message
        assert "handler that is not installed: install one of" in message and "pylibjpeg" in message
    rows, skipped = visiontrain.predict_paths(_trained(tmp_path, make_dicom_folder(tmp_path / "good")),
                                              [root / "train" / "soft"], top_k=1)
    reasons = dict(skipped)
    assert "no PixelData element" in reasons[str(root / "train" / "soft" / "report.dcm")]
    assert len(rows) == 4  # the good slices, one without a suffix among them


def test_without_pydicom_one_sentence_says_how_to_install_it(tmp_path, monkeypatch):
    root = make_dicom_folder(tmp_path / "ct", per_class=(3, 0))
    monkeypatch.setitem(sys.modules, "pydicom", None)  # `import pydicom` now raises ImportError
    with pytest.raises(DecodeError, match=r"pip install 'visiontrain\[medical\]'"):
        decode_image(root / "train" / "soft" / "1.dcm", DecodePolicy())
    with pytest.raises(DataError) as error:
        load_dataset(str(root), val_fraction=0, skip_bad=True)
    assert str(error.value).count("pip install") == 1 and "6 DICOM file(s)" in str(error.value)
    assert str(error.value).endswith(PYDICOM_MISSING)


def _trained(tmp_path: Path, root: Path, **fields) -> Path:
    run = visiontrain.train(dataset=str(root), runs_dir=str(tmp_path / "runs"), window="soft-tissue", **TINY | fields)
    return run.path


def test_dicom_folder_trains_and_predict_decodes_as_training_did(tmp_path):
    root = make_dicom_folder(tmp_path / "ct")
    run = _trained(tmp_path, root, name="ct")
    checkpoint = __import__("torch").load(run / "checkpoints" / "best.pt", weights_only=True)
    assert checkpoint["decode_policy"]["window"] == "40,400"  # the preset is recorded as its numbers
    assert json.loads((run / "summary.json").read_text())["decode_policy"]["window"] == "40,400"
    config = load_yaml(run / "config.yaml")
    assert config["window"] == "soft-tissue" and build_config(config, apply_preset=False).window == "soft-tissue"
    with open(run / "eval" / "test" / "predictions.csv") as handle:
        evaluation = {row["image"]: row for row in csv.DictReader(handle)}
    assert len(evaluation) == 12 and any(not Path(p).suffix for p in evaluation)
    rows, skipped = visiontrain.predict_paths(run, [root / "test"], top_k=2)
    assert not skipped and len(rows) == 12
    for row in rows:
        expected = evaluation[row["path"]]
        assert row["top"][0][0] == expected["predicted"]
        assert row["top"][0][1] == pytest.approx(float(expected["confidence"]), abs=1e-4)
    # the files' own lung window would give other pixels: predict really used the recorded soft-tissue window
    some = root / "test" / "bone" / "1.dcm"
    assert not np.array_equal(decode_image(some, DecodePolicy()), decode_image(some, DecodePolicy(window="40,400")))
    # an export bundle records the same policy, and predicting through it agrees
    from visiontrain.export import export_run

    bundle = export_run(run, "safetensors")
    assert json.loads((bundle / "model.json").read_text())["decode_policy"]["window"] == "40,400"
    through_bundle, _ = visiontrain.predict_paths(bundle, [root / "test"], top_k=1)
    assert [r["top"][0][0] for r in through_bundle] == [r["top"][0][0] for r in rows]


@pytest.mark.parametrize("bad", ["abc", "40", "40,0", "40,-400", "nan,400", "40,400,1", "lungs", ","])
def test_window_is_validated_in_one_sentence(bad, tmp_path, capsys):
    with pytest.raises(ConfigError, match=r"^window: .* is not a window; use \"LEVEL,WIDTH\""):
        build_config({"window": bad})
    root = make_dicom_folder(tmp_path / "ct", per_class=(2, 0))
    assert main(["train", "--dataset", str(root), f"--window={bad}", "--epochs", "1"]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("visiontrain: error: window:") and "\n" not in error and "soft-tissue (40,400)" in error


def test_window_round_trips_in_config_yaml(tmp_path):
    for window in ("soft-tissue", "40,400", "-600,1500", "-500.5,1000", None):
        config = build_config({"window": window}, apply_preset=False)
        path = tmp_path / "config.yaml"
        path.write_text(to_yaml(config))
        assert build_config(load_yaml(path), apply_preset=False) == config
    assert DecodePolicy.from_dict(DecodePolicy(window="lung").to_dict()) == DecodePolicy(window="-600,1500")
    assert DecodePolicy.from_dict(DecodePolicy().to_dict()).window is None  # old checkpoints: no window


def test_decode_cache_is_rebuilt_when_the_window_changes(tmp_path):
    root = make_dicom_folder(tmp_path / "ct", per_class=(3, 2))
    load = lambda window: load_dataset(str(root), val_fraction=0, verbose=False,  # noqa: E731
                                       policy=DecodePolicy(window=window))
    first = load("40,400")
    assert first.cache_status == "built" and load("40,400").cache_status == "hit"
    assert load("soft-tissue").cache_status == "hit"  # the same numbers, the same entry
    lung = load("lung")
    assert lung.cache_status == "built" and not np.array_equal(lung.train.images.numpy(), first.train.images.numpy())
    assert lung.fingerprint != first.fingerprint and lung.decode_policy["window"] == "-600,1500"


def test_data_command_counts_dicom_files_and_modalities(tmp_path, capsys):
    root = make_dicom_folder(tmp_path / "scans", per_class=(3, 0))
    rng = np.random.default_rng(1)
    write_slice(root / "train" / "soft" / "mr.dcm", rng.normal(300, 50, (24, 24)), modality="MR", intercept=0.0)
    write_slice(root / "train" / "bone" / "no-window.dcm", phantom(rng, 700.0))
    Image.new("L", (24, 24), 90).save(root / "train" / "bone" / "photo.png")
    (root / "train" / "soft" / "DICOMDIR").write_bytes(bytes(128) + b"DICM")  # an index, not an image: ignored
    assert main(["data", str(root), "--json", str(tmp_path / "report.json"), "-o", str(tmp_path / "data_report.html")]) == 0
    out = capsys.readouterr().out
    assert "DICOM: 8 files, modalities CT 7, MR 1; 6 carry their own window" in out
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["dicom"] == {"files": 8, "modalities": {"CT": 7, "MR": 1}, "with own window": 6}
    assert report["kinds"]["dicom"] == 8 and report["bad_files"] == []
    assert any(path.endswith("DICOMDIR") for path, _ in report["ignored_files"])


def test_a_sweep_reads_40_400_as_one_window_and_pairs_numbers_in_a_list_of_windows(tmp_path):
    from visiontrain.sweep import plan

    root = make_dicom_folder(tmp_path / "ct", per_class=(2, 0))
    base = {"dataset": str(root), "runs_dir": str(tmp_path / "runs"), "model": "mlp"}
    assert plan(base | {"window": "40,400"}).shared["window"] == "40,400"
    assert plan(base | {"window": "lung, -600.5,1500 ,bone"}).axes["window"] == ["lung", "-600.5,1500", "bone"]
    with pytest.raises(ConfigError, match="^window: '40' is not a window"):
        plan(base | {"window": "lung,40"})
