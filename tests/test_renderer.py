"""The response layout and the renderer contract (no GL context needed)."""

from __future__ import annotations

import numpy as np
import pytest

import orrb
from orrb.errors import RendererError
from orrb.renderer import Modality, Renderer, ResponseLayout

from conftest import dactyl_config


def test_layout_lists_cameras_times_enabled_modalities_then_streams():
    config = dactyl_config(camera_names=["vision_cam_left", "vision_cam_top"], render_depth=True,
                           render_segmentation=True, image_width=32, image_height=24)
    layout = ResponseLayout.from_config(config, {"tracker_cube_X_vision_cam_left": (np.float32, 2)})
    assert layout.keys() == ["vision_cam_left", "vision_cam_left_depth", "vision_cam_left_segmentation",
                             "vision_cam_top", "vision_cam_top_depth", "vision_cam_top_segmentation",
                             "tracker_cube_X_vision_cam_left"]
    assert layout["vision_cam_top_depth"].shape == (24, 32) and layout["vision_cam_top_depth"].dtype == np.float32
    assert layout["vision_cam_left"].shape == (24, 32, 3)
    assert layout["tracker_cube_X_vision_cam_left"].modality is Modality.STREAM
    assert layout.cameras == ["vision_cam_left", "vision_cam_top"]
    assert [o.key for o in layout.streams] == ["tracker_cube_X_vision_cam_left"]
    assert layout["vision_cam_left_depth"].dataset_name == "depth_vision_cam_left"
    assert layout["vision_cam_left"].dataset_name == "images_vision_cam_left"


def test_alpha_gives_four_colour_channels_and_a_matching_box():
    layout = ResponseLayout.from_config(dactyl_config(render_alpha=True, render_normals=True))
    box = layout["vision_cam_left"].space()
    assert box.shape == (64, 64, 4) and box.dtype == np.uint8 and box.high.max() == 255
    normals = layout["vision_cam_left_normals"].space()
    assert normals.dtype == np.float32 and normals.low.min() == 0.0 and normals.high.max() == 1.0
    assert set(layout.spaces()) == {o.key for o in layout.images}


def test_allocate_gives_arrays_that_pass_check():
    layout = ResponseLayout.from_config(dactyl_config(render_depth=True), {"s": (np.int32, 3)})
    arrays = layout.allocate(5)
    layout.check(arrays, 5)
    assert arrays["s"].dtype == np.int32 and arrays["s"].shape == (5, 3) and not arrays["s"].any()


@pytest.mark.parametrize("mutate, fragment", [
    (lambda a: a.pop("vision_cam_top_depth"), "'vision_cam_top_depth' is missing"),
    (lambda a: a.__setitem__("vision_cam_left", np.zeros((5, 64, 64, 3), np.float32)), "should be uint8 [5, 64, 64, 3], got float32"),
    (lambda a: a.__setitem__("vision_cam_left_depth", np.zeros((4, 64, 64), np.float32)), "got float32 [4, 64, 64]"),
])
def test_check_names_the_key_the_expected_and_the_received(mutate, fragment):
    layout = ResponseLayout.from_config(dactyl_config(render_depth=True))
    arrays = layout.allocate(5)
    mutate(arrays)
    with pytest.raises(RendererError, match=fragment.replace("[", r"\[").replace("]", r"\]")):
        layout.check(arrays, 5, where="shard 1")


def test_pictures_are_uint8_rgb_and_streams_are_not_pictures():
    layout = ResponseLayout.from_config(dactyl_config(render_depth=True, render_segmentation=True, render_normals=True),
                                        {"s": (np.float32, 2)})
    arrays = layout.allocate(2)
    for o in layout.images:
        arrays[o.key][...] = 0
        assert o.picture(arrays[o.key]).shape == (2, 64, 64, 3)
        assert o.picture(arrays[o.key]).dtype == np.uint8
    with pytest.raises(TypeError, match="stream"):
        layout["s"].picture(arrays["s"])


def test_unknown_key_and_camera_list_what_exists():
    layout = ResponseLayout.from_config(dactyl_config())
    with pytest.raises(KeyError, match="vision_cam_top"):
        layout["vision_cam_topp"]
    with pytest.raises(KeyError, match="cameras"):
        layout.for_camera("nope")


def test_local_and_remote_renderers_offer_the_whole_contract():
    import inspect

    members = [name for name in dir(Renderer) if not name.startswith("_")] + ["config", "__enter__", "__exit__"]
    config = dactyl_config()
    for renderer in (orrb.LocalRenderer(config), orrb.RemoteRenderer("contract", [[0, 1]], config)):
        missing = []
        for name in members:  # without evaluating properties, which would start the renderer
            try:
                inspect.getattr_static(renderer, name)
            except AttributeError:
                missing.append(name)
        assert not missing, f"{type(renderer).__name__} lacks {missing}"
        renderer.shutdown()
