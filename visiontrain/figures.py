"""Drawing primitives for every picture visiontrain writes: matplotlib figures rendered to PNG without pyplot, user
names drawn as text, and labelled image grids drawn with Pillow.

Figures are drawn on matplotlib's Agg canvas: no GUI backend, no global figure list to leak, safe inside a training
process. matplotlib and Pillow are imported inside the functions, so that importing this module costs nothing.
Used by the report (plots of a run folder), explain (Grad-CAM figures), lr-find and fit (the augmented batch).
"""
from __future__ import annotations

import io
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from ._io import atomic_write_bytes

if TYPE_CHECKING:
    import numpy as np
    import torch
    from matplotlib.figure import Figure


def new_figure(width: float, height: float) -> "Figure":
    """A matplotlib Figure on no canvas yet (constrained layout, 100 dpi); figure_png renders it."""
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=100, layout="constrained")


def literal(text: Any) -> str:
    """`text` drawn as written: matplotlib reads text between two `$` as math (a class or file named `$x$` would
    be typeset, and `$\\frac$` fails to draw at all), and `\\$` is its literal dollar. Every name that comes from
    a user (run, class, file and dataset names) goes through this before it is drawn."""
    return str(text).replace("$", r"\$")


def figure_png(figure: "Figure", metadata: dict[str, str] | None = None) -> bytes:
    """The figure as PNG bytes; `metadata`: text chunks to add (key: text)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(figure)  # attaches the Agg canvas: PNG rendering needs no display and no pyplot
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", metadata=metadata)
    return buffer.getvalue()


def save_png(figure: "Figure", path: Path) -> Path:
    atomic_write_bytes(path, figure_png(figure))  # a report being built never reads half a PNG
    return path


GRID_CELL = 112  # pixels of the longer image side in an image_grid cell
GRID_PAD, GRID_LINE, GRID_HEADING = 6, 14, 26  # pixels: around each cell, per caption line, of the heading


def image_grid(images: "torch.Tensor | np.ndarray", titles: Sequence[str], path: str | Path, ncols: int = 8, *,
               title: str | None = None, colors: Sequence[str | None] | None = None) -> Path:
    """Write a grid of images with a caption under each as a PNG.

    Drawn with Pillow, not matplotlib: a 32-image grid took ~2 s as matplotlib subplots (layout and one axis
    per image), several times a run, and takes ~60 ms as pasted tiles. Images are scaled to GRID_CELL pixels on
    their longer side, by whole multiples (nearest: a 28 px digit stays sharp) when smaller, else bilinear.

    Args:
        images: uint8 (N, C, H, W) with C 1 (shown in grey) or 3 (RGB), pixel values 0..255, not normalised; a
            torch tensor or a numpy array (predict draws ONNX predictions without torch).
        titles: N captions; may hold line breaks, e.g. "true: Coat\\npred: Shirt 0.91".
        path: the PNG to write (folders are created).
        ncols: images per row.
        title: an optional heading above the grid.
        colors: per image, a colour (a Pillow name or #rrggbb) for its caption and a frame around it, or None
            for a black caption and no frame (predict marks wrong predictions red).
    """
    import numpy as np
    from PIL import Image, ImageDraw, ImageFont

    images = images if isinstance(images, np.ndarray) else images.detach().cpu().numpy()  # a torch tensor
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1] not in (1, 3) or not len(images):
        raise ValueError(f"images must be a non-empty uint8 tensor (N, C, H, W) with C 1 or 3, got "
                         f"{images.dtype} {tuple(images.shape)}")
    colors = list(colors) if colors is not None else [None] * len(images)
    if len(colors) != len(images):
        raise ValueError(f"image_grid got {len(images)} images but {len(colors)} colors; give one per image")
    if len(titles) != len(images):
        raise ValueError(f"image_grid got {len(images)} images but {len(titles)} titles; give one title per image")
    columns = max(1, min(ncols, len(images)))
    rows = math.ceil(len(images) / columns)
    lines = max(title_text.count("\n") + 1 for title_text in titles)
    cell_width, cell_height = GRID_CELL + 2 * GRID_PAD, GRID_CELL + GRID_PAD + lines * GRID_LINE + GRID_PAD
    top = GRID_HEADING + (title.count("\n") * 16) if title else 0  # a heading may have line breaks too
    canvas = Image.new("RGB", (columns * cell_width, top + rows * cell_height), "white")
    draw = ImageDraw.Draw(canvas)
    font, heading_font = ImageFont.load_default(size=11), ImageFont.load_default(size=13)
    pixels = images.transpose(0, 2, 3, 1)  # (N, H, W, C) uint8
    height, width = pixels.shape[1:3]
    scale = GRID_CELL / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    factor = max(1, GRID_CELL // max(height, width))
    for index, (image, caption, colour) in enumerate(zip(pixels, titles, colors)):
        tile = Image.fromarray(np.ascontiguousarray(image[..., 0] if image.shape[-1] == 1 else image)).convert("RGB")
        tile = tile.resize((width * factor, height * factor), Image.NEAREST) if scale >= 1 else \
            tile.resize(size, Image.BILINEAR)
        row, column = divmod(index, columns)
        x, y = column * cell_width + GRID_PAD, top + row * cell_height + GRID_PAD
        canvas.paste(tile, (x + (GRID_CELL - tile.width) // 2, y + (GRID_CELL - tile.height) // 2))
        if colour is not None:  # a frame in the padding around the cell, so it never covers the image
            draw.rectangle((x - GRID_PAD + 1, y - GRID_PAD + 1, x + GRID_CELL + GRID_PAD - 2,
                            y + cell_height - GRID_PAD - 2), outline=colour, width=3)
        for number, line in enumerate(caption.split("\n")):
            draw.text((x + GRID_CELL // 2, y + GRID_CELL + 2 + number * GRID_LINE), line, fill=colour or "black",
                      font=font, anchor="ma")  # centred under the image
    if title:
        draw.multiline_text((canvas.width // 2, 6), title, fill="black", font=heading_font, anchor="ma",
                            align="center")
    buffer = io.BytesIO()
    canvas.save(buffer, format="PNG")
    atomic_write_bytes(Path(path), buffer.getvalue())  # a report being built never reads half a PNG
    return Path(path)
