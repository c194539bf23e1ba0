"""Class display names: a file that maps class folder names (such as ImageNet's wnids) to names people read.

Formats, told apart by the file's suffix and then by its first entry:
- ImageNet's LOC_synset_mapping.txt: `n01440764 tench, Tinca tinca` (key = first token, name = up to the first comma);
- a two-column TSV or CSV: `key<TAB>name` / `key,name` (a .csv/.tsv file is always read as such);
- a JSON object: {"n01440764": "tench"}, or torchvision's imagenet_class_index.json: {"0": ["n01440764", "tench"]}.
Blank lines and lines starting with '#' are skipped in the text formats. A malformed file is one DataError naming the
file and line. Folder names stay the identity of a class (splits, split files and the cache match by them); only
the class list a run shows and records is renamed (data/dataset.load_dataset, after the splits are built).
"""
from __future__ import annotations

import csv
import json
import re
from pathlib import Path

from ..errors import DataError

SHOWN = 5  # missing folder names quoted in the warning; the rest are counted
_LOC_LINE = re.compile(r"(\S+)\s+(.+)")  # key, whitespace, text


def read_class_names(path: str | Path) -> dict[str, str]:
    """{folder name: display name} from a class names file; DataError naming the file (and line) if malformed."""
    path = Path(path).expanduser()
    where = f"the class names file {path}"
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise DataError(f"{where} cannot be read ({error.strerror or error})") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = raw[:error.start].count(b"\n") + 1
        raise DataError(f"{where}, line {line}: not UTF-8 text; save it as UTF-8") from None
    suffix = path.suffix.lower()
    if suffix == ".json" or (suffix not in (".csv", ".tsv") and text.lstrip().startswith(("{", "["))):
        mapping = _read_json(text, where)
    else:
        mapping = _read_text(text, where, suffix)
    if not mapping:
        raise DataError(f"{where} maps no class; expected lines such as 'n01440764 tench, Tinca tinca', "
                        "'n01440764,tench' or a JSON object")
    for key, name in mapping.items():  # JSON's \ud800 escapes decode to lone surrogates, which are not text
        for text in (key, name):
            try:
                text.encode("utf-8")
            except UnicodeEncodeError:
                raise DataError(f"{where}: {ascii(text)} is not text (it holds a lone surrogate, an escape such as "
                                "\\ud800 that no character has); fix that entry") from None
    return mapping


def _read_json(text: str, where: str) -> dict[str, str]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise DataError(f"{where}, line {error.lineno}: not valid JSON ({error.msg})") from None
    if not isinstance(data, dict):
        raise DataError(f"{where}, line 1: expected a JSON object such as {{\"n01440764\": \"tench\"}} or "
                        "{\"0\": [\"n01440764\", \"tench\"]}")
    mapping: dict[str, str] = {}
    for key, value in data.items():
        if isinstance(value, list) and len(value) == 2 and all(isinstance(v, str) and v.strip() for v in value):
            key, value = value  # torchvision's imagenet_class_index.json: {"0": ["n01440764", "tench"]}
        if not isinstance(value, str) or not value.strip() or not key.strip():
            line = text[:max(0, text.find(json.dumps(key)))].count("\n") + 1
            raise DataError(f"{where}, line {line}: the entry {key!r} is not a name or a [folder, name] pair; expected "
                            "{\"n01440764\": \"tench\"} or {\"0\": [\"n01440764\", \"tench\"]}")
        key = key.strip()
        if key in mapping:
            raise DataError(f"{where} names the class {key!r} twice; each folder needs one name")
        mapping[key] = value.strip()
    return mapping


def _read_text(text: str, where: str, suffix: str) -> dict[str, str]:
    lines = [(number, line) for number, line in enumerate(text.splitlines(), start=1)
             if line.strip() and not line.lstrip().startswith("#")]
    if not lines:
        return {}
    first = lines[0][1]
    if suffix == ".tsv" or (suffix != ".csv" and "\t" in first):
        kind = "tsv"
    elif suffix == ".csv" or "," in first.split(maxsplit=1)[0]:  # 'n01,tench' or 'n01, tench': CSV
        kind = "csv"
    else:
        kind = "loc"
    mapping: dict[str, str] = {}
    seen: dict[str, int] = {}
    for number, line in lines:
        if kind == "loc":
            match = _LOC_LINE.fullmatch(line.strip())
            key, name = (match.group(1), match.group(2).split(",")[0].strip()) if match else ("", "")
            expected = "a folder name, a space and a name, as in 'n01440764 tench, Tinca tinca'"
        else:
            try:
                row = next(csv.reader([line], delimiter="\t" if kind == "tsv" else ",", skipinitialspace=True))
            except csv.Error as error:
                raise DataError(f"{where}, line {number}: {error}") from None
            key, name = (row[0].strip(), row[1].strip()) if len(row) == 2 else ("", "")
            expected = (f"two columns (folder name, name) separated by {'a tab' if kind == 'tsv' else 'a comma'}, "
                        f"found {len(row)}")
        if not key or not name:
            raise DataError(f"{where}, line {number}: expected {expected}")
        if key in seen:
            raise DataError(f"{where}, line {number}: the class {key!r} is named again (first on line {seen[key]}); "
                            "each folder needs one name")
        seen[key] = number
        mapping[key] = name
    return mapping


def display_names(classes: list[str], mapping: dict[str, str], path: str | Path) -> tuple[list[str], list[str]]:
    """(display names, warnings) of `classes` (folder names, index = label) under `mapping`.

    Folders the file does not name keep their folder name (one warning: the count and the first few). Names that
    two folders share get the folder name appended, 'crane (n02012849)', so every display name is distinct.
    """
    names = [mapping.get(folder, folder) for folder in classes]
    counts: dict[str, int] = {}
    for name in names:
        counts[name] = counts.get(name, 0) + 1
    names = [f"{name} ({folder})" if counts[name] > 1 and name != folder else name
             for name, folder in zip(names, classes)]
    if len(set(names)) != len(names):  # only if the file itself names a class 'crane (n02012849)': folders are unique
        repeated = {name for name in names if names.count(name) > 1}
        names = [folder if name in repeated else name for name, folder in zip(names, classes)]
    missing = [folder for folder in classes if folder not in mapping]
    warnings = []
    if missing:
        shown = ", ".join(missing[:SHOWN]) + (f" and {len(missing) - SHOWN} more" if len(missing) > SHOWN else "")
        warnings.append(f"{len(missing)} of {len(classes)} class folder(s) are not in the class names file "
                        f"{Path(path).expanduser()} and keep their folder name: {shown}")
    return names, warnings
