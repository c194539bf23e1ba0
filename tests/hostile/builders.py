"""Folders as careless and hostile users make them: every kind of bad or odd file real image folders hold.

Everything is written by hand here (Pillow, raw bytes, os.symlink, os.mkfifo), small: a folder takes well under a
second to write and a few seconds to train on.
"""
from __future__ import annotations

import io
import os
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

NOT_UTF8 = os.fsdecode(b"caf\xe9")  # Latin-1 'café' as a Linux file name: not valid UTF-8


def picture(seed: int, size: tuple[int, int] = (20, 16), mode: str = "RGB", base: int = 0) -> Image.Image:
    """A distinct small image (width, height): random pixels around `base`, so classes differ a little."""
    rng = np.random.default_rng(seed)
    pixels = np.clip(rng.integers(0, 120, (size[1], size[0], 3)) + base, 0, 255).astype(np.uint8)
    return Image.fromarray(pixels).convert(mode)


def class_folder(root: Path, names: dict[str, int], per_class: int = 4, size: tuple[int, int] = (20, 16),
                 seed: int = 0) -> Path:
    """root/<class>/img<i>.png for each class name (value: its brightness offset); returns root. Another `seed`
    gives other images (a test split that does not duplicate train)."""
    for index, (name, base) in enumerate(names.items()):
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            picture(100_000 * seed + 1000 * index + i, size, base=base).save(folder / f"img{i}.png")
    return root


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def bomb_png(width: int = 20_000, height: int = 20_000) -> bytes:
    """A PNG of a few dozen bytes whose header declares width x height pixels (400 million by default)."""
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + png_chunk(b"IDAT", zlib.compress(b"\0" * 64))
            + png_chunk(b"IEND", b""))


def strip_png(path: Path, length: int = 100_000) -> Path:
    """A valid 1 x `length` grayscale PNG (a few hundred bytes: a line of one grey)."""
    Image.new("L", (1, length), 128).save(path)
    return path


def bad_crc_png(image: Image.Image) -> bytes:
    """A PNG whose IHDR checksum is wrong (one flipped bit in the stored CRC)."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    data = bytearray(buffer.getvalue())
    data[29] ^= 0x01  # the last byte of IHDR's CRC (8 signature + 4 length + 4 type + 13 data = byte 29)
    return bytes(data)


def exif_rotated_jpeg(path: Path) -> Path:
    image = picture(7, (24, 16))
    exif = image.getexif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    image.save(path, exif=exif, quality=95)
    return path


def animated_gif(path: Path) -> Path:
    frames = [picture(seed, (16, 16)).convert("P") for seed in (11, 12, 13)]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100, loop=0)
    return path


def messy_folder(root: Path, with_fifo: bool = True) -> dict[str, Path]:
    """Two usable classes (`cat`, `dog`, plus `ünï côde` and `__init__`), 4 good images each, and every kind of bad
    or odd entry next to them. Returns {role: path} of the odd entries."""
    class_folder(root, {"cat": 0, "dog": 120, "ünï côde": 60, "__init__": 30})
    cat, dog = root / "cat", root / "dog"
    odd: dict[str, Path] = {}

    def put(role: str, path: Path, data: bytes | None = None) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        if data is not None:
            path.write_bytes(data)
        odd[role] = path
        return path

    # unreadable: each is listed with its reason, and training skips it
    jpeg = io.BytesIO()
    picture(3, (64, 64)).save(jpeg, format="JPEG", quality=90)
    put("truncated jpeg", cat / "truncated.jpg", jpeg.getvalue()[:300])
    put("zero bytes", cat / "empty.png", b"")
    put("text as jpg", dog / "notes.jpg", b"this is not an image\n")
    put("bad crc png", dog / "bad-crc.png", bad_crc_png(picture(4)))
    put("bomb", dog / "bomb.png", bomb_png())
    put("svg as png", dog / "vector.png", b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>')
    put("dangling link", cat / "gone.png")
    os.symlink(root / "no" / "such" / "file.png", odd["dangling link"])
    put("self link", cat / "self.png")
    os.symlink("self.png", odd["self link"])  # a link to itself: ELOOP when followed
    if with_fifo:
        put("fifo", cat / "pipe.png")
        os.mkfifo(odd["fifo"])  # opening it to read blocks until someone writes: forever
    put("link to /dev/zero", dog / "zeros.png")
    os.symlink("/dev/zero", odd["link to /dev/zero"])  # reading it never ends
    put("not utf-8 name", cat / f"{NOT_UTF8}.png")
    picture(5).save(odd["not utf-8 name"], format="PNG")
    # odd but readable: decoded and trained on
    put("cmyk jpeg", cat / "print.jpg")
    picture(6, (20, 16)).convert("CMYK").save(odd["cmyk jpeg"], format="JPEG")
    put("16-bit png", dog / "ramp16.png")
    Image.fromarray(np.linspace(0, 65535, 20 * 16).astype(np.uint16).reshape(16, 20)).save(odd["16-bit png"])
    put("palette transparency", dog / "palette.png")
    palette = picture(8).convert("P")
    palette.info["transparency"] = 0
    palette.save(odd["palette transparency"], transparency=0)
    put("gray alpha", dog / "gray-alpha.png")
    picture(9).convert("LA").save(odd["gray alpha"])
    put("one bit", dog / "bits.png")
    picture(10).convert("1").save(odd["one bit"])
    put("exif rotated", cat / "phone.jpg")
    exif_rotated_jpeg(odd["exif rotated"])
    put("strip", cat / "strip.png")
    strip_png(odd["strip"])
    put("tiny", dog / "tiny.png")
    Image.new("RGB", (1, 1), (200, 10, 10)).save(odd["tiny"])
    put("animated gif", dog / "animated.gif")
    animated_gif(odd["animated gif"])
    put("bmp", cat / "old.bmp")
    picture(14).save(odd["bmp"])
    put("upper-case extension", cat / "SHOUT.PNG")
    picture(15).save(odd["upper-case extension"], format="PNG")
    put("jpeg named png", dog / "really-a-jpeg.png")
    picture(16).save(odd["jpeg named png"], format="JPEG")
    put("nested", cat / "sub" / "deeper" / "nested.png")
    picture(17).save(odd["nested"])
    put("folder named like an image", dog / "folder.png" / "inside.png")
    picture(18).save(odd["folder named like an image"])
    put("link to an image", dog / "link.png")
    os.symlink(dog / "img0.png", odd["link to an image"])
    put("exact copy", cat / "copy of img0.png", (cat / "img0.png").read_bytes())
    put("csv formula name", cat / "=1+2.png")
    picture(19).save(odd["csv formula name"])
    put("dash name", dog / "-rf.png")
    picture(20).save(odd["dash name"])
    put("newline name", dog / "new\nline.png")
    picture(21).save(odd["newline name"])
    put("long name", cat / ("l" * 240 + ".png"))
    picture(22).save(odd["long name"])
    put("unreadable permissions", dog / "locked.png")  # tests run as root: chmod 000 does not stop a read
    picture(23).save(odd["unreadable permissions"])
    odd["unreadable permissions"].chmod(0)
    # ignored on purpose, and reported
    put("ds_store", cat / ".DS_Store", b"\0\0\0\1Bud1")
    put("thumbs.db", dog / "Thumbs.db", b"\xd0\xcf\x11\xe0")
    put("hidden image", cat / ".hidden.png", (cat / "img1.png").read_bytes())
    put("macosx", root / "__MACOSX" / "cat" / "._img0.png", b"\0\5\26\7 resource fork")
    put("readme at root", root / "README.txt", b"my photos\n")
    put("loose image at root", root / "loose.png", (cat / "img2.png").read_bytes())
    # loops: each real folder is listed once, the loop reported
    put("loop to itself", cat / "again")
    os.symlink(".", odd["loop to itself"])
    put("loop to the root", dog / "up")
    os.symlink("..", odd["loop to the root"])
    return odd


def tiny_folder(root: Path, per_class: int = 2, classes: tuple[str, ...] = ("a", "b")) -> Path:
    return class_folder(root, {name: 100 * i for i, name in enumerate(classes)}, per_class=per_class)
