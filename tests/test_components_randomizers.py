"""Every randomizer: changes the pixels it should, draws in range, reproduces by seed, and
draws independently of other components' settings (each draws from its own stream, derived
from the entry's seed and the component's name)."""

from __future__ import annotations

import numpy as np
import pytest

import orrb
from orrb.config import ComponentSpec, RendererConfig

CAM = "vision_cam_left"


def chain(*specs) -> RendererConfig:
    rc = RendererConfig()
    for type_name, name, values in specs:
        rc.components.append(ComponentSpec(type_name, name, "", dict(values)))
    return rc


def render(make_config, states, rc, seeds=(3, 4), **fields):
    config = make_config(camera_names=[CAM], **fields)
    with orrb.LocalRenderer(config, rc) as r:
        return r.render_batch({"qpos": states[:len(seeds)], "seeds": np.array(seeds)})


RIG = ("LightingRig", "rig", {"light_head_count": 3, "target": (1.0, 0.9, 0.1)})

# type, properties, the chain it runs in, {stream quantity: (lo, hi)}
RANDOMIZERS = {
    "CameraRandomizer": (
        {"fov_radius": 4.0, "position_radius": 0.05, "quat_radius": 0.2}, [],
        {"fov_delta": (-2.0, 2.0), "position_delta": (-0.025, 0.025)}),
    "LightRandomizer": (
        {"min_scene_intensity": 2.0, "max_scene_intensity": 9.0, "min_spotlight_angle": 40.0,
         "max_spotlight_angle": 60.0, "randomize_hue": True}, [RIG],
        {"scene_intensity": (2.0, 9.0), "spot_angle": (40.0, 60.0), "color": (0.0, 1.0)}),
    "MaterialRandomizer": (
        {"min_metallic": 0.2, "max_metallic": 0.3, "min_glossiness": 0.4, "max_glossiness": 0.6}, [],
        {"metallic": (0.2, 0.3), "glossiness": (0.4, 0.6), "color": (0.0, 1.0)}),
    "MaterialFixedHueRandomizer": (
        {"material_prefix": "cube:", "min_metallic": 0.1, "max_metallic": 0.2, "min_saturation": 0.6,
         "max_saturation": 0.9}, [],
        {"metallic": (0.1, 0.2), "glossiness": (0.05, 0.15)}),
    "PostProcessingRandomizer": (
        {"cg_min_hue_shift": -30.0, "cg_max_hue_shift": 30.0, "cg_min_temperature": -50.0,
         "cg_max_temperature": 50.0}, [],
        {"hue": (-30.0, 30.0), "temperature": (-50.0, 50.0), "bloom_intensity": (0.75, 1.25),
         "ao_intensity": (1.75, 2.25), "saturation": (-20.0, 20.0)}),
    "JointRandomizer": ({}, [], {}),
}


@pytest.mark.parametrize("type_name", sorted(RANDOMIZERS))
def test_randomizer_changes_pixels_reproduces_and_draws_in_range(type_name, make_dactyl_config, dactyl_states):
    props, before, ranges = RANDOMIZERS[type_name]
    bare = render(make_dactyl_config, dactyl_states, chain(*before))
    rc = chain(*before, (type_name, "r", {**props, "emit_values": True}))
    first = render(make_dactyl_config, dactyl_states, rc)
    again = render(make_dactyl_config, dactyl_states, rc)
    assert bare[CAM].mean() > 5  # not blank
    changed = (np.abs(first[CAM].astype(int) - bare[CAM]).sum(-1) > 10).mean()
    assert changed > 0.005, f"the randomizer changed nothing (changed fraction {changed})"
    streams = [k for k in first if k.startswith("r_")]
    assert streams, "emit_values emitted nothing"
    for key in [CAM, *streams]:
        np.testing.assert_array_equal(first[key], again[key], err_msg=key)
    for quantity, (lo, hi) in ranges.items():
        values = first[f"r_{quantity}"]
        assert values.dtype == np.float32 and values.shape[0] == 2
        assert values.min() >= lo - 1e-5 and values.max() <= hi + 1e-5, (quantity, values.min(), values.max())
    other = render(make_dactyl_config, dactyl_states, chain(*before, (type_name, "r", props)), seeds=(5, 6))
    assert (np.abs(other[CAM].astype(int) - first[CAM]).sum(-1) > 10).mean() > 0.005, "other seeds, same image"


@pytest.mark.parametrize("type_name", sorted(RANDOMIZERS))
def test_changing_another_component_does_not_change_its_draws(type_name, make_dactyl_config, dactyl_states):
    props, before, _ = RANDOMIZERS[type_name]
    me = (type_name, "r", {**props, "emit_values": True})
    a = render(make_dactyl_config, dactyl_states, chain(*before, me, ("CameraRandomizer", "cam", {"fov_radius": 1.0})))
    b = render(make_dactyl_config, dactyl_states, chain(*before, me, ("CameraRandomizer", "cam", {"fov_radius": 9.0})))
    streams = [k for k in a if k.startswith("r_")]
    for key in streams:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def test_fixed_hue_on_cube_leaves_robot_pixels_unchanged(make_dactyl_config, dactyl_states):
    bare = render(make_dactyl_config, dactyl_states, chain(), render_segmentation=True)
    rc = chain(("MaterialFixedHueRandomizer", "cube", {"material_prefix": "cube:", "hue_radius": 0.3}))
    out = render(make_dactyl_config, dactyl_states, rc, render_segmentation=True)
    with orrb.LocalRenderer(make_dactyl_config(camera_names=[CAM])) as r:
        names = r.class_names
    seg = bare[f"{CAM}_segmentation"]
    cube = seg == names.index("cube")
    near_cube = cube.copy()
    for axis in (1, 2):
        for shift in (-1, 1):
            near_cube |= np.roll(cube, shift, axis=axis)
    robot = (seg == names.index("robot0")) & ~near_cube
    diff = np.abs(out[CAM].astype(int) - bare[CAM]).sum(-1)
    assert robot.sum() > 100 and cube.sum() > 20
    assert diff[robot].max() == 0, "robot pixels changed"
    assert diff[cube].mean() > 5, "cube pixels did not change"


def test_phasespace_leds_blink_independently(make_dactyl_config, dactyl_states):
    rc = chain(("MaterialFixedHueRandomizer", "leds", {"material_prefix": "robot0:MatPhasespace", "emission_radius": 10.0,
                                                        "min_emission": 3.0, "max_emission": 5.0, "emit_values": True}))
    out = render(make_dactyl_config, dactyl_states, rc, seeds=tuple(range(8)))
    emission = out["leds_emission"]
    assert emission.shape[1] > 5  # one material per marker site
    glowing = emission > 0
    assert 0 < glowing.mean() < 0.6  # probability 0.25
    assert np.all((emission[glowing] >= 3.0) & (emission[glowing] <= 5.0))
    assert len({tuple(row) for row in glowing}) > 1


def test_material_randomizer_textures_switch_without_upload(make_dactyl_config, dactyl_states):
    plain = ("MaterialRandomizer", "m", {"emit_values": True})
    textured = ("MaterialRandomizer", "m", {"emit_values": True, "randomize_textures": True})
    a = render(make_dactyl_config, dactyl_states, chain(plain))
    b = render(make_dactyl_config, dactyl_states, chain(textured))
    assert np.all(a["m_texture"] == -1)
    assert b["m_texture"].min() >= 0 and len(np.unique(b["m_texture"])) > 3
    reps = b["m_texrepeat"]
    assert reps.min() >= 0.4 and reps.max() <= 4.0
    np.testing.assert_array_equal(a["m_color"], b["m_color"])  # same draws, textures on top
    assert np.abs(a[CAM].astype(int) - b[CAM]).mean() > 0.5


@pytest.mark.parametrize("size", [1, 3, 5])
def test_post_processing_works_on_images_smaller_than_its_blocks(size, make_dactyl_config, dactyl_states):
    # bloom and ambient occlusion work on 4x4 blocks; a smaller image is one block
    rc = chain(("PostProcessingRandomizer", "post", {"bloom_min_intensity": 5.0, "bloom_max_intensity": 5.0}))
    out = render(make_dactyl_config, dactyl_states, rc, image_width=size, image_height=size)
    bare = render(make_dactyl_config, dactyl_states, chain(), image_width=size, image_height=size)
    assert out[CAM].shape == (2, size, size, 3)
    assert not np.array_equal(out[CAM], bare[CAM])
