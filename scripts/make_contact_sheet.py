"""Renders a contact sheet of randomized Dactyl images: ``docs/randomization.png``.

Rows are seeds (16), columns the three cameras; 200x200 each, with the shipped
``dactyl.renderer_config.json``. Usage: ``python scripts/make_contact_sheet.py [--out PNG] [--config JSON]``.
"""

from __future__ import annotations

import argparse

import numpy as np
from PIL import Image

import orrb

CAMERAS = ["vision_cam_left", "vision_cam_right", "vision_cam_top"]


def contact_sheet(renderer_config: str = "dactyl.renderer_config.json", seeds: int = 16, size: int = 200,
                  columns_per_row: int = 2) -> np.ndarray:
    """``uint8 [rows * size, cols * size, 3]``: seeds laid out ``columns_per_row`` per row, each 3 cameras wide."""
    assets = orrb.utils.package_relative_path("assets")
    cfg = orrb.RemoteRendererConfig(camera_names=CAMERAS, image_width=size, image_height=size,
                                    model_xml_path="dactyl.xml", model_mapping_path="dactyl.mapping",
                                    renderer_config_path=renderer_config, asset_basedir=assets)
    qpos = np.loadtxt(f"{assets}/states/qpos.csv", delimiter=",")[:seeds]
    with orrb.LocalRenderer(cfg) as r:
        res = r.render_batch({"qpos": qpos, "seed": 0})
    tiles = np.concatenate([res[c] for c in CAMERAS], axis=2)  # [S, size, 3*size, 3]
    rows = [np.concatenate(list(tiles[i:i + columns_per_row]), axis=1) for i in range(0, seeds, columns_per_row)]
    return np.concatenate(rows, axis=0)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="docs/randomization.png", help="PNG to write (default docs/randomization.png)")
    parser.add_argument("--config", default="dactyl.renderer_config.json",
                        help="renderer config, relative to assets/ or absolute (default dactyl.renderer_config.json)")
    args = parser.parse_args()
    Image.fromarray(contact_sheet(args.config)).save(args.out)
    print(args.out)
