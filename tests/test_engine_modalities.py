"""The engine's modality maths on synthetic arrays (no GL context): depth in metres, normals, segmentation classes."""

from __future__ import annotations

import numpy as np

from orrb.engine.modalities import alpha_from_depth, classes_from_ids, linear_depth, normals_from_depth


def _reversed_z(metres: np.ndarray, near: float, far: float) -> np.ndarray:
    """What a reversed-Z float depth buffer holds for ``metres`` (1 at the near plane, 0 at the far one)."""
    return (far * near / (far - near) / metres - near / (far - near)).astype(np.float32)


def test_linear_depth_recovers_metres_between_the_clip_planes_and_zero_where_nothing_was_hit():
    znear, zfar, extent = 0.01, 50.0, 2.0  # vis.map values in units of the extent
    near, far = znear * extent, zfar * extent
    metres = np.array([[near, 0.5, 1.0], [2.0, 3.0, 5.0]], np.float64)
    raw = _reversed_z(metres, near, far)
    raw[0, 1] = 0.0  # the far plane (the buffer's clear value): nothing hit
    out = np.empty(raw.shape, np.float32)
    assert linear_depth(raw, znear, zfar, extent, out=out) is out
    expected = metres.copy()
    expected[0, 1] = 0.0
    np.testing.assert_allclose(out, expected, rtol=1e-5)


def test_normals_of_a_plane_facing_the_camera_point_at_it_and_background_is_zero():
    depth = np.zeros((2, 8, 10), np.float32)
    depth[:, 2:6, 3:8] = 1.5
    normals = normals_from_depth(depth, np.array([45.0, 60.0]))
    assert normals.shape == (2, 8, 10, 3) and normals.dtype == np.float32
    np.testing.assert_allclose(normals[depth > 0], np.tile([0.5, 0.5, 1.0], ((depth > 0).sum(), 1)), atol=1e-6)
    np.testing.assert_array_equal(normals[depth == 0], 0)


def test_normals_written_into_an_array_equal_the_returned_ones():
    rng = np.random.default_rng(0)
    depth = rng.uniform(1.0, 1.2, (3, 6, 7)).astype(np.float32)
    depth[:, 0, 0] = 0
    out = np.empty((3, 6, 7, 3), np.float32)
    assert normals_from_depth(depth, np.full(3, 45.0), out=out) is out
    np.testing.assert_array_equal(out, normals_from_depth(depth, np.full(3, 45.0)))


def test_segmentation_id_colours_map_through_the_lookup_table_and_unknown_ids_are_background():
    lut = np.array([0, 3, 1, 0], np.uint8)  # segment id k is drawn as colour k + 1
    ids = np.array([[0, 1, 2], [3, 70000, 2]])
    rgb = np.stack([ids & 0xFF, (ids >> 8) & 0xFF, (ids >> 16) & 0xFF], axis=-1).astype(np.uint8)
    out = np.empty((2, 3), np.uint8)
    classes_from_ids(rgb, lut, out=out)
    np.testing.assert_array_equal(out, [[0, 3, 1], [0, 0, 1]])


def test_alpha_marks_pixels_with_depth():
    depth = np.array([[0.0, 1.0], [2.5, 0.0]], np.float32)
    out = np.empty((2, 2), np.uint8)
    np.testing.assert_array_equal(alpha_from_depth(depth, out=out), [[0, 255], [255, 0]])
