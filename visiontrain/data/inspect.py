"""`visiontrain data`: what is in a dataset before any training: counts, bad files, kinds, duplicates.

Exact duplicates are images whose decoded pixels are identical (SHA-256 of the pixels, so a re-saved PNG of the
same image counts). Near duplicates (re-encoded JPEGs, small edits) share a 64-bit difference hash (dHash) of a
9x8 grayscale thumbnail and differ on average by at most 5% of their mean brightness. Only images whose hashes are equal or
one bit apart are compared, which keeps the check close to linear in the number of images; a copy edited enough
to move its hash by two bits or more is not found.
"""
from __future__ import annotations

import hashlib
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from ..config import Config
from .dataset import load_dataset
from .decode import DecodePolicy, is_dicom
from .folder import scan_folder
from .registry import DATASETS
from .tensors import ImageTensors, imbalance_ratio


def dhash(image: torch.Tensor) -> int:
    """64-bit difference hash of a uint8 (C, H, W) image."""
    gray = image.float().mean(0, keepdim=True)[None]  # (1, 1, H, W)
    small = torch.nn.functional.interpolate(gray, size=(8, 9), mode="area")[0, 0]  # (8, 9)
    bits = (small[:, 1:] > small[:, :-1]).flatten().tolist()
    return sum(1 << i for i, bit in enumerate(bits) if bit)


def pixel_hash(image: torch.Tensor) -> str:
    return hashlib.sha256(memoryview(image.contiguous().numpy()).cast("B")).hexdigest()


def probe_file(path: Path) -> dict[str, Any]:
    """Header facts of an image file without decoding it: mode, size, EXIF orientation (DICOM: modality too)."""
    from PIL import Image

    if is_dicom(path):
        return probe_dicom(path)
    try:
        with Image.open(path) as image:
            orientation = image.getexif().get(0x0112, 1) if hasattr(image, "getexif") else 1
            return {"mode": image.mode, "size": image.size, "exif_rotated": orientation not in (None, 1),
                    "alpha": image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info}
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):  # the decode lists the file as bad
        return {}


def inspect_dataset(dataset: str, *, data_dir: str | None = None) -> dict[str, Any]:
    """The data check of a named dataset or an image folder (bad files are listed, never fatal here)."""
    return check_dataset(dataset, data_dir=data_dir).report


# The kinds of image worth a look (keys as in report["kinds"]), decided from probe_file's header facts.
ODD_KINDS: dict[str, Callable[[dict[str, Any]], bool]] = {
    "16-bit": lambda facts: str(facts.get("mode", "")).startswith("I"),
    "cmyk": lambda facts: facts.get("mode") == "CMYK",
    "with alpha": lambda facts: bool(facts.get("alpha")),
    "exif rotated": lambda facts: bool(facts.get("exif_rotated")),
    "tiny (< 32 px)": lambda facts: bool(facts.get("size")) and min(facts["size"]) < 32,
}


@dataclass
class DataCheck:
    """What `visiontrain data` found (`report`, as inspect_dataset returns it) and what it found it in: the decoded
    splits and, for an image folder, every image file as (split, path) with its header facts from probe_file."""

    report: dict[str, Any]
    splits: dict[str, ImageTensors]
    files: list[tuple[str, str]] = field(default_factory=list)
    probes: list[dict[str, Any]] = field(default_factory=list)

    def odd_images(self) -> dict[str, list[tuple[str, str, dict[str, Any]]]]:
        """(split, path, header facts) of the files of each kind in ODD_KINDS, in folder order."""
        return {kind: [(split, path, facts) for (split, path), facts in zip(self.files, self.probes) if test(facts)]
                for kind, test in ODD_KINDS.items()}


def size_stats(splits: dict[str, ImageTensors], probes: list[dict[str, Any]]) -> dict[str, Any]:
    """How many images were decoded; for image files also their modes and their sizes as stored (width x height)."""
    stats: dict[str, Any] = {"images": sum(len(split) for split in splits.values())}
    sizes = Counter(tuple(facts["size"]) for facts in probes if facts.get("size"))
    if sizes:
        widths, heights = sorted(w for w, _ in sizes.elements()), sorted(h for _, h in sizes.elements())
        modes = Counter(facts["mode"] for facts in probes if facts.get("mode"))
        stats |= {"files": len(probes), "modes": dict(modes.most_common()), "distinct_sizes": len(sizes),
                  "common_sizes": [[f"{w}x{h}", n] for (w, h), n in sizes.most_common(10)],
                  "width": {"min": widths[0], "median": widths[len(widths) // 2], "max": widths[-1]},
                  "height": {"min": heights[0], "median": heights[len(heights) // 2], "max": heights[-1]}}
    return stats


def check_dataset(dataset: str, *, data_dir: str | None = None) -> DataCheck:
    """inspect_dataset's report together with the decoded splits and the per-file header facts it came from
    (data_report.html draws its thumbnails from these tensors: nothing is decoded a second time)."""
    data = load_dataset(dataset, data_dir=data_dir, val_fraction=0.0, skip_bad=True, verbose=False,
                        policy=DecodePolicy(), lenient=True)  # every problem reported, none refused
    splits = {name: split for name, split in (("train", data.train), ("val", data.val), ("test", data.test)) if split is not None}
    report: dict[str, Any] = {"dataset": dataset, "classes": data.classes, "splits": {}, "bad_files": data.bad_files,
                              "image_size": data.image_size, "channels": data.in_channels}
    for name, split in splits.items():
        counts = torch.bincount(split.labels, minlength=len(data.classes)).tolist()
        report["splits"][name] = {"images": len(split), "per_class": dict(zip(data.classes, counts)),
                                  "imbalance_ratio": imbalance_ratio(counts)}
    report["exact_duplicates"], report["near_duplicates"] = _duplicates(splits)
    report["problems"] = data.problems + data.warnings  # empty class folders, classes a split lacks, link loops...
    files: list[tuple[str, str]] = []  # (split, path) of every image file of a folder, in scan order
    probes: list[dict[str, Any]] = []
    if dataset not in _names():
        scan = scan_folder(Path(dataset), lenient=True)
        report["ignored_files"] = scan.ignored
        files = [(split, str(p)) for split, items in scan.splits.items() for p, _ in items]
        probes = [probe_file(Path(p)) for _, p in files]
        report["kinds"] = _kinds(probes)
        report["dicom"] = _dicom_stats(probes)
    report["sizes"] = size_stats(splits, probes)
    return DataCheck(report, splits, files, probes)


def probe_dicom(path: Path) -> dict[str, Any]:
    """A DICOM file's header (pixels not read): size, modality, whether it carries its own window."""
    facts: dict[str, Any] = {"mode": "DICOM", "dicom": True, "modality": "unknown"}
    try:
        import pydicom

        ds = pydicom.dcmread(path, force=True, stop_before_pixels=True)
        facts |= {"size": (int(ds.get("Columns") or 0), int(ds.get("Rows") or 0)),
                  "modality": str(ds.get("Modality") or "unknown").strip() or "unknown",
                  "own_window": "WindowCenter" in ds and "WindowWidth" in ds}
    except Exception:  # noqa: BLE001 - no pydicom, or an unreadable header: the decode lists the file as bad
        pass
    return facts


def _dicom_stats(probes: list[dict]) -> dict[str, Any]:
    dicom = [p for p in probes if p.get("dicom")]
    return {"files": len(dicom), "modalities": dict(Counter(p["modality"] for p in dicom).most_common()),
            "with own window": sum(1 for p in dicom if p.get("own_window"))}


def _names() -> list[str]:
    return DATASETS.names()


def _kinds(probes: list[dict]) -> dict[str, int]:
    modes = Counter(p.get("mode") for p in probes if p)
    return {"grayscale": sum(v for m, v in modes.items() if m in ("L", "1", "LA")),
            "16-bit": sum(v for m, v in modes.items() if m and m.startswith("I")),
            "cmyk": modes.get("CMYK", 0), "palette": modes.get("P", 0), "rgb": modes.get("RGB", 0),
            "dicom": modes.get("DICOM", 0),
            "with alpha": sum(1 for p in probes if p.get("alpha")),
            "exif rotated": sum(1 for p in probes if p.get("exif_rotated")),
            "tiny (< 32 px)": sum(1 for p in probes if p.get("size") and min(p["size"]) < 32)}


def _duplicates(splits: dict, tolerance: float = 0.05) -> tuple[list[dict], list[dict]]:
    """Exact groups (identical pixels) and near pairs (same dHash, mean |difference| <= 5% of the mean brightness).

    The pixel check confirms each dHash match: on small images such as 28x28 clothing, many different items
    share a dHash, so the hash alone would report thousands of false pairs. The tolerance is relative to the
    brightness because digits on black differ in few pixels: an absolute one would pair every thin '1'.
    """
    by_pixels: dict[str, list[tuple[str, str]]] = defaultdict(list)
    by_dhash: dict[int, list[tuple[str, int, str]]] = defaultdict(list)
    for name, split in splits.items():
        for index in range(len(split)):
            image = split.images[index]
            digest = pixel_hash(image)
            by_pixels[digest].append((name, split.name_of(index)))
            by_dhash[dhash(image)].append((name, index, digest))
    exact = [{"images": members, "cross_split": len({s for s, _ in members}) > 1}
             for members in by_pixels.values() if len(members) > 1]
    near = []
    for code, members in by_dhash.items():
        # candidates: the same hash, or one bit away (JPEG re-encoding flips a bit of the hash about one time in four)
        others = [m for bit in range(64) if (neighbour := code ^ (1 << bit)) > code for m in by_dhash.get(neighbour, [])]
        pairs = [(a, b) for i, a in enumerate(members) for b in members[i + 1:]] + [(a, b) for a in members for b in others]
        if len(members) > 200:  # a bucket of blank or near-uniform images: no signal in the hash
            continue
        for (split_a, index_a, digest_a), (split_b, index_b, digest_b) in pairs:
            if digest_a == digest_b:
                continue
            a, b = splits[split_a].images[index_a].float(), splits[split_b].images[index_b].float()
            if a.shape == b.shape and (a - b).abs().mean() <= tolerance * max(a.mean(), b.mean()):
                near.append({"images": [(split_a, splits[split_a].name_of(index_a)),
                                        (split_b, splits[split_b].name_of(index_b))],
                             "cross_split": split_a != split_b})
    return exact, near


def problem_count(report: dict[str, Any]) -> int:
    """What `visiontrain data` found that needs a look: folder problems (empty class folders, classes a split lacks,
    link loops...), unreadable files and duplicate groups. Ignored files and odd kinds of image are not problems."""
    return (len(report.get("problems", [])) + len(report["bad_files"]) + len(report["exact_duplicates"])
            + len(report["near_duplicates"]))


def format_report(report: dict[str, Any]) -> str:
    lines = [f"dataset {report['dataset']}: {len(report['classes'])} classes, images {report['channels']}x"
             f"{report['image_size']}x{report['image_size']}"]
    width = max(10, *(len(c) for c in report["classes"]))
    splits = list(report["splits"])
    lines.append(f"{'class':<{width}} " + " ".join(f"{s:>8}" for s in splits))
    for name in report["classes"]:
        lines.append(f"{name:<{width}} " + " ".join(f"{report['splits'][s]['per_class'][name]:>8}" for s in splits))
    lines.append(f"{'total':<{width}} " + " ".join(f"{report['splits'][s]['images']:>8}" for s in splits))
    for split in splits:
        ratio = report["splits"][split]["imbalance_ratio"]
        lines.append(f"{split}: imbalance ratio (largest / smallest class) {ratio:.2f}" if ratio else f"{split}: empty")
        if split == "train" and ratio and ratio > Config.imbalance_threshold:
            lines.append(f"  above {Config.imbalance_threshold:g} (--imbalance-threshold): training keeps the best "
                         "epoch by val balanced accuracy; --class-weights auto or --sampler balanced can help")
    if report.get("kinds"):
        lines.append("kinds: " + ", ".join(f"{k} {v}" for k, v in report["kinds"].items() if v))
    if report.get("dicom", {}).get("files"):
        dicom = report["dicom"]
        lines.append(f"DICOM: {dicom['files']} files, modalities " +
                     ", ".join(f"{m} {n}" for m, n in dicom["modalities"].items()) +
                     f"; {dicom['with own window']} carry their own window (WindowCenter/WindowWidth)")
    for problem in report.get("problems", []):
        lines.append(f"problem: {problem}")
    lines.append(f"unreadable files: {len(report['bad_files'])}")
    lines += [f"  {path}: {reason}" for path, reason in report["bad_files"]]
    ignored = report.get("ignored_files", [])
    for path, reason in ignored[:20]:
        lines.append(f"  ignored {path}: {reason}")
    if len(ignored) > 20:
        lines.append(f"  ignored {len(ignored) - 20} more (every one is in data_report.html and --json)")
    for label, key in (("exact duplicates (identical pixels)", "exact_duplicates"),
                       ("near duplicates (dHash within 1 bit, mean difference <= 5% of brightness)", "near_duplicates")):
        groups = report[key]
        cross = [g for g in groups if g["cross_split"]]
        lines.append(f"{label}: {len(groups)} groups, {len(cross)} across splits (train/test leakage)")
        for group in (cross or groups)[:10]:  # leakage first: it inflates test accuracy
            lines.append("  " + "  =  ".join(f"{s}:{n}" for s, n in group["images"][:4]))
    found = problem_count(report)
    lines.append(f"problems: {found}" if found else "problems: none (exit status 0)")
    if found:
        lines[-1] += " (exit status 1): " + ", ".join(f"{n} {what}" for n, what in (
            (len(report.get("problems", [])), "about the folder"), (len(report["bad_files"]), "unreadable files"),
            (len(report["exact_duplicates"]), "exact duplicate groups"),
            (len(report["near_duplicates"]), "near duplicate pairs")) if n)
    return "\n".join(lines)
