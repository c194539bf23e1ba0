"""Decoding one image file into uint8 pixels under one explicit policy, the same in train, eval and predict.

The policy (recorded in summary.json and in every checkpoint):
- files that declare more than `max_pixels` pixels are refused from their header, before any memory is used;
- the EXIF orientation of phone photos is applied (`exif_transpose`), unless switched off;
- 16-bit images (PNG/TIFF 'I;16', 'I') are scaled from 0..65535 to 0..255 (value / 257), never clipped, unless a
  `window` is set: then LEVEL - WIDTH/2 .. LEVEL + WIDTH/2 of the raw values maps to 0..255 and the rest is clipped;
- DICOM files (.dcm/.dicom, or any file with 'DICM' at byte 128; read with the optional pydicom) get
  RescaleSlope/RescaleIntercept (Hounsfield units for CT), then the window: `window` if set, else the file's own
  first WindowCenter/WindowWidth, else the slice's min..max; MONOCHROME1 is inverted; multi-frame files are refused;
- transparency (RGBA, LA, P with a transparent colour) is composited onto a white background;
- CMYK, palette and other modes are converted to RGB; grayscale stays one channel;
- a truncated or corrupt file is an error (Pillow's LOAD_TRUNCATED_IMAGES stays off);
- `jpeg_draft`: a JPEG decoded to a side at most half its own is scaled by 1/2, 1/4 or 1/8 by libjpeg while it
  decodes (Pillow's draft mode: the inverse DCT at the reduced size), then resized as any other file: 1.8x the
  decodes per second on photo-sized JPEGs, pixels within a few levels of a full decode (benchmarks/
  decode_throughput.py; docs/transfer-learning.md has both and their effect on accuracy). A policy recorded
  before this field existed reads back as off, so an older model predicts from the pixels it was trained on.
"""
from __future__ import annotations

import math
import stat
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

# absolute: bundle.decode_module also loads this file on its own (no torch), outside the data package
from visiontrain.windows import WINDOW_PRESETS, format_window, parse_window, split_windows  # noqa: F401

DICOM_EXTENSIONS = (".dcm", ".dicom")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".pgm", ".ppm", ".pbm",
                    *DICOM_EXTENSIONS)  # plus extension-less DICOM files, found by their magic (is_dicom)
GRAY_MODES = {"1", "L", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"}
MAX_PIXELS_LIMIT = 1 << 28  # the largest max_pixels a policy may hold (268 M pixels: 1 GiB as RGBA)
MAX_SIDE_LIMIT = 4096  # the largest max_side (as config's image_size)
ORIENTATION = 0x0112  # the EXIF tag
DRAFT_GAP = 1.25  # libjpeg's reduced decode keeps its shorter side at least this multiple of the target's: reduced to
# just above the target (china.jpg, 427 px, to 200 px via 213 px) the bilinear resize that follows barely smooths
# and the pixels moved 2.7 levels on average from a full decode's; with this gap at most 1.7 (full decode with
# bilinear against Lanczos: 1.3-3.2), while 344 px photos to 128 px (ImageNet's median) still decode at half size


class DecodeError(Exception):
    """The file cannot be used; the message is the reason (the caller adds the path)."""


@dataclass(frozen=True)
class DecodePolicy:
    max_pixels: int = 64_000_000  # width x height above which a file is refused (decompression-bomb guard)
    exif_transpose: bool = True  # apply the EXIF orientation tag
    max_side: int = 256  # images larger than this are reduced at decode time (memory stays bounded)
    window: str | None = None  # "LEVEL,WIDTH" for DICOM and 16-bit gray files (a preset name becomes its numbers)
    jpeg_draft: bool = True  # JPEGs reduced by libjpeg while decoding when the target side allows (see above)

    def __post_init__(self) -> None:
        # ValueError (one sentence) for a value of the wrong type or out of bounds: a policy is also read back
        # from files people can edit (model.json), and the limits guard memory, so they are bounded here too
        for name, high in (("max_pixels", MAX_PIXELS_LIMIT), ("max_side", MAX_SIDE_LIMIT)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= high:
                raise ValueError(f"decode policy: {name} {value!r} is not a whole number from 1 to {high:,}")
        for name in ("exif_transpose", "jpeg_draft"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"decode policy: {name} {getattr(self, name)!r} is not true or false")
        if self.window is not None and not isinstance(self.window, str):
            raise ValueError(f"decode policy: window {self.window!r} is not text such as \"40,400\" or \"lung\"")
        if self.window is not None:
            object.__setattr__(self, "window", format_window(*parse_window(self.window)))

    @classmethod
    def from_dict(cls, values: dict) -> "DecodePolicy":
        """The policy recorded by to_dict() in a checkpoint or model.json (its descriptive extra keys dropped); one
        recorded before jpeg_draft existed decoded every JPEG in full, and still does."""
        return cls(**{"jpeg_draft": False} | {k: v for k, v in values.items() if k in cls.__dataclass_fields__})

    def to_dict(self) -> dict:
        window = f"window {self.window} (level,width) of the raw values, clipped" if self.window else None
        dicom = (f"rescale slope/intercept, then window {self.window}, clipped" if self.window else
                 "rescale slope/intercept, then the file's WindowCenter/WindowWidth, else the slice's min..max")
        return asdict(self) | {"sixteen_bit": window or "value/257", "alpha": "composited on white",
                               "cmyk": "converted to RGB", "dicom": dicom + "; MONOCHROME1 inverted"}


def decode_image(path: str | Path, policy: DecodePolicy, size: int | None = None) -> np.ndarray:
    """Decode `path` to uint8 (C, H, W), C = 1 for grayscale files and 3 otherwise.

    size: if given, the shorter side is resized to `size` and the centre cropped to size x size; otherwise
    images whose longer side exceeds `policy.max_side` are reduced the same way to max_side.
    """
    path = Path(path)
    try:
        info = path.stat()
        if not stat.S_ISREG(info.st_mode):  # a FIFO or a device would block the read, or never end it
            raise DecodeError("not a regular file (a FIFO, a device or a socket); only regular files are read")
        if info.st_size == 0:
            raise DecodeError("empty file (0 bytes)")
        if is_dicom(path):
            pixels = _decode_dicom(path, policy)
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                with Image.open(path) as image:
                    return _pil_sized(image, policy, size, from_file=True)
    except DecodeError:
        raise
    except Exception as error:  # noqa: BLE001 - _decode_error says which kinds are the file's fault
        raise _decode_error(error, policy) from None
    return _sized(pixels, policy, size)


def decode_pil(image: Image.Image, policy: DecodePolicy, size: int | None = None) -> np.ndarray:
    """A PIL image (e.g. in a Python session) to uint8 (C, H, W) as decode_image decodes a file holding it: the pixel
    limit, the EXIF orientation, 16-bit scaling or the window, alpha composited on white, the resize. A caller's
    image is never reduced by libjpeg (jpeg_draft changes a file's object, which this does not own), so a large JPEG
    may differ from decode_image's by resampling noise (a level or two)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            return _pil_sized(image, policy, size, from_file=False)
    except DecodeError:
        raise
    except Exception as error:  # noqa: BLE001 - as decode_image
        raise _decode_error(error, policy) from None


def decode_array(array: np.ndarray, policy: DecodePolicy, size: int | None = None) -> np.ndarray:
    """A numpy image to uint8 (C, H, W) as decode_image decodes a file of it: (H, W) or (H, W, 1) gray, (H, W, 3) RGB
    or (H, W, 4) RGBA (alpha composited on white); uint8, uint16 (16-bit: value/257, or the window) or float in
    [0, 1]. Raises DecodeError naming the shape or values that are not an image."""
    array = np.asarray(array)
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (3, 4)) or min(array.shape[:2]) < 1:
        raise DecodeError(f"an array of shape {array.shape} is not an image; give (H, W) gray, (H, W, 3) RGB or "
                          "(H, W, 4) RGBA")
    if array.dtype.kind == "f":
        if not np.isfinite(array).all() or array.min() < 0 or array.max() > 1:
            raise DecodeError(f"a float array must hold values from 0 to 1 (this one: {np.nanmin(array):.3g} to "
                              f"{np.nanmax(array):.3g}); give uint8 (0..255) for other scales")
        array = np.rint(array * 255).astype(np.uint8)
    elif array.dtype == np.uint16 and array.ndim == 2:
        array = array.astype(np.uint16, copy=False)  # Pillow's 'I;16': 16-bit gray, as a PNG of it decodes
    elif array.dtype != np.uint8:
        raise DecodeError(f"an array of {array.dtype} is not an image; give uint8, 16-bit gray (uint16) or float "
                          "values from 0 to 1")
    return decode_pil(Image.fromarray(np.ascontiguousarray(array)), policy, size)


def _pil_sized(image: Image.Image, policy: DecodePolicy, size: int | None, *, from_file: bool) -> np.ndarray:
    """uint8 (C, H, W) of an opened image under the policy (module docstring), checked before decoding, resized as
    _sized. from_file: the image is decode_image's own, just opened, so libjpeg may reduce it while decoding
    (policy.jpeg_draft) and it may be turned in place; a caller's image object is never changed."""
    width, height = image.size  # from the header: nothing decoded yet
    if width * height > policy.max_pixels:
        raise DecodeError(f"declares {width}x{height} pixels, above the limit of {policy.max_pixels:,} (a "
                          "decompression-bomb guard; raise max_pixels if the file is genuine)")
    target = size if size is not None else (policy.max_side if max(width, height) > policy.max_side else None)
    reduction = _draft(image, target) if from_file and policy.jpeg_draft and target is not None else 1
    image.load()
    if policy.exif_transpose:
        if image.getexif().get(ORIENTATION) in (5, 6, 7, 8):  # turned by 90 degrees
            width, height = height, width
        if from_file:
            ImageOps.exif_transpose(image, in_place=True)  # no copy of the decoded pixels
        else:
            image = ImageOps.exif_transpose(image)
    if image.mode in ("RGB", "L") and target is not None:  # resized before any full-size array is made
        return _resize_image(image, target, (width, height), reduction).transpose(2, 0, 1).copy()
    return _sized(_to_uint8(image, policy.window), policy, size)


def _decode_error(error: Exception, policy: DecodePolicy) -> DecodeError:
    """The reason a file (or an image object) could not be decoded; an error that is not the file's is raised."""
    if isinstance(error, (Image.DecompressionBombError, Image.DecompressionBombWarning)):  # Pillow's larger limit
        return DecodeError(f"declares too many pixels ({error}); above the limit of {policy.max_pixels:,} "
                           "(a decompression-bomb guard)")
    if isinstance(error, UnidentifiedImageError):
        return DecodeError(f"not a readable image ({type(error).__name__})")
    if isinstance(error, (OSError, SyntaxError, ValueError)):
        return DecodeError(f"truncated or corrupt ({error})")
    raise error


def _sized(pixels: np.ndarray, policy: DecodePolicy, size: int | None) -> np.ndarray:
    """(H, W, C) -> (C, H, W), resized to `size` (shorter side, centre crop), else reduced to max_side if larger."""
    target = size if size is not None else (policy.max_side if max(pixels.shape[:2]) > policy.max_side else None)
    if target is not None:
        pixels = _resize_center_crop(pixels, target)
    return pixels.transpose(2, 0, 1).copy()  # (H, W, C) -> (C, H, W)


def _to_uint8(image: Image.Image, window: str | None = None) -> np.ndarray:
    """(H, W, 1) or (H, W, 3) uint8 under the policy above (`window` applies to 16-bit, 32-bit and float gray)."""
    mode = image.mode
    if mode in GRAY_MODES:
        if mode in ("1", "L"):
            array = np.asarray(image.convert("L"), dtype=np.uint8)
        else:
            wide = np.asarray(image, dtype=np.float64)
            if window is not None:
                array = apply_window(wide, *parse_window(window))
            else:
                array = np.clip(np.rint(wide / 257.0), 0, 255).astype(np.uint8)  # 65535 / 257 = 255
        return array[:, :, None]
    if mode in ("LA", "RGBA", "PA") or (mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        if mode == "LA":
            return np.asarray(Image.alpha_composite(background, rgba).convert("L"), dtype=np.uint8)[:, :, None]
        return np.asarray(Image.alpha_composite(background, rgba).convert("RGB"), dtype=np.uint8)
    return np.asarray(image.convert("RGB"), dtype=np.uint8)


def _draft(image: Image.Image, target: int) -> int:
    """Let libjpeg reduce a JPEG by 1/2, 1/4 or 1/8 while decoding, as far as keeps its shorter side at least
    DRAFT_GAP x the whole resize's (what `_crop_box` resamples from); returns the reduction (1: none, or not a
    JPEG)."""
    if image.format != "JPEG" or image.mode not in ("RGB", "L"):  # CMYK and others: decoded in full, as before
        return 1
    width, height = image.size
    scale = DRAFT_GAP * target / min(width, height)
    wanted = (max(1, math.ceil(width * scale)), max(1, math.ceil(height * scale)))
    drafted = image.draft(image.mode, wanted)  # (mode, (0, 0, width / reduction, height / reduction)) or None
    return round(width / drafted[1][2]) if drafted else 1


def _crop_box(width: float, height: float, size: int, reduction: int = 1) -> tuple[float, float, float, float]:
    """The source box of the centre size x size crop of the image resized so that its shorter side is `size`, in
    the pixels of that image decoded `reduction` times smaller (draft mode): the same geometry either way."""
    scale = size / min(height, width)
    new_w, new_h = max(size, round(width * scale)), max(size, round(height * scale))
    left, top = (new_w - size) // 2, (new_h - size) // 2
    sx, sy = width / new_w / reduction, height / new_h / reduction  # source pixels per resized pixel
    return left * sx, top * sy, (left + size) * sx, (top + size) * sy


def _resize_image(image: Image.Image, size: int, full_size: tuple[int, int] | None = None, reduction: int = 1
                  ) -> np.ndarray:
    """(size, size, C) uint8: `image` (mode RGB or L; decoded `reduction` times smaller than its `full_size`, the
    file's (width, height) as oriented) with its shorter side resized to `size` and the centre kept, as
    _resize_center_crop; no full-size array is ever made."""
    width, height = full_size if reduction > 1 else image.size
    array = np.asarray(image.resize((size, size), Image.Resampling.BILINEAR,
                                    box=_crop_box(width, height, size, reduction), reducing_gap=3.0), dtype=np.uint8)
    return array[:, :, None] if array.ndim == 2 else array


def _resize_center_crop(pixels: np.ndarray, size: int) -> np.ndarray:
    """The shorter side resized to `size`, then the centre size x size crop, computed without the resized whole:
    Pillow resamples only the source box that the crop covers (`box=`), at the scale and sampling positions of
    the whole resize (pixels agree with resize-then-crop to within one level of rounding), while memory stays
    size x size whatever the shape: a 1 x 100,000 strip resized whole would be 256 x 25,600,000 pixels."""
    height, width, channels = pixels.shape
    image = Image.fromarray(pixels[:, :, 0] if channels == 1 else pixels)
    return _resize_image(image, size)


def to_channels(pixels: np.ndarray, channels: int) -> np.ndarray:
    """(C, H, W) uint8 with C in {1, 3} -> `channels` (grayscale repeated; RGB to luma with ITU-R 601 weights)."""
    if pixels.shape[0] == channels:
        return pixels
    if channels == 3:
        return np.repeat(pixels, 3, axis=0)
    weights = np.array([299, 587, 114], dtype=np.uint32)[:, None, None]
    return ((pixels.astype(np.uint32) * weights).sum(0, keepdims=True) // 1000).astype(np.uint8)


# -- windows and DICOM -----------------------------------------------------------------------------------
PYDICOM_MISSING = "reading DICOM files needs pydicom, an optional extra: pip install 'visiontrain[medical]'"
_DICOMDIR_CLASS = "1.2.840.10008.1.3.10"  # Media Storage Directory Storage: an index, no pixels


def apply_window(values: np.ndarray, level: float, width: float) -> np.ndarray:
    """uint8 of a linear window: LEVEL - WIDTH/2 -> 0, LEVEL + WIDTH/2 -> 255, values outside clipped, rounded."""
    scaled = (np.asarray(values, dtype=np.float64) - (level - width / 2.0)) / width
    return np.rint(np.clip(scaled, 0.0, 1.0) * 255.0).astype(np.uint8)


def has_dicom_magic(path: str | Path) -> bool:
    """Whether the file holds 'DICM' at byte 128 (the DICOM Part 10 preamble), whatever its name."""
    try:
        with open(path, "rb") as handle:
            handle.seek(128)
            return handle.read(4) == b"DICM"
    except OSError:
        return False


def is_dicom(path: str | Path) -> bool:
    return Path(path).suffix.lower() in DICOM_EXTENSIONS or has_dicom_magic(path)


def _decode_dicom(path: Path, policy: DecodePolicy) -> np.ndarray:
    """(H, W, 1) or (H, W, 3) uint8 of a single-frame DICOM file (see the module docstring); DecodeError otherwise."""
    try:
        import pydicom
        from pydicom.pixels import apply_color_lut, apply_modality_lut, get_decoder
    except ImportError:
        raise DecodeError(PYDICOM_MISSING) from None
    try:
        ds = pydicom.dcmread(path, force=True)  # force: also a .dcm without the 128-byte preamble
        meta = getattr(ds, "file_meta", None) or pydicom.dataset.FileMetaDataset()
        if meta.get("MediaStorageSOPClassUID") == _DICOMDIR_CLASS:
            raise DecodeError("a DICOMDIR (the index of a DICOM folder), not an image")
        if "PixelData" not in ds:
            kind = "FloatPixelData" if "FloatPixelData" in ds or "DoubleFloatPixelData" in ds else None
            raise DecodeError(f"a DICOM file with float pixel data ({kind}), which visiontrain does not read" if kind
                              else "a DICOM file without pixel data (no PixelData element): a report, a structured "
                                   "report, a header only or a truncated file, not an image")
        frames = int(ds.get("NumberOfFrames") or 1)
        if frames > 1:
            raise DecodeError(f"a multi-frame DICOM ({frames} frames); visiontrain reads single slices, so save each "
                              "frame as its own file")
        rows, columns = int(ds.get("Rows") or 0), int(ds.get("Columns") or 0)
        if rows * columns > policy.max_pixels:
            raise DecodeError(f"declares {columns}x{rows} pixels, above the limit of {policy.max_pixels:,} "
                              "(a decompression-bomb guard; raise max_pixels if the file is genuine)")
        syntax = meta.get("TransferSyntaxUID")
        if syntax is None:  # a bare dataset without file meta: the encoding it was read with
            implicit, little = ds.original_encoding
            syntax = pydicom.uid.ImplicitVRLittleEndian if implicit else (
                pydicom.uid.ExplicitVRLittleEndian if little else pydicom.uid.ExplicitVRBigEndian)
            ds.file_meta = meta
            meta.TransferSyntaxUID = syntax
        if syntax.is_compressed:
            try:
                decoder = get_decoder(syntax)
            except NotImplementedError:
                raise DecodeError(f"compressed as {syntax.name} ({syntax}), which pydicom cannot decode") from None
            if not decoder.is_available:
                raise DecodeError(f"compressed as {syntax.name} ({syntax}), which pydicom decodes only with a handler "
                                  f"that is not installed: install {_handlers(decoder.missing_dependencies)}")
        raw = ds.pixel_array
        photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).strip().upper()
        if photometric == "PALETTE COLOR":
            raw = apply_color_lut(raw, ds)
        if raw.ndim == 3:  # RGB (pydicom converts YBR to RGB): the file's own colours; the window is for gray
            bits = 16 if raw.dtype.itemsize > 1 else 8
            if photometric != "PALETTE COLOR":
                bits = min(bits, int(ds.get("BitsStored") or bits))
            scale = 255.0 / (2 ** bits - 1)
            return np.clip(np.rint(raw.astype(np.float64) * scale), 0, 255).astype(np.uint8)[:, :, :3]
        if raw.ndim != 2:
            raise DecodeError(f"DICOM pixel data of unexpected shape {raw.shape}")
        values = apply_modality_lut(raw, ds).astype(np.float64)  # RescaleSlope/Intercept (or a Modality LUT)
    except DecodeError:
        raise
    except Exception as error:  # noqa: BLE001 - pydicom raises many kinds for a broken file; the file is unreadable
        raise DecodeError(f"not a readable DICOM file ({type(error).__name__}: {error})") from None
    pixels = apply_window(values, *_dicom_window(ds, values, policy))
    if photometric == "MONOCHROME1":  # 0 is white in MONOCHROME1
        pixels = 255 - pixels
    return pixels[:, :, None]


def _dicom_window(ds, values: np.ndarray, policy: DecodePolicy) -> tuple[float, float]:  # noqa: ANN001
    """(level, width): the policy's window, else the file's first WindowCenter/WindowWidth, else min..max."""
    if policy.window is not None:
        return parse_window(policy.window)
    try:
        center, width = ds.get("WindowCenter"), ds.get("WindowWidth")
        if center is not None and width is not None:
            level, span = _first_number(center), _first_number(width)  # several windows: the first
            if math.isfinite(level) and math.isfinite(span) and span > 0:
                return level, span
    except (TypeError, ValueError, IndexError):
        pass  # an unreadable window in the header: the slice's range instead
    low, high = float(values.min()), float(values.max())
    return ((low + high) / 2.0, high - low) if high > low else (low + 0.5, 1.0)  # constant: all 0


def _first_number(value) -> float:  # noqa: ANN001 - a DS value or pydicom's MultiValue of them
    return float(value[0]) if hasattr(value, "__len__") and not isinstance(value, (str, bytes)) else float(value)


def _handlers(missing: list[str]) -> str:
    """pydicom's 'gdcm - requires gdcm>=3.0.10' lines as 'gdcm (gdcm>=3.0.10, pip package python-gdcm) or ...'."""
    options = []
    for line in missing:
        name, _, needs = line.partition(" - requires ")
        note = ", pip package python-gdcm" if name.strip() == "gdcm" else ""
        options.append(f"{name.strip()} ({needs.strip()}{note})" if needs else line)
    return "one of " + ", ".join(options[:-1]) + f" or {options[-1]}" if len(options) > 1 else "".join(options)


def header_shape(path: str, policy: DecodePolicy) -> tuple[int, int] | None:
    """(channels, short side) of what decode_image(path, policy) returns without a size, read from the file's
    header alone (nothing is decoded); None when the header cannot be read (the decode will say why)."""
    try:
        if is_dicom(path):
            import pydicom  # an optional extra: without it the decode reports the file

            ds = pydicom.dcmread(path, force=True, stop_before_pixels=True)
            mode = "RGB" if int(ds.get("SamplesPerPixel") or 1) == 3 or str(ds.get("PhotometricInterpretation", "")
                                                                             ).strip() == "PALETTE COLOR" else "L"
            width, height = int(ds.get("Columns") or 0), int(ds.get("Rows") or 0)
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # decode_image judges the size
                with Image.open(path) as image:
                    mode, (width, height) = image.mode, image.size
    except Exception:  # noqa: BLE001 - pydicom and Pillow raise many kinds for a broken header
        return None
    if min(width, height) < 1:
        return None
    if max(width, height) > policy.max_side:  # decode_image reduces these to a max_side square
        width = height = policy.max_side
    return (1 if mode in GRAY_MODES or mode == "LA" else 3), min(width, height)  # EXIF rotation keeps the short side
