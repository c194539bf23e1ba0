"""DICOM and 16-bit windows as config values: "LEVEL,WIDTH" or a named preset (data/decode.py applies them).

Parsed here, below the data layer, because the config checks `--window` before any file is read.
"""
from __future__ import annotations

import math

# Named windows (level, width) in Hounsfield units, the usual CT reading settings.
WINDOW_PRESETS = {"soft-tissue": (40.0, 400.0), "lung": (-600.0, 1500.0), "bone": (400.0, 1800.0),
                  "brain": (40.0, 80.0)}


def parse_window(text: str) -> tuple[float, float]:
    """(level, width) of "LEVEL,WIDTH" (numbers, width > 0) or of a preset name; ValueError in one sentence."""
    name = str(text).strip().lower()
    if name in WINDOW_PRESETS:
        return WINDOW_PRESETS[name]
    try:
        level, width = (float(part) for part in name.split(","))
    except ValueError:
        level = width = math.nan
    if not (math.isfinite(level) and math.isfinite(width) and width > 0):
        presets = ", ".join(f"{k} ({v[0]:g},{v[1]:g})" for k, v in WINDOW_PRESETS.items())
        raise ValueError(f"{text!r} is not a window; use \"LEVEL,WIDTH\" (two numbers, width > 0, e.g. 40,400: "
                         f"Hounsfield units for CT, raw values for 16-bit PNG/TIFF) or a preset: {presets}")
    return level, width


def split_windows(text: str) -> list[str]:
    """Several windows in one comma-separated text (a sweep axis): numbers pair up, preset names stand alone.

    "lung,40,400" -> ["lung", "40,400"]; "40,400" -> ["40,400"] (one window, not two values).
    """
    tokens, windows = [token.strip() for token in str(text).split(",")], []
    while tokens:
        token = tokens.pop(0)
        windows.append(token if token.lower() in WINDOW_PRESETS or not tokens else f"{token},{tokens.pop(0)}")
    return windows


def format_window(level: float, width: float) -> str:
    """The canonical "LEVEL,WIDTH" text (recorded in the decode policy; exact for every float)."""
    return ",".join(str(int(v)) if float(v).is_integer() and abs(v) < 1e15 else repr(float(v)) for v in (level, width))
