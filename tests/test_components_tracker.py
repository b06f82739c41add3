"""Tracker: the cube's emitted position and box match its segmentation mask at 200x200."""

from __future__ import annotations

import numpy as np
import pytest

import orrb
from orrb.config import ComponentSpec, RendererConfig

CAMS = ["vision_cam_left", "vision_cam_right", "vision_cam_top"]


@pytest.mark.parametrize("change", [None, "camera jitter", "cube scaled"])
def test_tracked_cube_matches_its_segmentation_mask(change, make_dactyl_config, dactyl_states):
    rc = RendererConfig()
    if change == "camera jitter":
        rc.components.append(ComponentSpec("CameraRandomizer", "cam", "", {}))
    elif change == "cube scaled":  # the box follows the sizes a component gives the geoms in the entry
        rc.components.append(ComponentSpec("TranslateRotateScale", "grow", "cube", {"scale": (1.6, 1.6, 1.6)}))
    # the hand hidden so that no finger occludes the cube (the mask is then the whole cube)
    rc.components.append(ComponentSpec("Hide", "hide", "", {"body_prefix": "robot0:"}))
    rc.components.append(ComponentSpec("Tracker", "t", "", {"camera_names": ",".join(CAMS),
                                                            "tracked_object_names": "cube:middle(primitive)",
                                                            "tracked_object_aliases": "cube"}))
    config = make_dactyl_config(image_width=200, image_height=200, render_segmentation=True)
    rng = np.random.default_rng(0)
    qpos = dactyl_states[rng.choice(len(dactyl_states), 20, replace=False)]
    with orrb.LocalRenderer(config, rc) as r:
        cube = r.class_names.index("cube")
        out = r.render_batch({"qpos": qpos, "seed": 1})
    for cam in CAMS:
        mask = out[f"{cam}_segmentation"] == cube
        pos = out[f"tracker_cube_X_{cam}"] * 200
        box = out[f"tracker_cube_X_{cam}_bbox"] * 200
        for i in range(len(qpos)):
            ys, xs = np.nonzero(mask[i])
            assert len(xs) > 50, (cam, i)
            centroid = np.array([xs.mean() + 0.5, ys.mean() + 0.5])
            # the mask's centroid weighs the faces in view: further from the centre on a bigger cube
            assert np.linalg.norm(pos[i] - centroid) < (3.0 if change == "cube scaled" else 2.0), (cam, i, pos[i],
                                                                                                    centroid)
            x0, x1, y0, y1 = box[i]
            m = [xs.min(), xs.max() + 1, ys.min(), ys.max() + 1]
            assert x0 <= m[0] + 1 and x1 >= m[1] - 1 and y0 <= m[2] + 1 and y1 >= m[3] - 1, (cam, i, box[i], m)
            assert m[0] - x0 <= 3 and x1 - m[1] <= 3 and m[2] - y0 <= 3 and y1 - m[3] <= 3, (cam, i, box[i], m)


def test_object_behind_the_camera_has_no_image_position(make_dactyl_config, dactyl_states):
    chain = orrb.RendererConfig()
    chain.add("TranslateRotateScale", "turn", path="vision_cam_left", rotate=(0.0, 0.0, 1.0, 0.0))  # looks away
    chain.add("Tracker", "t", camera_names="vision_cam_left,vision_cam_top", tracked_object_names="cube")
    with orrb.LocalRenderer(make_dactyl_config(render_segmentation=True), chain) as renderer:
        cube = renderer.class_names.index("cube")
        out = renderer.render_batch({"qpos": dactyl_states[:2], "seed": 0})
    assert not (out["vision_cam_left_segmentation"] == cube).any()
    assert np.isnan(out["tracker_cube_X_vision_cam_left"]).all()  # not mirrored into the image
    assert np.isnan(out["tracker_cube_X_vision_cam_left_bbox"]).all()
    assert np.isfinite(out["tracker_cube_X_vision_cam_top"]).all()  # the other camera still sees it


def test_tracker_without_cameras_emits_nothing_and_renders(make_dactyl_config, dactyl_states):
    chain = orrb.RendererConfig()
    chain.add("Tracker", "tracker", tracked_object_names="cube:middle(primitive)")
    with orrb.LocalRenderer(make_dactyl_config(), chain) as renderer:
        result = renderer.render_batch({"qpos": dactyl_states[:2], "seed": 0})
    assert not [k for k in result if k.startswith("tracker_")]
    assert result["vision_cam_left"].std() > 5
