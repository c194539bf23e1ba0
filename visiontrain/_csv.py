"""CSV files that people open in spreadsheets, written so that no cell is run as a formula (CSV injection).

Excel, LibreOffice and Google Sheets treat a cell that begins with `=`, `+`, `-` or `@` (or a tab or a carriage
return) as a formula, and a class folder or a file can be named `=HYPERLINK(...)`. As OWASP advises, such a cell
is written with a single quote in front (`'=1+2`), which spreadsheets show as text and do not evaluate; the csv
module quotes what needs quoting. Every CSV file visiontrain writes with names in it goes through `csv_text`:
eval's per_class.csv, confusion_matrix.csv and predictions.csv, predict --format csv and the split files.

The guard is undone exactly by `unguard` (visiontrain reads its split files back): a cell that already begins with
quotes followed by one of those characters gets one more quote, so unguard(guard(x)) == x for every text x.
"""
from __future__ import annotations

import csv
import io
from typing import Any, Iterable, Sequence

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def guard(cell: Any) -> Any:
    """`cell` with a leading quote if a spreadsheet would read it as a formula; numbers and other text unchanged."""
    if isinstance(cell, str) and cell.lstrip("'")[:1] in FORMULA_START and cell.lstrip("'"):
        return "'" + cell
    return cell


def unguard(cell: str) -> str:
    """The text `guard` was given."""
    if cell.startswith("'") and cell.lstrip("'")[:1] in FORMULA_START and cell.lstrip("'"):
        return cell[1:]
    return cell


def csv_text(header: Sequence[Any], rows: Iterable[Sequence[Any]]) -> str:
    """A CSV file's text, every text cell guarded. Lines end in CRLF (RFC 4180): with '\\n' alone the csv module
    would not quote a cell holding a bare carriage return (a file name can), and reading it back would split it."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow([guard(cell) for cell in header])
    writer.writerows([guard(cell) for cell in row] for row in rows)
    return buffer.getvalue()
