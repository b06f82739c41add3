"""The original renderer's helpers in ``orrb.utils``: same names, same arguments, sensible
pictures of orrb's outputs."""

from __future__ import annotations

import logging

import numpy as np
import pytest

import orrb
from conftest import dactyl_config
from orrb import utils


@pytest.fixture(scope="module")
def rendered(dactyl_states):
    config = dactyl_config(camera_names=["vision_cam_top"], image_width=48, image_height=40, render_depth=True,
                           render_normals=True, render_segmentation=True)
    renderer = orrb.LocalRenderer(config)
    try:
        out = renderer.render_batch(utils.build_batch(dactyl_states[:2], 7))
        same = renderer.render_batch({"qpos": dactyl_states[:2], "seeds": [7, 8]})
    finally:
        utils.renderer_closer(renderer)
    return out, same, renderer


def test_build_batch_is_a_request_whose_entries_count_up_from_the_seed(rendered, dactyl_states):
    out, same, _ = rendered
    assert set(utils.build_batch(dactyl_states[:2], 7)) == {"qpos", "seed"}
    np.testing.assert_array_equal(out["vision_cam_top"], same["vision_cam_top"])


def test_renderer_closer_shuts_the_renderer_down(rendered, dactyl_states):
    _, _, renderer = rendered
    with pytest.raises(orrb.RendererError, match="after shutdown"):
        renderer.render_batch({"qpos": dactyl_states[:1], "seed": 0})
    utils.renderer_closer(renderer)  # again: shutdown is idempotent


@pytest.mark.parametrize("key,reader", [("vision_cam_top", utils.read_rgba_image),
                                        ("vision_cam_top_depth", utils.read_depth_image),
                                        ("vision_cam_top_normals", utils.read_normals_image),
                                        ("vision_cam_top_segmentation", utils.read_segmentation_image)])
def test_read_image_helpers_turn_raw_bytes_back_into_the_arrays(rendered, key, reader):
    image = rendered[0][key][0]
    back = reader(image.tobytes(), 48, 40)
    assert back.dtype == image.dtype
    np.testing.assert_array_equal(back, image)


def test_read_image_helpers_name_a_wrong_byte_count():
    with pytest.raises(ValueError, match="read_depth_image: 12 bytes do not make an image of shape"):
        utils.read_depth_image(bytes(12), 2, 2)
    with pytest.raises(ValueError, match="not a whole number of float32"):
        utils.read_normals_image(bytes(7), 1, 1)
    with pytest.raises(TypeError, match="expected raw image bytes"):
        utils.read_rgba_image(np.zeros((2, 2, 3), np.uint8), 2, 2)


def test_render_depth_draws_near_dark_far_bright_and_nothing_hit_white(rendered):
    depth = rendered[0]["vision_cam_top_depth"]
    picture = utils.render_depth(depth)
    assert picture.shape == (*depth.shape, 3) and picture.dtype == np.uint8
    hit = depth > 0
    near, far = np.unravel_index(np.argmin(np.where(hit, depth, np.inf)), depth.shape), \
        np.unravel_index(np.argmax(depth), depth.shape)
    assert picture[near][0] < picture[far][0]
    assert (picture[~hit] == 255).all()
    # a depth normalised to [0, 1], as the original's, is drawn as the original drew it
    np.testing.assert_array_equal(utils.render_depth(np.array([[0.5, 1.0]], np.float32))[..., 0], [[127, 255]])


def test_render_normals_and_segmentation_give_the_originals_colours(rendered):
    normals = rendered[0]["vision_cam_top_normals"]
    picture = utils.render_normals(normals)
    np.testing.assert_array_equal(picture, (normals * 255).astype(np.uint8))
    ids = np.array([[0, 1, 2, 3], [4, 5, 6, 7]], dtype=np.uint8)
    colours = utils.render_segmentation(ids)
    np.testing.assert_array_equal(colours[0], [[0, 0, 0], [255, 0, 0], [0, 255, 0], [255, 255, 0]])
    np.testing.assert_array_equal(colours[1], [[0, 0, 255], [255, 0, 255], [0, 255, 255], [255, 255, 255]])
    seg = rendered[0]["vision_cam_top_segmentation"]
    assert utils.render_segmentation(seg).shape == (*seg.shape, 3)
    with pytest.raises(TypeError, match="class ids must be integers"):
        utils.render_segmentation(np.zeros((2, 2), np.float32))


def test_setup_logging_logs_info_with_timestamps_and_the_mpi_rank(monkeypatch, capsys):
    root = logging.getLogger()
    saved = (root.level, list(root.handlers))
    try:
        monkeypatch.setenv("OMPI_COMM_WORLD_RANK", "3")
        monkeypatch.setenv("OMPI_COMM_WORLD_SIZE", "4")
        monkeypatch.delenv("DEBUG", raising=False)
        utils.setup_logging()
        logging.getLogger("orrb.test").info("hello")
        logging.getLogger("orrb.test").debug("hidden")
        err = capsys.readouterr().err
        assert " <3> INFO: hello" in err and "hidden" not in err
        assert root.level == logging.INFO
    finally:
        root.setLevel(saved[0])
        root.handlers[:] = saved[1]
