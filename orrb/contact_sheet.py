"""Contact sheets: a grid of rendered images (and their modalities as pictures) in one image.

``contact_sheet(response, layout, ...)`` lays a response out as rows of cameras x
modalities and columns of batch entries, with a label on every row and column, and
returns ``uint8 [H, W, 3]``; ``save_png`` writes it. Used by ``orrb demo``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from orrb.renderer import ResponseLayout

__all__ = ["contact_sheet", "modality_images", "save_png"]

_BACKGROUND = 40  # dark grey between tiles
_TEXT = (235, 235, 235)
_LABELS = {"color": "colour", "depth": "depth", "normals": "normals", "segmentation": "segmentation"}


def modality_images(response: dict[str, np.ndarray], layout: ResponseLayout, camera: str
                    ) -> list[tuple[str, np.ndarray]]:
    """The pictures of one camera's outputs.

    Args:
        response: a render response (``[B, ...]`` arrays keyed as ``layout`` says).
        layout: the renderer's response layout (``renderer.layout``).
        camera: a camera of the layout.

    Returns:
        ``[(label, uint8 [B, H, W, 3]), ...]`` in the order colour, depth, normals,
        segmentation (those the layout has); an alpha channel is dropped.

    Raises:
        KeyError: the layout has no such camera (the message lists its cameras).
    """
    return [(_LABELS[o.modality.value], o.picture(response[o.key])) for o in layout.for_camera(camera)]


def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has one fixed-size bitmap font
        return ImageFont.load_default()


def _text_width(font, text: str, font_px: int) -> float:
    try:
        return font.getlength(text)
    except AttributeError:  # very old Pillow
        return len(text) * font_px * 0.62


def contact_sheet(
    response: dict[str, np.ndarray],
    layout: ResponseLayout,
    cameras: Sequence[str] | None = None,
    column_labels: Sequence[str] | None = None,
    title: str | None = None,
    gap: int = 4,
    tile_boxes: list | None = None,
) -> np.ndarray:
    """Lays out a response as one labelled picture.

    Rows: for every camera, its colour image and every modality present (depth,
    normals, segmentation); columns: the batch entries.

    Args:
        response: a render response (``render_batch``'s dict) with ``B`` entries.
        cameras: the cameras to show, top to bottom.
        column_labels: one label per entry (default ``"#i"``).
        title: a line of text above the grid.
        gap: pixels between tiles.
        tile_boxes: if given, a list that receives ``(row_label, entry, y, x, h, w)`` for
            every tile (where each picture sits in the sheet).

    Returns:
        ``uint8 [H, W, 3]``.
    """
    from PIL import Image, ImageDraw

    cameras = layout.cameras if cameras is None else cameras
    rows = [(f"{camera} {label}", pictures) for camera in cameras
            for label, pictures in modality_images(response, layout, camera)]
    b, h, w = rows[0][1].shape[:3]
    if column_labels is None:
        column_labels = [f"#{i}" for i in range(b)]
    if len(column_labels) != b:
        raise ValueError(f"contact_sheet: {len(column_labels)} column labels for {b} entries")
    font_px = max(10, min(16, h // 8))
    font = _font(font_px)
    label_w = int(max(_text_width(font, label, font_px) for label, _ in rows)) + 2 * gap
    head_h = font_px + 2 * gap + (font_px + gap if title else 0)
    sheet_h = head_h + len(rows) * (h + gap) + gap
    sheet_w = label_w + b * (w + gap) + gap

    sheet = np.full((sheet_h, sheet_w, 3), _BACKGROUND, np.uint8)
    for r, (_, pictures) in enumerate(rows):
        y = head_h + r * (h + gap)
        # one slice assignment per row: [B, h, w, 3] -> [h, B, w + gap, 3] strip
        strip = sheet[y:y + h, label_w:label_w + b * (w + gap)].reshape(h, b, w + gap, 3)
        strip[:, :, :w] = pictures.transpose(1, 0, 2, 3)
        if tile_boxes is not None:
            tile_boxes.extend((rows[r][0], i, y, label_w + i * (w + gap), h, w) for i in range(b))

    image = Image.fromarray(sheet)
    draw = ImageDraw.Draw(image)
    if title:
        draw.text((gap, gap), title, fill=_TEXT, font=font)
    y_cols = head_h - font_px - gap
    for i, label in enumerate(column_labels):
        draw.text((label_w + i * (w + gap), y_cols), label, fill=_TEXT, font=font)
    for r, (label, _) in enumerate(rows):
        draw.text((gap, head_h + r * (h + gap) + h // 2 - font_px // 2), label, fill=_TEXT, font=font)
    return np.asarray(image)


def save_png(image: np.ndarray, path: str | os.PathLike) -> str:
    """Writes ``uint8 [H, W, 3|4]`` or ``[H, W]`` as a PNG (parent folders created); returns the absolute path."""
    from PIL import Image

    path = os.path.abspath(os.fspath(path))
    parent = os.path.dirname(path)
    if parent:
        os.makedirs(parent, exist_ok=True)
    Image.fromarray(np.ascontiguousarray(image)).save(path)
    return path
