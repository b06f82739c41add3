"""Contact sheets: a grid of rendered images (and their modalities as pictures) in one image.

``contact_sheet(response, cameras, ...)`` lays a response out as rows of cameras x
modalities and columns of batch entries, with a label on every row and column, and
returns ``uint8 [H, W, 3]``; ``save_png`` writes it. Used by ``orrb demo``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from orrb.utils import depth_to_image, normals_to_image, segmentation_to_image

__all__ = ["MODALITIES", "contact_sheet", "modality_images", "save_png"]

# response key suffix -> row label, in display order
MODALITIES = {"": "colour", "_depth": "depth", "_normals": "normals", "_segmentation": "segmentation"}

_BACKGROUND = 40  # dark grey between tiles
_TEXT = (235, 235, 235)


def modality_images(response: dict[str, np.ndarray], camera: str) -> list[tuple[str, np.ndarray]]:
    """The pictures of one camera's modalities present in ``response``.

    Args:
        response: a render response (``render_batch``'s dict: ``<camera>`` uint8 ``[B, H, W, 3|4]``,
            ``<camera>_depth``, ``<camera>_normals``, ``<camera>_segmentation`` when rendered).
        camera: a camera name of the response.

    Returns:
        ``[(label, uint8 [B, H, W, 3]), ...]`` in the order colour, depth, normals,
        segmentation (only those present); an alpha channel is dropped.

    Raises:
        KeyError: the response has no colour images for ``camera``.
    """
    if camera not in response:
        cameras = sorted(k for k in response if isinstance(response[k], np.ndarray) and response[k].ndim == 4
                         and not k.endswith("_normals"))
        raise KeyError(f"the response has no images for camera {camera!r}; cameras in it: {cameras}")
    out = []
    for suffix, label in MODALITIES.items():
        key = camera + suffix
        if key not in response:
            continue
        value = response[key]
        if suffix == "":
            picture = np.asarray(value)[..., :3]
        elif suffix == "_depth":
            picture = depth_to_image(value)
        elif suffix == "_normals":
            picture = normals_to_image(value)
        else:
            picture = segmentation_to_image(value)
        out.append((label, picture))
    return out


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
    cameras: Sequence[str],
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

    rows = [(f"{camera} {label}", pictures) for camera in cameras for label, pictures in modality_images(response, camera)]
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
