"""Configuration objects and every bad input that the engine layer sees."""

from __future__ import annotations

import json

import numpy as np
import pytest

import orrb
from orrb.config import ComponentSpec

from conftest import dactyl_config


def test_remote_renderer_config_has_the_spec_defaults():
    config = orrb.RemoteRendererConfig()
    assert config.camera_names == [] and config.image_width == 100 and config.image_height == 100
    assert config.renderer_version is None and config.model_mapping_path is None
    assert config.renderer_config_path is None and config.asset_basedir == "."
    assert not (config.render_alpha or config.render_depth or config.render_normals or config.render_segmentation)
    assert config.spawn_servers is True


def test_assigning_an_unknown_config_field_raises_with_the_close_match():
    config = orrb.RemoteRendererConfig()
    with pytest.raises(AttributeError, match="render_dept.*did you mean 'render_depth'"):
        config.render_dept = True


def test_config_round_trips_through_a_dict():
    config = dactyl_config(render_depth=True)
    config.render_settings = orrb.RenderSettings(msaa_samples=0, shadows=False)
    again = orrb.RemoteRendererConfig.from_dict(json.loads(json.dumps(config.to_dict())))
    assert again == config and again.render_settings.msaa_samples == 0


def test_relative_paths_resolve_against_asset_basedir(tmp_path):
    config = orrb.RemoteRendererConfig(asset_basedir=str(tmp_path))
    assert config.resolve("x.xml") == str(tmp_path / "x.xml")
    assert config.resolve("/abs/x.xml") == "/abs/x.xml"


HIDE_ONLY = {
    "components": [
        {"type": "Hide", "name": "hide_touch", "config": {"stringProperties": {"site_prefix": "robot0:Tch_"}}},
        {"type": "Hide", "name": "hide_other", "path": "cube",
         "config": {"string_properties": {"geom_prefix": "cube:letter"}, "boolProperties": {"enabled": False}}},
    ]
}


def test_renderer_config_loads_edits_saves_and_reloads_identically(tmp_path):
    path = tmp_path / "in.renderer_config.json"
    path.write_text(json.dumps(HIDE_ONLY))
    config = orrb.RendererConfig.load(path)
    assert [c.name for c in config] == ["hide_touch", "hide_other"]
    assert config["hide_other"]["enabled"] is False and config["hide_other"].path == "cube"
    assert config["hide_touch"]["body_prefix"] == ""  # the default
    config["hide_touch"]["geom_prefix"] = "table:"
    config.add("Hide", "hide_markers", site_prefix="robot0:marker")
    out = tmp_path / "out.renderer_config.json"
    config.save(out)
    again = orrb.RendererConfig.load(out)
    assert again == config
    saved = json.loads(out.read_text())
    assert saved["components"][0]["config"]["stringProperties"]["geom_prefix"] == "table:"


def test_shipped_renderer_configs_round_trip(assets_dir, tmp_path):
    for name in ("dactyl", "demo_keras", "gym"):
        try:
            config = orrb.RendererConfig.load(f"{assets_dir}/{name}.renderer_config.json")
        except orrb.ConfigError as e:  # components not implemented yet give the clear error
            assert "unknown component type" in str(e) and "known types" in str(e)
            continue
        config.save(tmp_path / "x.json")
        assert orrb.RendererConfig.load(tmp_path / "x.json") == config


@pytest.mark.parametrize(
    "config_json, fragments",
    [
        ('{"components": [{"type": "Nope", "name": "n"}]}', ["unknown component type 'Nope'", "known types", "Hide"]),
        ('{"components": [{"type": "Hid", "name": "n"}]}', ["did you mean 'Hide'"]),
        ('{"components": [{"type": "Hide", "name": "h", "config": {"stringProperties": {"geom_prefx": "a"}}}]}',
         ["'h'", "no property 'geom_prefx'", "did you mean 'geom_prefix'", "accepted"]),
        ('{"components": [{"type": "Hide", "name": "h", "config": {"stringProperties": {"geom_prefix": 3}}}]}',
         ["'geom_prefix' expects a string", "got 3"]),
        ('{"components": [{"type": "Hide", "name": "h", "config": {"floatProperties": {"enabled": 1.0}}}]}',
         ["'enabled' is a bool property"]),
        ('{"components": [{"type": "Hide", "name": "h", "config": {"fooProperties": {}}}]}',
         ["unknown property map 'fooProperties'"]),
        ('{"components": [{"type": "Hide", "name": "h"}, {"type": "Hide", "name": "h"}]}', ["two components are named 'h'"]),
        ('{"components": [', ["malformed JSON", "line 1"]),
        ('[1, 2]', ["expected an object"]),
    ],
)
def test_malformed_renderer_config_names_file_component_and_property(tmp_path, config_json, fragments):
    path = tmp_path / "bad.renderer_config.json"
    path.write_text(config_json)
    with pytest.raises(orrb.ConfigError) as info:
        orrb.RendererConfig.load(path)
    message = str(info.value)
    assert str(path) in message
    for fragment in fragments:
        assert fragment in message


def test_editing_a_property_in_python_is_checked():
    config = orrb.RendererConfig()
    spec = config.add("Hide", "h")
    with pytest.raises(orrb.ConfigError, match="no property 'site_prefx'"):
        spec.set(site_prefx="a")
    with pytest.raises(orrb.ConfigError, match="unknown component type"):
        config.add("Nope", "n")
    with pytest.raises(orrb.ConfigError, match="unknown component type 'Trackr' .did you mean 'Tracker'"):
        orrb.RendererConfig([ComponentSpec("Trackr", "t")])


@pytest.fixture(scope="module")
def renderer():
    with orrb.LocalRenderer(dactyl_config(camera_names=["vision_cam_top"], image_width=32, image_height=32)) as r:
        yield r


@pytest.mark.parametrize(
    "batch, error, fragments",
    [
        ({"qpos": np.zeros((2, 30)), "seed": 0}, ValueError, ["30 columns", "at least 31"]),
        ({"qpos": np.zeros(31), "seed": 0}, ValueError, ["two-dimensional", "(31,)"]),
        ({"qpos": np.full((1, 31), np.nan), "seed": 0}, ValueError, ["NaN or inf"]),
        ({"qpos": np.full((1, 31), np.inf), "seed": 0}, ValueError, ["NaN or inf"]),
        ({"qpos": np.zeros((2, 31))}, ValueError, ["neither 'seed'", "nor 'seeds'"]),
        ({"qpos": np.zeros((2, 31)), "seeds": [1, 2, 3]}, ValueError, ["seeds", "B = 2", "(3,)"]),
        ({"qpos": np.zeros((2, 31)), "seed": "x"}, TypeError, ["seed must be an int"]),
        ({"qpos": np.zeros((2, 31)), "seeds": np.array([1e20, 3e20])}, ValueError, ["below 2**53", "float64"]),
        ({"qpos": [["0.1"] * 31], "seed": 0}, TypeError, ["real numeric array", "<U3"]),
        ({"qpos": np.zeros((1, 31), complex), "seed": 0}, TypeError, ["real numeric array", "complex128"]),
        ({"seed": 0}, ValueError, ["no 'qpos'"]),
        ("not a dict", TypeError, ["must be a dict"]),
    ],
)
def test_bad_request_names_the_problem_and_renderer_stays_usable(renderer, dactyl_states, batch, error, fragments):
    with pytest.raises(error) as info:
        renderer.render_batch(batch)
    for fragment in fragments:
        assert fragment in str(info.value)
    with pytest.raises(error):
        renderer.render_batch_async(batch)  # raised in the caller's thread, before queueing
    ok = renderer.render_batch({"qpos": dactyl_states[:1], "seed": 0})
    assert ok["vision_cam_top"].std() > 5


def _write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize(
    "edit, error, fragments",
    [
        (dict(camera_names=["vision_cam_lef"]), orrb.ConfigError,
         ["unknown camera 'vision_cam_lef'", "did you mean 'vision_cam_left'", "vision_cam_top"]),
        (dict(camera_names=["vision_cam_top", "vision_cam_left", "vision_cam_top"]), ValueError,
         ["camera_names lists ['vision_cam_top'] more than once"]),
        (dict(image_width=0), ValueError, ["image_width must be a positive int", "got 0"]),
        (dict(image_height=-3), ValueError, ["image_height must be a positive int"]),
        (dict(model_xml_path="missing.xml"), FileNotFoundError, ["model XML file not found", "missing.xml"]),
        (dict(model_mapping_path="missing.mapping"), FileNotFoundError, ["mapping file not found", "missing.mapping"]),
        (dict(renderer_config_path="missing.json"), FileNotFoundError, ["renderer config file not found"]),
        ("bad_xml", orrb.ConfigError, ["model XML", "bad.xml", "cannot load"]),
        ("bad_mapping_joint", orrb.ConfigError, ["bad.mapping:2", "no joint 'robot0:NOPE'"]),
        ("bad_mapping_line", orrb.ConfigError, ["bad.mapping:1", "expected 'joint_name, index'"]),
        ("overlapping_mapping", orrb.ConfigError, ["bad.mapping:2", "'cube:cube_rot' (columns 1..4) overlaps",
                                                   "'robot0:WRJ1' of line 1 at column 1"]),
        ("bad_renderer_config", orrb.ConfigError, ["bad.json", "unknown component type 'Nope'"]),
    ],
)
def test_bad_config_names_the_file_and_the_problem(tmp_path, assets_dir, edit, error, fragments):
    config = dactyl_config(camera_names=["vision_cam_top"])
    if edit == "bad_xml":
        config.model_xml_path = _write(tmp_path, "bad.xml", "<mujoco><worldbody><geom type='nope'/></worldbody>")
    elif edit == "bad_mapping_joint":
        config.model_mapping_path = _write(tmp_path, "bad.mapping", "robot0:WRJ1, 0\nrobot0:NOPE, 1\n")
    elif edit == "overlapping_mapping":
        config.model_mapping_path = _write(tmp_path, "bad.mapping", "robot0:WRJ1, 1\ncube:cube_rot, 1\n")
    elif edit == "bad_mapping_line":
        config.model_mapping_path = _write(tmp_path, "bad.mapping", "robot0:WRJ1 0\n")
    elif edit == "bad_renderer_config":
        config.renderer_config_path = _write(tmp_path, "bad.json", '{"components": [{"type": "Nope", "name": "x"}]}')
    else:
        for k, v in edit.items():
            setattr(config, k, v)
    with pytest.raises(error) as info:
        with orrb.LocalRenderer(config) as renderer:
            renderer.start()
    for fragment in fragments:
        assert fragment in str(info.value)


@pytest.mark.gl
def test_update_with_an_unknown_path_is_refused_and_renderer_stays_usable(dactyl_states):
    chain = orrb.RendererConfig()
    chain.add("Hide", "h")
    with orrb.LocalRenderer(dactyl_config(camera_names=["vision_cam_top"]), renderer_config=chain) as renderer:
        other = orrb.RendererConfig.from_json({"components": [{"type": "Hide", "name": "h2", "path": "nope"}]})
        with pytest.raises(orrb.ConfigError, match="path 'nope' names no body"):
            renderer.update(other)
        assert renderer.render_batch({"qpos": dactyl_states[:1], "seed": 0})["vision_cam_top"].std() > 5


@pytest.mark.gl
def test_update_that_the_scene_refuses_changes_nothing(dactyl_states):
    chain = orrb.RendererConfig()
    chain.add("Tracker", "trk", camera_names="vision_cam_left", tracked_object_names="cube")
    batch = {"qpos": dactyl_states[:2], "seed": 3}
    with orrb.LocalRenderer(dactyl_config(camera_names=["vision_cam_left"]), renderer_config=chain) as renderer:
        before = renderer.render_batch(batch)
        bad = orrb.RendererConfig()
        bad.add("Tracker", "trk", camera_names="vision_cam_left,nope")
        with pytest.raises(orrb.ConfigError, match="unknown camera 'nope'"):
            renderer.update(bad)
        after = renderer.render_batch(batch)
        assert renderer.mutable_renderer_config()["trk"].properties["camera_names"] == "vision_cam_left"
    assert sorted(after) == sorted(before)
    for key in before:
        np.testing.assert_array_equal(after[key], before[key], err_msg=key)


@pytest.mark.gl
def test_update_reads_the_scene_as_built_not_as_the_last_entry_left_it(dactyl_states):
    def chain(hue_radius):
        config = orrb.RendererConfig()
        config.add("MaterialFixedHueRandomizer", "faces", material_prefix="cube", hue_radius=hue_radius)
        return config

    batch = {"qpos": dactyl_states[:2], "seed": 5}
    config = dactyl_config(camera_names=["vision_cam_left"])
    with orrb.LocalRenderer(config, renderer_config=chain(0.2)) as renderer:
        renderer.render_batch({"qpos": dactyl_states[:2], "seed": 1})  # leaves randomized colours in the model
        update = orrb.RendererConfig()
        update.add("MaterialFixedHueRandomizer", "faces", hue_radius=0.0)
        renderer.update(update)
        updated = renderer.render_batch(batch)
    with orrb.LocalRenderer(config, renderer_config=chain(0.0)) as fresh:
        expected = fresh.render_batch(batch)
    np.testing.assert_array_equal(updated["vision_cam_left"], expected["vision_cam_left"])
