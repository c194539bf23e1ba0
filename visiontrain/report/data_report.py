"""data_report.html: the `visiontrain data` check as one self-contained page, with thumbnails of the problems.

The page holds the class counts (a table and a bar chart), the modes and sizes of the files, and tiles for what
deserves a look: every unreadable or non-image file with its reason, exact and near duplicates side by side
(pairs across splits first: they leak test images into training), and examples of the odd kinds of image.

The thumbnails are the decoded images the check already holds: uint8 tensors decoded under the training
DecodePolicy (EXIF applied, 16-bit scaled, alpha on white, CMYK to RGB) and fitted to the dataset's C x S x S, so
the page shows what training sees and nothing is decoded a second time. A file that could not be decoded gets a
placeholder tile. Like report.html the page embeds every image as a data URI and needs no script or network.
"""
from __future__ import annotations

import io
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from .._io import atomic_write_text
from ..config import Config
from ..data.folder import SPLIT_NAMES
from ..errors import VisiontrainError
from ..figures import figure_png, literal, new_figure
from .html import _e, _image, _page, _section, _table

if TYPE_CHECKING:
    import torch
    from matplotlib.figure import Figure

    from ..data.inspect import DataCheck

DEFAULT_NAME = "data_report.html"
MAX_TILES = 24  # items per section (files, groups, pairs, examples of a kind); the rest are counted
MAX_GROUP_MEMBERS = 4  # copies shown side by side per exact-duplicate group
THUMB_MAX_SIDE = 128  # px: larger decoded images are reduced before they are embedded
THUMB_BOX = 96  # px: the tile's picture; smaller images are scaled up with square pixels

ODD_TITLES = {  # ODD_KINDS key -> (anchor id, heading)
    "16-bit": ("odd-16-bit", "16-bit images (scaled value / 257)"),
    "cmyk": ("odd-cmyk", "CMYK images (converted to RGB)"),
    "with alpha": ("odd-alpha", "Images with transparency (composited on white)"),
    "exif rotated": ("odd-exif", "EXIF-rotated images (orientation applied)"),
    "tiny (< 32 px)": ("odd-tiny", "Tiny images (shorter side under 32 px)"),
}

CSS = f"""
.tiles {{ display: flex; flex-wrap: wrap; gap: 10px; margin: 0.6em 0; }}
.tile {{ width: {THUMB_BOX + 40}px; margin: 0; font-size: 0.78em; line-height: 1.3; }}
.tile .pic {{ width: {THUMB_BOX}px; height: {THUMB_BOX}px; border: 1px solid #ccc; background: #fafafa; }}
.tile .pic img {{ width: {THUMB_BOX}px; height: {THUMB_BOX}px; max-width: none; object-fit: contain; margin: 0; }}
.tile .pic.px img {{ image-rendering: pixelated; }}
.tile .placeholder {{ display: flex; align-items: center; justify-content: center; text-align: center; height: 100%;
                     color: #a33; background: repeating-linear-gradient(45deg, #fff 0 6px, #f6e8e8 6px 12px); }}
.tile figcaption {{ margin-top: 0.2em; overflow-wrap: anywhere; }}
.tile .reason {{ color: #a33; }}
.split {{ display: inline-block; padding: 0 0.35em; border-radius: 3px; background: #e8eef5; font-weight: 600; }}
.split-test {{ background: #fde2c8; }} .split-val {{ background: #e3f1dc; }}
.group {{ border-left: 4px solid #ccc; padding: 0.2em 0 0.2em 0.7em; margin: 0.8em 0; }}
.group.leak {{ border-left-color: #d62728; background: #fff6f6; }}
.group .label {{ font-weight: 600; }} .group.leak .label {{ color: #d62728; }}
p.more {{ color: #777; font-style: italic; }}
"""


def html_target(path: str | Path | None = None) -> Path:
    """The file the page goes to (default ./data_report.html); refused at once if it names a folder."""
    target = Path(path or DEFAULT_NAME).expanduser()
    if target.is_dir():
        raise VisiontrainError(f"{target} is a folder; give -o/--html a file name such as {target / DEFAULT_NAME}")
    return target


def write_data_report(check: "DataCheck", path: str | Path | None = None) -> Path:
    """Write the page for `check` (data.inspect.check_dataset) to `path` (default ./data_report.html) atomically.
    Returns the path."""
    target = html_target(path)
    text = render_data_report(check)
    try:
        atomic_write_text(target, text)
    except OSError as error:
        raise VisiontrainError(f"could not write the data report {target} ({error.strerror or error}); "
                               "choose another file with -o/--html") from None
    return target


def render_data_report(check: "DataCheck") -> str:
    report = check.report
    root = None if report.get("kinds") is None else Path(report["dataset"]).expanduser()
    thumbs = _Thumbnails(check, root)
    sections = [
        _overview(report),
        _problems(report),
        _class_counts(report),
        _sizes(report),
        _bad_files(report, thumbs),
        _duplicates(report, thumbs, "exact_duplicates", "Exact duplicates", "exact-duplicates",
                    "Images whose decoded pixels are identical (SHA-256 of the pixels): a re-saved copy counts."),
        _duplicates(report, thumbs, "near_duplicates", "Near duplicates", "near-duplicates",
                    "Pairs whose 64-bit dHash is equal or one bit apart and whose mean pixel difference is at most 5% "
                    "of their brightness: re-encoded or slightly edited copies."),
        _odd_images(check, thumbs) if check.files else "",
    ]
    subtitle = (f"{report['dataset']} · thumbnails show the images as training sees them: decoded under the training "
                f"decode policy and fitted to {report['channels']}x{report['image_size']}x{report['image_size']}")
    return _page(f"visiontrain data check: {_dataset_name(report)}", subtitle, sections, CSS)


def _dataset_name(report: dict[str, Any]) -> str:
    return Path(report["dataset"]).name or str(report["dataset"])


# -- thumbnails -----------------------------------------------------------------------------------------------
class _Thumbnails:
    """Tiles of images named as the report names them: (split, file path) or (split, '#index') in array datasets."""

    def __init__(self, check: "DataCheck", root: Path | None):
        self.splits, self.root = check.splits, root
        self.lookup = {split: {name: i for i, name in enumerate(t.sources)} if t.sources is not None else None
                       for split, t in check.splits.items()}
        self.pngs: dict[tuple[str, int], tuple[bytes, bool]] = {}

    def index(self, split: str, name: str) -> int | None:
        lookup = self.lookup.get(split, {})
        if lookup is not None:
            return lookup.get(name)
        number = name[1:] if name.startswith("#") else ""
        return int(number) if number.isdigit() and int(number) < len(self.splits[split]) else None

    def picture(self, split: str, name: str, missing: str) -> str:
        index = self.index(split, name)
        if index is None:
            return _placeholder(missing)
        key = (split, index)
        if key not in self.pngs:
            self.pngs[key] = _png(self.splits[split].images[index])
        png, small = self.pngs[key]
        return f'<div class="pic{" px" if small else ""}">{_image(png, f"{split} {self.short(name)}")}</div>'

    def short(self, name: str) -> str:
        """The path relative to the dataset folder (the full path is in the tile's tooltip)."""
        path = Path(name)
        return str(path.relative_to(self.root)) if self.root is not None and path.is_relative_to(self.root) else name

    def tile(self, split: str | None, name: str, note: str = "", *, missing: str = "not decoded") -> str:
        picture = self.picture(split, name, missing) if split is not None else _placeholder(missing)
        badge = f'<span class="split split-{_e(split)}">{_e(split)}</span> ' if split else ""
        return (f'<figure class="tile">{picture}<figcaption>{badge}<span class="path" title="{_e(name)}">'
                f"{_e(self.short(name))}</span>{note}</figcaption></figure>")


def _placeholder(text: str) -> str:
    label = _e(text)
    return f'<div class="pic"><div class="placeholder" role="img" aria-label="{label}">&#x2715; {label}</div></div>'


def _png(image: "torch.Tensor") -> tuple[bytes, bool]:
    """PNG bytes of a uint8 (C, H, W) image (reduced to THUMB_MAX_SIDE), and whether it is shown scaled up."""
    from PIL import Image

    pixels = image.permute(1, 2, 0).numpy()
    picture = Image.fromarray(pixels[:, :, 0] if pixels.shape[2] == 1 else pixels)
    if max(picture.size) > THUMB_MAX_SIDE:
        picture.thumbnail((THUMB_MAX_SIDE, THUMB_MAX_SIDE), Image.Resampling.BILINEAR)
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return buffer.getvalue(), max(picture.size) < THUMB_BOX


def _tiles(tiles: Sequence[str]) -> str:
    return f'<div class="tiles">{"".join(tiles)}</div>'


def _more(total: int, shown: int, what: str) -> str:
    return f'<p class="more">and {total - shown:,} more {_e(what)} not shown</p>' if total > shown else ""


# -- sections -------------------------------------------------------------------------------------------------
def _overview(report: dict[str, Any]) -> str:
    splits = report["splits"]
    exact, near = report["exact_duplicates"], report["near_duplicates"]
    rows = [
        ("dataset", str(report["dataset"])),
        ("classes", str(len(report["classes"]))),
        ("images", ", ".join(f"{name} {info['images']:,}" for name, info in splits.items())),
        ("as training sees them", f"{report['channels']}x{report['image_size']}x{report['image_size']} uint8"),
        ("problems with the folder", str(len(report.get("problems", [])))),
        ("unreadable files", str(len(report["bad_files"]))),
        ("exact duplicate groups", f"{len(exact)} ({sum(g['cross_split'] for g in exact)} across splits)"),
        ("near duplicate pairs", f"{len(near)} ({sum(g['cross_split'] for g in near)} across splits)"),
    ]
    if "ignored_files" in report:
        rows.insert(6, ("ignored files (hidden, not an image, outside a class folder...)",
                        str(len(report["ignored_files"]))))
    if report.get("kinds"):
        rows.append(("kinds of image", ", ".join(f"{k} {v}" for k, v in report["kinds"].items() if v) or "—"))
    return _section("Overview", _table(["", "value"], rows, "overview"), "overview-section")


def _problems(report: dict[str, Any]) -> str:
    """The folder's problems (empty class folders, classes a split lacks, link loops...): what training refuses
    or warns about, which the check lists instead of stopping at the first."""
    problems = report.get("problems", [])
    if not problems:
        return ""
    items = "".join(f"<li>{_e(problem)}</li>" for problem in problems)
    return _section("Problems with the folder", f"<ul>{items}</ul>", "problems")


def _class_counts(report: dict[str, Any]) -> str:
    classes, splits = report["classes"], report["splits"]
    rows = [[name, *(f"{splits[s]['per_class'][name]:,}" for s in splits)] for name in classes]
    rows.append(["total", *(f"{splits[s]['images']:,}" for s in splits)])
    rows.append(["imbalance ratio", *(_ratio(splits[s]["imbalance_ratio"]) for s in splits)])
    body = _image(_class_counts_png(report), "class counts per split")
    body += _table(["class", *splits], rows, "class-counts")
    train = splits.get("train", {}).get("imbalance_ratio")
    note = "The imbalance ratio is the largest class count over the smallest."
    if train and train > Config.imbalance_threshold:
        note += (f" The training split is above {Config.imbalance_threshold:g} (--imbalance-threshold): training keeps "
                 "the best epoch by val balanced accuracy; --class-weights auto or --sampler balanced can help.")
    return _section("Class counts", body + f"<p class=muted>{_e(note)}</p>", "class-counts-section")


def _ratio(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}"


def _class_counts_png(report: dict[str, Any]) -> bytes:
    return figure_png(class_counts_figure(report))


def class_counts_figure(report: dict[str, Any]) -> "Figure":
    """Bars of images per class, one colour per split, the imbalance ratio of each split in the legend, which
    sits outside the axes so that it never covers a bar."""
    import math

    classes, splits = report["classes"], report["splits"]
    figure = new_figure(min(20.0, max(6.0, 2 + 0.12 * len(classes) * len(splits))), 3.8)
    axis = figure.add_subplot()
    width = 0.8 / max(1, len(splits))
    for j, (name, info) in enumerate(splits.items()):
        offset = (j - (len(splits) - 1) / 2) * width
        axis.bar([i + offset for i in range(len(classes))], [info["per_class"][c] for c in classes], width,
                 label=f"{name} (imbalance {_ratio(info['imbalance_ratio'])})")
    step = math.ceil(len(classes) / 100)  # at most 100 names on the axis
    ticks = list(range(0, len(classes), step))
    names = [literal(classes[i]) for i in ticks]
    axis.set_xticks(ticks, names, rotation=90 if max(map(len, names)) > 3 else 0,
                    fontsize=max(4.0, min(10.0, 180 / len(ticks))))
    axis.set_ylabel("images")
    axis.grid(axis="y", alpha=0.3)
    figure.legend(loc="outside right upper", fontsize=8)
    axis.set_title(literal(f"{_dataset_name(report)}: images per class"))
    return figure


def _sizes(report: dict[str, Any]) -> str:
    stats = report.get("sizes", {})
    side = report["image_size"]
    decoded = (f"{stats.get('images', 0):,} images decoded to {report['channels']}x{side}x{side} uint8 "
               f"({'grayscale' if report['channels'] == 1 else 'RGB'}).")
    if "common_sizes" not in stats:  # an array dataset: no files, every image has the same size
        return _section("Sizes and modes", f"<p>{_e(decoded)}</p>", "sizes")
    width, height = stats["width"], stats["height"]
    spread = _table(["", "min", "median", "max"], [["width (px)", width["min"], width["median"], width["max"]],
                                                   ["height (px)", height["min"], height["median"], height["max"]]],
                    "size-spread")
    modes = _table(["mode", "files"], [[mode, f"{count:,}"] for mode, count in stats["modes"].items()], "modes")
    common = _table(["width x height", "files"], [[size, f"{count:,}"] for size, count in stats["common_sizes"]],
                    "common-sizes")
    note = (f"Sizes and modes as stored in the {stats['files']:,} image files (read from their headers), "
            f"{stats['distinct_sizes']:,} distinct sizes; the {len(stats['common_sizes'])} most common are listed.")
    return _section("Sizes and modes", f"<p>{_e(decoded)}</p><p class=muted>{_e(note)}</p>{spread}{modes}{common}",
                    "sizes")


def _bad_files(report: dict[str, Any], thumbs: _Thumbnails) -> str:
    bad, ignored = report["bad_files"], report.get("ignored_files", [])
    body = [f"<p>{len(bad):,} file(s) could not be decoded; training lists and skips them (with --strict it stops "
            "before training instead).</p>" if bad else "<p>Every image file was decoded.</p>"]
    if bad:
        tiles = [thumbs.tile(_split_of(path, report), path, f'<br><span class="reason">{_e(reason)}</span>',
                             missing="cannot be shown") for path, reason in bad[:MAX_TILES]]
        body.append(_tiles(tiles) + _more(len(bad), MAX_TILES, "unreadable files"))
        if len(bad) > MAX_TILES:
            body.append(_listing(bad, thumbs, f"All {len(bad):,} unreadable files", "bad-files"))
    if ignored:
        body.append(f"<p>{len(ignored):,} file(s) and folder(s) were ignored, each for the reason given (hidden, not "
                    "an image file extension, outside any class folder...):</p>")
        body.append(_listing(ignored, thumbs, "Ignored files", "ignored-files", opened=len(ignored) <= MAX_TILES))
    return _section("Unreadable and non-image files", "".join(body), "bad-files-section")


def _split_of(path: str, report: dict[str, Any]) -> str | None:
    """train/val/test from a bad file's place in an image folder (a bad file has no decoded tensor to look up)."""
    root = Path(report["dataset"]).expanduser()
    if report.get("kinds") is None or not Path(path).is_relative_to(root):
        return None  # a named dataset
    if list(report["splits"]) == ["train"]:
        return "train"  # root/<class>/...: one split
    first = Path(path).relative_to(root).parts[0].lower()
    return next((split for split, aliases in SPLIT_NAMES.items() if first in aliases), None)


def _listing(rows: list, thumbs: _Thumbnails, summary: str, table_id: str, opened: bool = False) -> str:
    table = _table(["path", "reason"], [[thumbs.short(path), reason] for path, reason in rows], table_id)
    return f"<details{' open' if opened else ''}><summary>{_e(summary)}</summary>{table}</details>"


def _duplicates(report: dict[str, Any], thumbs: _Thumbnails, key: str, title: str, section_id: str, how: str) -> str:
    groups = report[key]
    cross = [g for g in groups if g["cross_split"]]
    ordered = cross + [g for g in groups if not g["cross_split"]]  # leakage first: it inflates test accuracy
    what = "groups" if key == "exact_duplicates" else "pairs"
    body = [f"<p>{_e(how)}</p><p><b>{len(groups):,} {what[:-1] if len(groups) == 1 else what}, "
            f"{len(cross):,} of them across splits</b>"
            + (" (train/test leakage: the same image is trained on and tested on)." if cross else ".") + "</p>"]
    for group in ordered[:MAX_TILES]:
        members = group["images"]
        splits = list(dict.fromkeys(split for split, _ in members))
        label = (f"across splits: {' ↔ '.join(splits)}" if group["cross_split"] else f"within {splits[0]}")
        tiles = [thumbs.tile(split, name) for split, name in members[:MAX_GROUP_MEMBERS]]
        extra = (f'<p class="more">and {len(members) - MAX_GROUP_MEMBERS} more copies</p>'
                 if len(members) > MAX_GROUP_MEMBERS else "")
        body.append(f'<div class="group{" leak" if group["cross_split"] else ""}"><span class="label">{_e(label)}'
                    f"</span>{_tiles(tiles)}{extra}</div>")
    body.append(_more(len(groups), MAX_TILES, what))
    return _section(title, "".join(body), section_id)


def _odd_images(check: "DataCheck", thumbs: _Thumbnails) -> str:
    bad = {path for path, _ in check.report["bad_files"]}
    parts = []
    for kind, files in check.odd_images().items():
        if not files:
            continue
        tiles = []
        for split, path, facts in files[:MAX_TILES]:
            size = "x".join(map(str, facts["size"])) if facts.get("size") else "?"
            note = f"<br>{_e(facts.get('mode', '?'))} {_e(size)}" + (" · unreadable" if path in bad else "")
            tiles.append(thumbs.tile(split, path, note, missing="cannot be shown"))
        anchor, heading = ODD_TITLES.get(kind, (f"odd-{len(parts)}", kind))
        parts.append(f'<h3 id="{anchor}">{_e(heading)}: {len(files):,}</h3>'
                     + _tiles(tiles) + _more(len(files), MAX_TILES, "files of this kind"))
    if not parts:
        return _section("Odd images", "<p>No 16-bit, CMYK, transparent, EXIF-rotated or tiny images.</p>", "odd-images")
    body = ("<p class=muted>Each caption gives the mode and size stored in the file; the picture is what training "
            "sees after decoding.</p>" + "".join(parts))
    return _section("Odd images", body, "odd-images")
