"""The render engine through LocalRenderer: modalities, geometry, determinism, mapping, settings."""

from __future__ import annotations

import dataclasses

import mujoco
import numpy as np
import pytest

import orrb
from conftest import DACTYL_CAMERAS, assert_within_tile_rounding, dactyl_config
from orrb.components.base import Component, register
from orrb.components.properties import Properties, prop
from orrb.engine import EngineOptions, RenderEngine
from orrb.engine.frames import TileLayout

BOX_XML = """
<mujoco>
  <visual><global offwidth="320" offheight="240"/></visual>
  <worldbody>
    <light pos="0 0 3" dir="0 0 -1"/>
    <body name="box" pos="0 0 0.5">
      <joint name="slide_x" type="slide" axis="1 0 0"/>
      <joint name="ball" type="ball"/>
      <geom name="thing:box" type="box" size="0.2 0.2 0.1" rgba="0.8 0.2 0.2 1"/>
    </body>
    <camera name="down" pos="0 0 2" quat="1 0 0 0" fovy="45"/>
    <camera name="tilted" pos="0 -1.5 1.8" xyaxes="1 0 0 0 0.7 0.7" fovy="50"/>
  </worldbody>
</mujoco>
"""


@pytest.fixture
def box_scene(tmp_path):
    xml = tmp_path / "box.xml"
    xml.write_text(BOX_XML)
    mapping = tmp_path / "box.mapping"
    mapping.write_text("# joint, index\nslide_x, 0\nball, 1\n")
    return tmp_path


def box_config(box_scene, **fields):
    config = orrb.RemoteRendererConfig(
        camera_names=["down"], image_width=64, image_height=48, model_xml_path="box.xml",
        model_mapping_path="box.mapping", asset_basedir=str(box_scene))
    for k, v in fields.items():
        setattr(config, k, v)
    return config


IDENTITY = [0.0, 1.0, 0.0, 0.0, 0.0]


@pytest.fixture(scope="module")
def dactyl_all_modalities():
    config = dactyl_config(render_depth=True, render_normals=True, render_segmentation=True)
    with orrb.LocalRenderer(config) as renderer:
        yield renderer


def test_every_modality_has_its_shape_and_dtype(dactyl_all_modalities, dactyl_states):
    batch = {"qpos": dactyl_states[:3], "seed": 5, "user_key": "kept"}
    result = dactyl_all_modalities.render_batch(batch)
    assert result["user_key"] == "kept" and result["seed"] == 5
    assert result["qpos"] is batch["qpos"]
    for camera in DACTYL_CAMERAS:
        assert result[camera].shape == (3, 64, 64, 3) and result[camera].dtype == np.uint8
        assert result[f"{camera}_depth"].shape == (3, 64, 64) and result[f"{camera}_depth"].dtype == np.float32
        assert result[f"{camera}_normals"].shape == (3, 64, 64, 3) and result[f"{camera}_normals"].dtype == np.float32
        assert result[f"{camera}_segmentation"].shape == (3, 64, 64)
        assert result[f"{camera}_segmentation"].dtype == np.uint8
        assert result[camera].std() > 10, "image is blank"
        normals = result[f"{camera}_normals"]
        assert normals.min() >= 0 and normals.max() <= 1


def test_alpha_channel_marks_geometry(box_scene):
    with orrb.LocalRenderer(box_config(box_scene, render_alpha=True, render_depth=True)) as renderer:
        result = renderer.render_batch({"qpos": [IDENTITY], "seed": 0})
    rgba, depth = result["down"], result["down_depth"]
    assert rgba.shape == (1, 48, 64, 4)
    np.testing.assert_array_equal(rgba[..., 3] == 255, depth > 0)
    assert (rgba[..., 3] == 0).any() and (rgba[..., 3] == 255).any()


def test_segmentation_contains_cube_robot_and_background(dactyl_all_modalities, dactyl_states):
    names = dactyl_all_modalities.class_names
    assert names[0] == "background" and {"cube", "robot0"} <= set(names)
    result = dactyl_all_modalities.render_batch({"qpos": dactyl_states[:2], "seed": 0})
    for camera in DACTYL_CAMERAS:
        present = set(np.unique(result[f"{camera}_segmentation"]))
        assert {names.index("cube"), names.index("robot0")} <= present


def test_segmentation_background_is_zero_where_nothing_is_hit(box_scene):
    with orrb.LocalRenderer(box_config(box_scene, render_segmentation=True, render_depth=True)) as renderer:
        result = renderer.render_batch({"qpos": [IDENTITY], "seed": 0})
    seg, depth = result["down_segmentation"][0], result["down_depth"][0]
    assert renderer.class_names == ["background", "thing"]
    # segmentation is rendered without anti-aliasing, depth is resolved from the MSAA pass:
    # they may disagree only on the silhouette's edge pixels
    disagree = (seg == 1) != (depth > 0)
    assert disagree.mean() < 0.01
    assert seg[0, 0] == 0 and seg[24, 32] == 1


def test_same_seed_gives_identical_pixels_and_no_component_means_seed_is_irrelevant(
        dactyl_all_modalities, dactyl_states):
    """With one entry per readback (the default on a software rasterizer) every entry draws
    at the same position: without components the seed changes no bit."""
    batch = {"qpos": dactyl_states[:2], "seed": 1}
    first = dactyl_all_modalities.render_batch(batch)
    second = dactyl_all_modalities.render_batch(dict(batch))
    other_seed = dactyl_all_modalities.render_batch({"qpos": dactyl_states[:2], "seeds": np.array([77, 99])})
    for key in first:
        if key.startswith("vision_cam"):
            np.testing.assert_array_equal(first[key], second[key])
            np.testing.assert_array_equal(first[key], other_seed[key])


def test_with_entries_tiled_by_seed_no_component_means_a_seed_changes_only_edge_rounding(dactyl_states):
    """Several entries per readback: a seed picks the entry's tile (seed modulo the entry
    slots); seeds sharing a tile give the same bits, others differ by rounding at most."""
    config = dactyl_config(render_depth=True, render_normals=True, render_segmentation=True)
    with orrb.LocalRenderer(config, engine_options=EngineOptions(entries_per_readback=24)) as renderer:
        slots = TileLayout.for_cameras(len(DACTYL_CAMERAS), 64, 64, 24).groups
        assert slots == 8  # 3 cameras of 64 x 64: 8 entries per readback
        first = renderer.render_batch({"qpos": dactyl_states[:2], "seed": 1})
        same_tile = renderer.render_batch({"qpos": dactyl_states[:2], "seeds": np.array([1, 2]) + 5 * slots})
        other_tile = renderer.render_batch({"qpos": dactyl_states[:2], "seeds": np.array([77, 99]) * slots + 4})
    for key in first:
        if key.startswith("vision_cam"):
            np.testing.assert_array_equal(first[key], same_tile[key])
            assert_within_tile_rounding(other_tile[key], first[key], key)


def test_entry_renders_the_same_alone_or_in_a_batch(dactyl_all_modalities, dactyl_states):
    batch = dactyl_all_modalities.render_batch({"qpos": dactyl_states[:4], "seed": 10})
    alone = dactyl_all_modalities.render_batch({"qpos": dactyl_states[2:3], "seeds": [12]})
    for camera in DACTYL_CAMERAS:
        np.testing.assert_array_equal(batch[camera][2], alone[camera][0])


def _camera_ray_depth(model, data, cam_id, row, col, width, height):
    """Depth along the camera axis of the first visible geom hit through pixel (row, col)."""
    fovy = np.radians(model.cam_fovy[cam_id])
    f = (height / 2) / np.tan(fovy / 2)
    direction_cam = np.array([(col + 0.5 - width / 2) / f, (height / 2 - row - 0.5) / f, -1.0])
    xmat = data.cam_xmat[cam_id].reshape(3, 3)
    direction = xmat @ direction_cam
    geomid = np.zeros(1, np.int32)
    groups = np.array([1, 1, 1, 0, 0, 0], np.uint8)
    distance = mujoco.mj_ray(model, data, data.cam_xpos[cam_id], direction, groups, 1, -1, geomid)
    return distance, geomid[0]  # direction has unit z component, so distance is depth along the axis


def test_depth_at_cube_centre_matches_ray_distance_along_camera_axis(dactyl_states):
    size = 200
    config = dactyl_config(image_width=size, image_height=size, render_depth=True)
    with orrb.LocalRenderer(config) as renderer:
        result = renderer.render_batch({"qpos": dactyl_states[:3], "seed": 0})
        model = renderer.model
    data = mujoco.MjData(model)
    mapping = orrb.scene.Mapping(model, config.resolve(config.model_mapping_path))
    full = mapping.apply(dactyl_states[:3])
    cube_body = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, "cube")
    for i in range(3):
        data.qpos[:] = full[i]
        mujoco.mj_kinematics(model, data)
        mujoco.mj_camlight(model, data)
        for camera in DACTYL_CAMERAS:
            cam_id = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_CAMERA, camera)
            rel = data.cam_xmat[cam_id].reshape(3, 3).T @ (data.xpos[cube_body] - data.cam_xpos[cam_id])
            f = (size / 2) / np.tan(np.radians(model.cam_fovy[cam_id]) / 2)
            col = int(size / 2 + f * rel[0] / -rel[2])
            row = int(size / 2 - f * rel[1] / -rel[2])
            expected, geom = _camera_ray_depth(model, data, cam_id, row, col, size, size)
            assert model.geom_bodyid[geom] == cube_body, "the ray through the cube centre pixel misses the cube"
            depth = result[f"{camera}_depth"][i, row, col]
            assert abs(depth - expected) < 0.01, (camera, depth, expected)


def test_depth_is_zero_where_nothing_is_hit(box_scene):
    with orrb.LocalRenderer(box_config(box_scene, render_depth=True)) as renderer:
        depth = renderer.render_batch({"qpos": [IDENTITY], "seed": 0})["down_depth"][0]
    assert depth[0, 0] == 0
    # the box top (z = 0.6) is 1.4 m below the camera at z = 2
    assert abs(depth[24, 32] - 1.4) < 1e-3


def test_normals_of_a_face_on_box_point_at_the_camera(box_scene):
    with orrb.LocalRenderer(box_config(box_scene, render_normals=True, render_depth=True)) as renderer:
        result = renderer.render_batch({"qpos": [IDENTITY], "seed": 0})
    encoded = result["down_normals"][0]
    face = result["down_depth"][0] > 0
    normals = encoded[face] * 2 - 1
    angle = np.degrees(np.arccos(np.clip(normals @ np.array([0, 0, 1.0]), -1, 1)))
    assert angle.max() < 2.0
    np.testing.assert_array_equal(encoded[~face], 0)


def test_normals_of_a_tilted_view_match_the_face_normal_in_camera_space(box_scene):
    config = box_config(box_scene, camera_names=["tilted"], render_normals=True, render_segmentation=True)
    with orrb.LocalRenderer(config) as renderer:
        result = renderer.render_batch({"qpos": [IDENTITY], "seed": 0})
        model = renderer.model
    cam_id = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_CAMERA, "tilted")
    data = mujoco.MjData(model)
    mujoco.mj_kinematics(model, data)
    mujoco.mj_camlight(model, data)
    up_in_camera = data.cam_xmat[cam_id].reshape(3, 3).T @ np.array([0, 0, 1.0])
    normals = result["tilted_normals"][0] * 2 - 1
    # pixels of the box's top face: normals within 2 degrees of the world z axis seen from the camera
    top = (result["tilted_segmentation"][0] == 1) & (normals @ up_in_camera > np.cos(np.radians(10)))
    assert top.sum() > 50
    angle = np.degrees(np.arccos(np.clip(normals[top] @ up_in_camera, -1, 1)))
    assert np.median(angle) < 2.0


def test_qpos_change_moves_the_cube_in_the_image(box_scene):
    with orrb.LocalRenderer(box_config(box_scene, render_segmentation=True)) as renderer:
        result = renderer.render_batch({"qpos": [IDENTITY, [0.3, 1, 0, 0, 0]], "seed": 0})
    seg = result["down_segmentation"]
    cols = [np.nonzero(seg[i] == 1)[1].mean() for i in range(2)]
    assert cols[1] > cols[0] + 5, "sliding +x must move the box to the right in a downward camera"


def test_mapping_places_joints_at_their_qpos_indices(dactyl_states):
    config = dactyl_config(render_segmentation=True)
    with orrb.LocalRenderer(config) as renderer:
        model = renderer.model
        mapping = orrb.scene.Mapping(model, config.resolve(config.model_mapping_path))
        state = dactyl_states[0].copy()
        full = mapping.apply(state[None])[0]
        for name, index, width in (("robot0:WRJ1", 0, 1), ("robot0:THJ0", 23, 1), ("cube:cube_tx", 24, 1),
                                   ("cube:cube_tz", 26, 1), ("cube:cube_rot", 27, 4)):
            jid = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_JOINT, name)
            adr = model.jnt_qposadr[jid]
            expected = state[index:index + width]
            if width == 4:
                expected = expected / np.linalg.norm(expected)
            np.testing.assert_allclose(full[adr:adr + width], expected)
        # a rotation of the ball joint (columns 27-30) rotates the cube, not the hand
        rotated = state.copy()
        rotated[27:31] = [np.cos(np.pi / 8), 0, 0, np.sin(np.pi / 8)]
        state[27:31] = [1, 0, 0, 0]
        result = renderer.render_batch({"qpos": np.stack([state, rotated]), "seed": 0})
    cube = renderer.class_names.index("cube")
    changed = result["vision_cam_top"][0] != result["vision_cam_top"][1]
    seg = result["vision_cam_top_segmentation"]
    cube_pixels = (seg[0] == cube) | (seg[1] == cube)
    assert changed.any(axis=-1)[cube_pixels].mean() > 0.2
    assert not changed.any(axis=-1)[~cube_pixels].any() or changed.any(axis=-1)[~cube_pixels].mean() < 0.01


def test_extra_qpos_columns_are_ignored(box_scene):
    with orrb.LocalRenderer(box_config(box_scene)) as renderer:
        narrow = renderer.render_batch({"qpos": [IDENTITY], "seed": 0})["down"]
        wide = renderer.render_batch({"qpos": [IDENTITY + [5.0, 6.0, 7.0]], "seed": 0})["down"]
    np.testing.assert_array_equal(narrow, wide)


def test_without_mapping_qpos_is_the_full_model_qpos(box_scene):
    config = box_config(box_scene, model_mapping_path=None)
    with orrb.LocalRenderer(config) as renderer:
        assert renderer.columns == 5  # slide (1) + ball (4)
        result = renderer.render_batch({"qpos": [IDENTITY], "seed": 0})
    assert result["down"].shape == (1, 48, 64, 3)


def test_images_larger_than_the_model_framebuffer_grow_it(box_scene):
    config = box_config(box_scene, image_width=800, image_height=600)  # model allows 320x240
    with orrb.LocalRenderer(config) as renderer:
        image = renderer.render_batch({"qpos": [IDENTITY], "seed": 0})["down"]
    assert image.shape == (1, 600, 800, 3)
    assert image[0, 300, 400].tolist() != image[0, 0, 0].tolist()


def test_row_zero_is_the_top_of_the_image(box_scene):
    # the tilted camera looks down and forward: the floor-less scene shows the box in the lower half
    # when the box is moved towards the camera; compare with the projection of the box centre
    config = box_config(box_scene, camera_names=["tilted"], render_segmentation=True)
    with orrb.LocalRenderer(config) as renderer:
        seg = renderer.render_batch({"qpos": [IDENTITY], "seed": 0})["tilted_segmentation"][0]
        model = renderer.model
    data = mujoco.MjData(model)
    mujoco.mj_kinematics(model, data)
    mujoco.mj_camlight(model, data)
    cam = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_CAMERA, "tilted")
    rel = data.cam_xmat[cam].reshape(3, 3).T @ (data.xpos[1] - data.cam_xpos[cam])
    f = 24 / np.tan(np.radians(25))
    expected_row = 24 - f * rel[1] / -rel[2]
    assert abs(np.nonzero(seg == 1)[0].mean() - expected_row) < 3


def test_msaa_setting_changes_edges_and_is_data(box_scene):
    images = []
    for samples in (0, 4):
        config = box_config(box_scene, camera_names=["tilted"])
        config.render_settings = orrb.RenderSettings(msaa_samples=samples)
        with orrb.LocalRenderer(config) as renderer:
            images.append(renderer.render_batch({"qpos": [IDENTITY], "seed": 0})["tilted"][0])
    assert (images[0] != images[1]).any()
    edge_colours = [len(np.unique(im.reshape(-1, 3), axis=0)) for im in images]
    assert edge_colours[1] > edge_colours[0], "anti-aliasing must add intermediate edge colours"


def test_hide_component_removes_geoms_from_every_modality_and_update_shows_them(dactyl_states):
    config = dactyl_config(camera_names=["vision_cam_top"], render_segmentation=True, render_depth=True)
    chain = orrb.RendererConfig()
    chain.add("Hide", "hide_cube", geom_prefix="cube:")
    with orrb.LocalRenderer(config, renderer_config=chain) as renderer:
        cube = renderer.class_names.index("cube")
        hidden = renderer.render_batch({"qpos": dactyl_states[:1], "seed": 0})
        assert not (hidden["vision_cam_top_segmentation"] == cube).any()
        show = orrb.RendererConfig()
        show.add("Hide", "hide_cube", geom_prefix="")
        renderer.update(show)
        shown = renderer.render_batch({"qpos": dactyl_states[:1], "seed": 0})
        assert (shown["vision_cam_top_segmentation"] == cube).any()
        assert (shown["vision_cam_top_depth"] != hidden["vision_cam_top_depth"]).any()
        disabled = orrb.RendererConfig()
        disabled.add("Hide", "hide_cube", geom_prefix="cube:", enabled=False)
        renderer.update(disabled)
        again = renderer.render_batch({"qpos": dactyl_states[:1], "seed": 0})
        np.testing.assert_array_equal(again["vision_cam_top"], shown["vision_cam_top"])
        assert renderer.mutable_renderer_config()["hide_cube"]["enabled"] is False


def test_hide_by_body_prefix_hides_the_subtree(dactyl_states):
    config = dactyl_config(camera_names=["vision_cam_top"], render_segmentation=True)
    chain = orrb.RendererConfig()
    chain.add("Hide", "hide_hand", body_prefix="robot0:hand mount")
    with orrb.LocalRenderer(config, renderer_config=chain) as renderer:
        seg = renderer.render_batch({"qpos": dactyl_states[:1], "seed": 0})["vision_cam_top_segmentation"]
        assert not (seg == renderer.class_names.index("robot0")).any()


def test_async_render_delivers_to_queue_and_future(box_scene):
    import queue

    with orrb.LocalRenderer(box_config(box_scene)) as renderer:
        results = queue.Queue()
        futures = [renderer.render_batch_async({"qpos": [IDENTITY], "seed": i, "tag": i}, results) for i in range(3)]
        got = sorted(results.get(timeout=30)["tag"] for _ in range(3))
        assert got == [0, 1, 2]
        assert futures[0].result()["down"].shape == (1, 48, 64, 3)


def test_renderer_works_from_another_thread_after_a_second_renderer_took_the_context(box_scene):
    # a GL context that is no longer current renders black frames
    with orrb.LocalRenderer(box_config(box_scene)) as first:
        before = first.render_batch({"qpos": [IDENTITY], "seed": 0})["down"]
        with orrb.LocalRenderer(box_config(box_scene, camera_names=["tilted"])) as second:
            second.render_batch({"qpos": [IDENTITY], "seed": 0})
            after = first.render_batch({"qpos": [IDENTITY], "seed": 0})["down"]
    np.testing.assert_array_equal(before, after)
    assert before.std() > 5


def test_colour_and_segmentation_equal_mujocos_own_renderer(dactyl_states):
    """Tiled frames give what mujoco.Renderer gives frame by frame: segmentation exactly, colour
    up to a rare rounding (float interpolation depends on the frame's window position)."""
    config = dactyl_config(render_depth=True, render_segmentation=True)
    with orrb.LocalRenderer(config) as renderer:
        result = renderer.render_batch({"qpos": dactyl_states[:2], "seed": 0})
        model = renderer.model
        class_names = renderer.class_names
    geom_class, _ = orrb.scene.segmentation_classes(model)
    full = orrb.scene.Mapping(model, config.resolve(config.model_mapping_path)).apply(dactyl_states[:2])
    data = mujoco.MjData(model)
    with mujoco.Renderer(model, 64, 64) as reference:
        for i in range(2):
            data.qpos[:] = full[i]
            mujoco.mj_kinematics(model, data)
            mujoco.mj_camlight(model, data)
            for camera in DACTYL_CAMERAS:
                reference.update_scene(data, camera)
                difference = np.abs(result[camera][i].astype(int) - reference.render())
                assert difference.max() <= 1 and (difference > 0).mean() < 0.002
                reference.enable_segmentation_rendering()
                objects = reference.render()
                reference.disable_segmentation_rendering()
                is_geom = objects[..., 1] == mujoco.mjtObj.mjOBJ_GEOM
                expected = np.where(is_geom, geom_class[np.where(is_geom, objects[..., 0], 0)], 0)
                np.testing.assert_array_equal(result[f"{camera}_segmentation"][i], expected)
    assert class_names[0] == "background"


def test_depth_of_an_entry_is_bit_identical_alone_or_in_a_batch(dactyl_states):
    """Regression: frames tiled at batch-dependent window positions gave depth differing in the
    last bits (float interpolation depends on the window position)."""
    config = dactyl_config(camera_names=["vision_cam_left"], render_depth=True, image_width=32, image_height=32)
    with orrb.LocalRenderer(config) as renderer:
        batch = renderer.render_batch({"qpos": dactyl_states[:6], "seed": 5})
        alone = renderer.render_batch({"qpos": dactyl_states[3:6], "seeds": [8, 9, 10]})
    np.testing.assert_array_equal(batch["vision_cam_left_depth"][3:], alone["vision_cam_left_depth"])
    np.testing.assert_array_equal(batch["vision_cam_left"][3:], alone["vision_cam_left"])


def test_post_processing_in_chunks_inline_or_overlapped_gives_the_pixels_of_one_thread(dactyl_states):
    """The engine sets entries up ahead on a worker thread and post-processes chunks of entries
    as soon as they are drawn, on another worker while it draws the next ones; neither chunks
    nor threads may change any output against the whole batch on one thread."""
    config = dactyl_config(image_width=48, image_height=48, renderer_config_path="dactyl.renderer_config.json")
    seeds = np.arange(11, dtype=np.uint64)  # 11 entries: with chunks of 4 the last one is partial
    chunks_of_4 = 4 * 48 * 48

    def render(options: EngineOptions) -> dict[str, np.ndarray]:
        with RenderEngine(config, options=options) as engine:
            return engine.render(dactyl_states[:11], seeds)

    one_thread = render(EngineOptions(setup_ahead=False, image_overlap=False, image_chunk_pixels=10**9))
    inline = render(EngineOptions(image_overlap=False, image_chunk_pixels=chunks_of_4))
    overlapped = render(EngineOptions(image_overlap=True, image_chunk_pixels=chunks_of_4))
    assert sorted(inline) == sorted(one_thread) == sorted(overlapped)
    for key in one_thread:
        np.testing.assert_array_equal(inline[key], one_thread[key], err_msg=key)
        np.testing.assert_array_equal(overlapped[key], one_thread[key], err_msg=key)


def test_a_randomized_entry_gives_the_same_outputs_alone_or_set_up_ahead_in_a_batch(dactyl_states):
    """In a batch the engine sets entry i + 1 up (runs the components) on a worker thread
    while entry i draws; an entry rendered alone is set up and drawn on one thread."""
    config = dactyl_config(image_width=40, image_height=40, render_depth=True, render_normals=True,
                           render_segmentation=True, renderer_config_path="dactyl.renderer_config.json")
    seeds = np.array([3, 1, 4, 1, 5], dtype=np.uint64)
    with RenderEngine(config) as engine:
        batch = engine.render(dactyl_states[:5], seeds)
        for i in range(5):
            alone = engine.render(dactyl_states[i:i + 1], seeds[i:i + 1])
            for key, value in alone.items():
                np.testing.assert_array_equal(value[0], batch[key][i], err_msg=f"{key}, entry {i}")
    assert any(key.startswith("tracker_") for key in batch)


def _break_run_on_entry(component, index: int) -> None:
    """Makes ``component.run`` raise ``ValueError`` on entry ``index`` (``del component.run`` restores it)."""
    run = component.run

    def failing(entry):
        if entry.index == index:
            raise ValueError(f"{component.type_name} broke on entry {index}")
        run(entry)

    component.run = failing


def _broken_end_batch(frames, batch):
    raise ValueError("end_batch broke")


@register
class FailOnEntry(Component):
    """A component for these tests: its ``run`` raises ``ValueError`` on entry ``entry``."""

    type_name = "TestFailOnEntry"

    @dataclasses.dataclass(frozen=True)
    class Properties(Properties):
        entry: int = prop(-1, "the entry whose run raises (-1: none)")

    def run(self, entry):
        if entry.index == self.props.entry:
            raise ValueError(f"{self.type_name} broke on entry {entry.index}")


def test_a_component_failing_on_a_later_entry_raises_in_the_caller_and_the_renderer_goes_on(dactyl_states):
    config = dactyl_config(image_width=32, image_height=32)
    chain = orrb.RendererConfig.load(config.resolve("dactyl.renderer_config.json"))
    chain.add("TestFailOnEntry", "fail")
    with orrb.LocalRenderer(config, renderer_config=chain) as renderer:
        expected = renderer.render_batch({"qpos": dactyl_states[:4], "seed": 2})
        failing = orrb.RendererConfig()
        failing.add("TestFailOnEntry", "fail", entry=2)
        renderer.update(failing)
        with pytest.raises(ValueError, match="entry 2"):
            renderer.render_batch({"qpos": dactyl_states[:4], "seed": 2})
        healed = orrb.RendererConfig()
        healed.add("TestFailOnEntry", "fail", entry=-1)
        renderer.update(healed)
        again = renderer.render_batch({"qpos": dactyl_states[:4], "seed": 2})
    for key in expected:
        np.testing.assert_array_equal(again[key], expected[key], err_msg=key)


@register
class MarkByDraw(Component):
    """A component for these tests: draws a grey level per entry in ``run`` (also emitted as
    stream ``mark``) and paints pixel (0, 0) of every camera with it in ``end_batch``."""

    type_name = "TestMarkByDraw"

    def streams(self):
        return {"mark": (np.uint8, 1)}

    def begin_batch(self, batch):
        batch.keep(self, np.zeros(batch.size, np.uint8))

    def run(self, entry):
        level = entry.rng.integers(0, 256)
        entry.batch.draws(self)[entry.index] = level
        entry.emit("mark", [level])

    def end_batch(self, frames, batch):
        for color in frames.color.values():
            color[:, 0, 0, :3] = batch.draws(self)[frames.entries, None]


def test_a_components_draws_reach_its_image_stage_through_the_batch_context(box_scene):
    """Draws made in ``run`` (setup thread) arrive in ``end_batch`` (image thread, in chunks)
    for every entry of the batch they were drawn for."""
    chain = orrb.RendererConfig()
    chain.add("TestMarkByDraw", "mark")
    options = EngineOptions(image_chunk_pixels=2 * 64 * 48)  # chunks of 2 entries on the image worker
    qpos = np.tile(IDENTITY, (9, 1))
    with RenderEngine(box_config(box_scene), chain, options) as engine:
        first = engine.render(qpos, np.arange(9, dtype=np.uint64))
        second = engine.render(qpos[:5], np.arange(100, 105, dtype=np.uint64))
    for out, n in ((first, 9), (second, 5)):
        marks = out["mark"][:, 0]
        assert out["down"].shape[0] == n and len(np.unique(marks)) > 1
        np.testing.assert_array_equal(out["down"][:, 0, 0], np.repeat(marks[:, None], 3, axis=1))


def test_component_hooks_have_defaults_on_the_base_class():
    from orrb.components import BatchContext, registry

    known = registry()
    hide = known["Hide"]("hide")
    assert not hide.has_image_stage() and hide.needs_depth is False
    hide.begin_batch(BatchContext(3))  # a no-op
    assert known["PostProcessingRandomizer"].has_image_stage() and MarkByDraw.has_image_stage()
    with pytest.raises(KeyError, match="Hide 'hide' kept no draws"):
        BatchContext(3).draws(hide)


def test_an_empty_batch_gives_empty_arrays_with_components(dactyl_states):
    config = dactyl_config(image_width=24, image_height=24, render_depth=True,
                           renderer_config_path="dactyl.renderer_config.json")
    with orrb.LocalRenderer(config) as renderer:
        out = renderer.render_batch({"qpos": dactyl_states[:0], "seeds": []})
    assert out["vision_cam_left"].shape == (0, 24, 24, 3) and out["vision_cam_left_depth"].shape == (0, 24, 24)
    assert any(key.startswith("tracker_") and value.shape[0] == 0 for key, value in out.items())


@pytest.mark.parametrize("stage", ["run", "end_batch"])
def test_an_engine_whose_render_failed_on_a_worker_is_freed_when_dropped(dactyl_states, stage):
    """A failure on the setup or image worker thread reaches the caller without leaving a
    reference cycle through the engine (the collector could finalize it on any thread, where
    its GL context cannot be made current)."""
    import gc
    import weakref

    config = dactyl_config(image_width=16, image_height=16, renderer_config_path="dactyl.renderer_config.json")
    engine = RenderEngine(config, options=EngineOptions(image_chunk_pixels=4 * 16 * 16))  # chunks of 4 entries
    alive = weakref.ref(engine)
    component = next(c for c in engine.components if c.type_name == "PostProcessingRandomizer")
    if stage == "run":
        _break_run_on_entry(component, 2)
    else:
        component.end_batch = _broken_end_batch  # the first chunk goes to the image worker
    raised = False
    try:
        engine.render(dactyl_states[:11], np.arange(11, dtype=np.uint64))
    except ValueError:
        raised = True
    assert raised
    engine.close()
    gc.disable()
    try:
        del engine, component
        assert alive() is None
    finally:
        gc.enable()


def test_an_interrupted_render_leaves_no_setup_running(dactyl_states, monkeypatch):
    """Ctrl-C while the render thread waits for the next entry's setup: render() raises only
    once that setup is done, so no setup can touch the model of a later render."""
    import concurrent.futures
    import time

    config = dactyl_config(image_width=16, image_height=16, renderer_config_path="dactyl.renderer_config.json")
    with RenderEngine(config) as engine:
        tracker = next(c for c in engine.components if c.type_name == "Tracker")
        run, finished = tracker.run, []

        def slow(entry):
            run(entry)
            if entry.index == 1:
                time.sleep(0.3)
                finished.append(time.monotonic())
        tracker.run = slow
        wait = concurrent.futures.wait
        interrupts = [KeyboardInterrupt()]

        def interrupted_wait(futures, *args, **kwargs):
            if interrupts:
                raise interrupts.pop()
            return wait(futures, *args, **kwargs)
        monkeypatch.setattr(concurrent.futures, "wait", interrupted_wait)
        with pytest.raises(KeyboardInterrupt):
            engine.render(dactyl_states[:3], np.arange(3, dtype=np.uint64))
        returned = time.monotonic()
        monkeypatch.setattr(concurrent.futures, "wait", wait)
        assert finished and finished[0] <= returned
        del tracker.run
        engine.render(dactyl_states[:3], np.arange(3, dtype=np.uint64))


def test_an_engine_dropped_without_close_leaves_another_engines_frames_intact(dactyl_states):
    """Regression: a dropped engine's MuJoCo render context was freed by the garbage collector
    with the other engine's GL context current, deleting that engine's framebuffer (same GL
    ids): it then rendered garbage, fast and without an error."""
    import gc

    config = dactyl_config(camera_names=["vision_cam_left"], image_width=32, image_height=32)
    seeds = np.arange(2, dtype=np.uint64)
    with RenderEngine(config) as reference:
        expected = reference.render(dactyl_states[:2], seeds)["vision_cam_left"]
    first = RenderEngine(config)
    second = RenderEngine(config)
    del first
    gc.collect()
    with second:
        np.testing.assert_array_equal(second.render(dactyl_states[:2], seeds)["vision_cam_left"], expected)


def test_one_blit_readback_gives_mujocos_colour_and_depth_bits(dactyl_states):
    """The engine reads colour and depth with one resolve blit once it has checked, on its
    first readback, that this gives mjr_readPixels' bits; with or without it, outputs agree."""
    config = dactyl_config(image_width=40, image_height=40, render_depth=True)  # the model has 4x MSAA
    seeds = np.arange(3, dtype=np.uint64)
    with RenderEngine(config) as engine:
        assert engine.one_blit_readback is None  # not checked before the first readback
        first = engine.render(dactyl_states[:3], seeds)
        assert engine.one_blit_readback is not None  # checked against mjr_readPixels on the first readback
        if not engine.gl_hardware:
            assert engine.one_blit_readback is True  # Mesa's resolve gives MuJoCo's bits
        fast = engine.render(dactyl_states[:3], seeds)
    with RenderEngine(config, options=EngineOptions(one_blit_readback=False)) as engine:
        mujocos = engine.render(dactyl_states[:3], seeds)
        assert engine.one_blit_readback is False
    for key in first:
        np.testing.assert_array_equal(fast[key], mujocos[key], err_msg=key)
        np.testing.assert_array_equal(first[key], mujocos[key], err_msg=key)


def test_closing_an_engine_from_a_thread_that_cannot_take_its_context_leaves_other_engines_intact(dactyl_states):
    """An engine whose GL context is current in another (live) thread cannot free its render
    context here; freeing it under this thread's context would delete another engine's
    framebuffer. It warns and leaves the resources allocated instead."""
    import concurrent.futures

    config = dactyl_config(camera_names=["vision_cam_left"], image_width=32, image_height=32)
    seeds = np.arange(2, dtype=np.uint64)
    with concurrent.futures.ThreadPoolExecutor(1) as owner:
        elsewhere = owner.submit(RenderEngine, config).result()
        owner.submit(elsewhere.render, dactyl_states[:2], seeds).result()  # its context stays current there
        with RenderEngine(config) as here:
            expected = here.render(dactyl_states[:2], seeds)["vision_cam_left"]
            with pytest.warns(ResourceWarning, match="cannot be made current"):
                elsewhere.close()
            np.testing.assert_array_equal(here.render(dactyl_states[:2], seeds)["vision_cam_left"], expected)


def test_an_async_batch_renders_the_states_it_was_given_even_if_the_caller_reuses_its_array(
        make_dactyl_config, dactyl_states):
    # regression: LocalRenderer queued the caller's own array, so refilling it before the render
    # ran changed what was rendered (RemoteRenderer always copied)
    config = make_dactyl_config(camera_names=["vision_cam_left"], image_width=32, image_height=32)
    with orrb.LocalRenderer(config) as renderer:
        expected = renderer.render_batch({"qpos": dactyl_states[:4], "seed": 0})["vision_cam_left"]
        buffer = dactyl_states[:4].copy()
        blocker = renderer.render_batch_async({"qpos": dactyl_states[4:20], "seed": 0})  # keeps the thread busy
        future = renderer.render_batch_async({"qpos": buffer, "seed": 0})
        buffer[:] = dactyl_states[8:12]  # the caller refills its buffer at once
        blocker.result()
        np.testing.assert_array_equal(future.result()["vision_cam_left"], expected)
