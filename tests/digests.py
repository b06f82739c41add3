"""Digests of every output array of a fixed set of batches: refactors must leave them unchanged.

``python tests/digests.py --write`` records ``tests/data/output_digests.json``;
``tests/test_output_digests.py`` renders the same batches and compares. A change that is
meant to alter pixels (a new scene, a new component behaviour) rewrites the file in the
same commit and says why.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys

import numpy as np

import orrb

DIGEST_FILE = os.path.join(os.path.dirname(__file__), "data", "output_digests.json")
CAMERAS = ["vision_cam_left", "vision_cam_right", "vision_cam_top"]
CONFIGS = [None, "dactyl.renderer_config.json", "gym.renderer_config.json",
           "heldout.renderer_config.json", "demo_keras.renderer_config.json"]


def config_for(renderer_config_path: str | None) -> orrb.RemoteRendererConfig:
    config = orrb.RemoteRendererConfig()
    config.camera_names = list(CAMERAS)
    config.image_width = config.image_height = 48
    config.model_xml_path = "dactyl.xml"
    config.model_mapping_path = "dactyl.mapping"
    if renderer_config_path:
        config.renderer_config_path = renderer_config_path
    config.asset_basedir = orrb.utils.package_relative_path("assets")
    config.render_depth = config.render_normals = config.render_segmentation = True
    return config


def batch() -> dict:
    qpos = np.loadtxt(orrb.utils.package_relative_path("assets/states/qpos.csv"), delimiter=",")
    return {"qpos": qpos[:5], "seeds": np.array([3, 11, 12, 40, 7])}


def digest(array: np.ndarray) -> str:
    array = np.ascontiguousarray(array)
    h = hashlib.sha256()
    h.update(f"{array.dtype.str}{array.shape}".encode())
    h.update(array.tobytes())
    return h.hexdigest()[:24]


def digests(response: dict) -> dict[str, str]:
    return {key: digest(value) for key, value in sorted(response.items())
            if key not in ("qpos", "seeds", "seed")}


def render_local(renderer_config_path: str | None) -> dict[str, str]:
    with orrb.LocalRenderer(config_for(renderer_config_path)) as renderer:
        return digests(renderer.render_batch(batch()))


def render_pool(renderer_config_path: str | None, base_port: int) -> dict[str, str]:
    servers = orrb.utils.build_server_configs(1, 2, base_port)
    with orrb.RemoteRenderer("digests", servers, config_for(renderer_config_path)) as renderer:
        return digests(renderer.render_batch(batch()))


def compute() -> dict[str, dict[str, str]]:
    return {str(path): render_local(path) for path in CONFIGS}


if __name__ == "__main__":
    result = compute()
    if "--write" in sys.argv:
        os.makedirs(os.path.dirname(DIGEST_FILE), exist_ok=True)
        with open(DIGEST_FILE, "w") as f:
            json.dump(result, f, indent=1, sort_keys=True)
        print(f"wrote {DIGEST_FILE}: {sum(len(v) for v in result.values())} arrays")
    else:
        print(json.dumps(result, indent=1, sort_keys=True))
