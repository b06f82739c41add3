"""Config files written as the original renderer wrote them (its Unity frame, no "frame" key)
mean what they meant: converted on load, lit and framed as intended."""

from __future__ import annotations

import glob
import json
import os

import mujoco
import numpy as np
import pytest

import orrb
from conftest import DACTYL_CAMERAS, dactyl_config
from orrb import frames
from orrb.scene import Mapping

ORIGINAL_DIR = os.path.join(os.path.dirname(__file__), "data", "original_format")
ORIGINAL_FILES = ["dactyl", "demo_keras", "update_1", "update_2"]
TABLE_CENTRE = (1.05, 1.0, 0.0)  # where the original's (-1.05, 0, -1) lies in MuJoCo's frame
CUBE_REST = (1.0, 0.87, 0.2)


def original(name: str) -> str:
    return os.path.join(ORIGINAL_DIR, f"{name}.renderer_config.json")


def render(path, states, seeds, size=96, **fields):
    config = dactyl_config(image_width=size, image_height=size, renderer_config_path=path,
                           render_segmentation=True, **fields)
    with orrb.LocalRenderer(config) as renderer:
        out = renderer.render_batch({"qpos": states, "seeds": np.asarray(seeds)})
        return out, renderer.class_names


@pytest.mark.parametrize("name", ORIGINAL_FILES + ["orbit"])
def test_an_original_file_has_no_frame_key_and_loads_in_mujocos_frame(name):
    with open(original(name)) as f:
        assert "frame" not in json.load(f)
    config = orrb.RendererConfig.load(original(name))
    np.testing.assert_allclose(config["lighting_rig_0"]["target"], TABLE_CENTRE)
    assert config.conversion and {c.property for c in config.conversion} <= {"target", "orbit_center"}


def test_the_light_rig_target_is_the_table_centre_under_the_hand(assets_dir, dactyl_states):
    config = orrb.RendererConfig.load(original("dactyl"))
    target = np.array(config["lighting_rig_0"]["target"])
    model = mujoco.MjModel.from_xml_path(f"{assets_dir}/dactyl.xml")
    data = mujoco.MjData(model)
    data.qpos[:] = Mapping(model, f"{assets_dir}/dactyl.mapping").apply(dactyl_states[:1])[0]
    mujoco.mj_kinematics(model, data)
    palm = data.xpos[model.body("robot0:palm").id]
    horizontal = np.linalg.norm((palm - target)[:2])
    assert horizontal < 0.3 and target[2] < palm[2], (palm, target)


def test_the_light_rig_lights_the_hand_only_when_read_in_the_original_frame(dactyl_states, tmp_path):
    """The same numbers read as MuJoCo coordinates aim the rig 1.4 m away from the hand."""
    states = np.repeat(dactyl_states[:1], 8, axis=0)
    out, classes = render(original("update_1"), states, np.arange(8))
    hand = classes.index("robot0")
    with open(original("update_1")) as f:
        raw = json.load(f)
    raw["frame"] = "mujoco"  # the original's numbers taken literally
    literal = tmp_path / "literal.renderer_config.json"
    literal.write_text(json.dumps(raw))
    wrong, _ = render(str(literal), states, np.arange(8))
    for camera in DACTYL_CAMERAS:
        mask = out[f"{camera}_segmentation"] == hand
        lit = out[camera].mean(axis=-1)[mask].mean()
        dark = wrong[camera].mean(axis=-1)[wrong[f"{camera}_segmentation"] == hand].mean()
        assert lit > 60 and lit > dark + 30, (camera, lit, dark)


def test_an_orbit_camera_orbits_the_cube(dactyl_states):
    """The orbit axis passes through the cube: the cube stays put in the image while the
    rest of the view turns around it."""
    state = dactyl_states[:1].copy()
    state[0, 24:26] = 0.0  # the cube's x, y offsets: its centre on the vertical through its rest position
    states = np.repeat(state, 16, axis=0)
    config = orrb.RendererConfig.load(original("orbit"))
    np.testing.assert_allclose(config["camera_randomizer_0"]["orbit_center"], CUBE_REST)
    out, classes = render(original("orbit"), states, np.arange(16))
    cube = classes.index("cube")
    for camera in DACTYL_CAMERAS:
        centre = out[f"tracker_cube_X_{camera}"]
        np.testing.assert_allclose(centre, np.repeat(centre[:1], 16, axis=0), atol=1e-4)
        assert (out[f"{camera}_segmentation"] == cube).sum(axis=(1, 2)).min() > 100
        views = out[camera].reshape(16, -1).astype(float)
        assert np.abs(views[1:] - views[0]).mean(axis=1).min() > 2.0, f"{camera}: orbit did not move the view"


@pytest.mark.parametrize("name", ORIGINAL_FILES)
def test_the_cube_is_exposed_in_every_entry_of_an_original_file(name, dactyl_states):
    states = np.repeat(dactyl_states[:1], 16, axis=0)
    out, classes = render(original(name), states, np.arange(16))
    cube = classes.index("cube")
    for camera in DACTYL_CAMERAS:
        brightness = out[camera].mean(axis=-1)
        mask = out[f"{camera}_segmentation"] == cube
        assert mask.sum(axis=(1, 2)).min() > 50, f"{name} {camera}: cube out of view"
        cube_mean = np.array([b[m].mean() for b, m in zip(brightness, mask)])
        assert cube_mean.min() >= 30 and cube_mean.max() <= 225, (name, camera, cube_mean.round())
        assert brightness.max(axis=(1, 2)).min() > 0 and brightness.min(axis=(1, 2)).max() < 255


@pytest.mark.parametrize("name", ORIGINAL_FILES)
def test_other_seeds_change_the_images_of_an_original_file(name, dactyl_states):
    states = np.repeat(dactyl_states[:1], 4, axis=0)
    first, _ = render(original(name), states, [0, 1, 2, 3], size=48)
    again, _ = render(original(name), states, [0, 1, 2, 3], size=48)
    other, _ = render(original(name), states, [4, 5, 6, 7], size=48)
    camera = "vision_cam_left"
    np.testing.assert_array_equal(first[camera], again[camera])
    change = np.abs(first[camera].astype(float) - other[camera].astype(float)).mean(axis=(1, 2, 3))
    assert change.min() > 1.0, change


def test_saving_a_loaded_original_file_writes_its_converted_values(tmp_path):
    config = orrb.RendererConfig.load(original("update_2"))
    out = tmp_path / "saved.renderer_config.json"
    config.save(out)
    data = json.loads(out.read_text())
    assert data["frame"] == "mujoco"
    rig = next(c for c in data["components"] if c["name"] == "lighting_rig_0")
    assert rig["config"]["vector3Properties"]["target"] == {"x": 1.05, "y": 1.0, "z": 0.0}
    again = orrb.RendererConfig.load(out)
    assert again == config and again.conversion == []


def test_every_shipped_config_is_in_the_mujoco_frame(assets_dir):
    paths = glob.glob(f"{assets_dir}/*.renderer_config.json")
    assert len(paths) >= 4
    for path in paths:
        with open(path) as f:
            assert json.load(f).get("frame") == "mujoco", path
        assert orrb.RendererConfig.load(path).conversion == []


def test_camera_frame_properties_turn_the_camera_axis_around():
    config = orrb.RendererConfig.from_json({"components": [{
        "type": "CameraCalibrator", "name": "calib", "config": {
            "stringProperties": {"camera_name": "vision_cam_left"},
            "vector3Properties": {"local_position_delta": {"x": 0.01, "y": 0.02, "z": 0.03}},
            "quaternionProperties": {"local_rotation_delta": {"x": 0.1, "y": 0.2, "z": 0.3, "w": 0.9}}}}]})
    calib = config["calib"]
    assert calib["local_position_delta"] == (-0.01, 0.02, -0.03)
    assert calib["local_rotation_delta"] == (0.9, -0.1, 0.2, -0.3)


@pytest.mark.parametrize("convert,basis", [(frames.world_rotation_to_mujoco, frames.UNITY_FROM_MUJOCO),
                                           (frames.camera_rotation_to_mujoco, frames.CAMERA_UNITY_FROM_MUJOCO)])
def test_a_converted_rotation_is_the_same_rotation_seen_in_mujocos_axes(convert, basis):
    def matrix(q):
        out = np.zeros(9)
        mujoco.mju_quat2Mat(out, np.asarray(q, dtype=float))
        return out.reshape(3, 3)

    rng = np.random.default_rng(0)
    for q in rng.normal(size=(8, 4)):
        q /= np.linalg.norm(q)
        np.testing.assert_allclose(matrix(convert(q)), basis.T @ matrix(q) @ basis, atol=1e-12)
    v = rng.normal(size=3)
    np.testing.assert_allclose(frames.world_vector_to_mujoco(frames.UNITY_FROM_MUJOCO @ v), v, atol=1e-12)


def test_a_file_in_the_mujoco_frame_is_read_as_it_is():
    config = orrb.RendererConfig.from_json({"frame": "mujoco", "components": [{
        "type": "LightingRig", "name": "rig", "config": {"vector3Properties": {"target": {"x": -1.05, "z": -1}}}}]})
    assert config["rig"]["target"] == (-1.05, 0.0, -1.0) and config.conversion == []


@pytest.mark.parametrize("frame", ["Unity", "z-up", 3])
def test_an_unknown_frame_is_an_error_naming_it_and_the_accepted_ones(frame):
    with pytest.raises(orrb.ConfigError, match=r"'frame' must be one of \['unity', 'mujoco'\].*got"):
        orrb.RendererConfig.from_json({"frame": frame, "components": []})


def test_config_convert_writes_the_file_and_prints_each_changed_property(tmp_path, capsys):
    from orrb.cli import main

    out = tmp_path / "converted.renderer_config.json"
    assert main(["config", "convert", original("orbit"), str(out)]) == 0
    printed = capsys.readouterr().out
    assert "camera_randomizer_0 (CameraRandomizer).orbit_center: (-1, 0.2, -0.87) -> (1, 0.87, 0.2)" in printed
    assert "lighting_rig_0 (LightingRig).target: (-1.05, 0, -1) -> (1.05, 1, 0)" in printed
    assert "2 properties converted" in printed
    assert json.loads(out.read_text())["frame"] == "mujoco"
    assert orrb.RendererConfig.load(out) == orrb.RendererConfig.load(original("orbit"))
    assert main(["config", "convert", str(out), str(tmp_path / "again.json")]) == 0
    assert "already in the mujoco frame" in capsys.readouterr().out


def test_a_file_saying_unity_is_converted_like_one_without_a_frame():
    rig = {"type": "LightingRig", "name": "rig", "config": {"vector3Properties": {"target": {"x": -1.05, "z": -1}}}}
    said = orrb.RendererConfig.from_json({"frame": "unity", "components": [rig]})
    unsaid = orrb.RendererConfig.from_json({"components": [rig]})
    assert said == unsaid and said["rig"]["target"] == TABLE_CENTRE


def test_an_unknown_top_level_key_is_an_error_naming_it():
    with pytest.raises(orrb.ConfigError, match=r"unknown top-level keys \['frmae'\]; accepted: frame, components"):
        orrb.RendererConfig.from_json({"frmae": "mujoco", "components": []})
