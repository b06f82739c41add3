"""Camera, lighting-rig, post-processing, pose and shipped-config behaviour of the components."""

from __future__ import annotations

import mujoco
import numpy as np
import pytest

import orrb
from orrb.components.base import BatchContext, EntryContext, Frames, SceneContext
from orrb.components.camera_randomizer import CameraRandomizer
from orrb.components.post_processing_randomizer import PostProcessingRandomizer
from orrb.config import ComponentSpec, RendererConfig
from orrb.errors import ConfigError
from orrb.scene import compile_spec, load_spec

CAM = "vision_cam_left"


def chain(*specs) -> RendererConfig:
    rc = RendererConfig()
    for spec in specs:
        type_name, name, values = spec[:3]
        path = spec[3] if len(spec) > 3 else ""
        rc.components.append(ComponentSpec(type_name, name, path, dict(values)))
    return rc


def render(make_config, states, rc, seeds=(3, 4), **fields):
    with orrb.LocalRenderer(make_config(camera_names=[CAM], **fields), rc) as r:
        return r.render_batch({"qpos": states[:len(seeds)], "seeds": np.array(seeds)})


def test_camera_randomizer_with_zero_radii_reproduces_the_unrandomized_image(make_dactyl_config, dactyl_states):
    bare = render(make_dactyl_config, dactyl_states, chain())
    zero = render(make_dactyl_config, dactyl_states, chain(
        ("CameraRandomizer", "cam", {"fov_radius": 0.0, "position_radius": 0.0, "quat_radius": 0.0})))
    np.testing.assert_array_equal(bare[CAM], zero[CAM])


def test_orbit_keeps_the_camera_distance_to_the_orbit_center(make_dactyl_config):
    """The component on its own model: each run starts from the model's camera pose."""
    center = (1.0, 0.9, 0.2)
    config = make_dactyl_config(camera_names=[CAM])
    xml = config.resolve(config.model_xml_path)
    model = compile_spec(load_spec(xml), xml)
    data = mujoco.MjData(model)
    cid = model.camera(CAM).id
    base_pos, base_quat = model.cam_pos.copy(), model.cam_quat.copy()
    comp = CameraRandomizer("cam", CAM, {"mode": "Orbit", "orbit_center": center})
    comp.initialize(SceneContext(model, [CAM], 64, 64))
    positions = []
    for seed in range(6):
        model.cam_pos[:], model.cam_quat[:] = base_pos, base_quat
        entry = EntryContext(model, data, {}, np.array([cid]), BatchContext(1))
        entry.begin(0, seed)
        entry.rng = np.random.default_rng([seed, comp.stream_key])
        comp.run(entry)
        positions.append(np.array(model.cam_pos[cid]))
    base = base_pos[cid]
    d0 = np.linalg.norm(base - center)
    dists = [np.linalg.norm(p - center) for p in positions]
    np.testing.assert_allclose(dists, d0, rtol=1e-9)
    assert np.ptp([p[0] for p in positions]) > 0.05  # it did move around


def test_lighting_rig_rebuilds_only_when_the_head_count_changes(make_dactyl_config, dactyl_states):
    config = make_dactyl_config(camera_names=[CAM])
    with orrb.LocalRenderer(config, chain(("LightingRig", "rig", {"light_head_count": 3}))) as r:
        model0 = r.model  # the renderer's current model (a rebuild replaces it)
        assert model0.nlight == 2 + 3
        r.update(chain(("LightingRig", "rig", {"min_light_height": 0.8, "target": (1.0, 0.9, 0.1)})))
        assert r.model is model0, "a non-structural change rebuilt the model"
        r.update(chain(("LightingRig", "rig", {"light_head_count": 5})))
        assert r.model.nlight == 2 + 5, "changing light_head_count did not rebuild the lights"
        out = r.render_batch({"qpos": dactyl_states[:1], "seed": 0})
    assert out[CAM].mean() > 20


def test_lighting_rig_replaces_the_scene_lights(make_dactyl_config, dactyl_states):
    bare = render(make_dactyl_config, dactyl_states, chain())
    rig = render(make_dactyl_config, dactyl_states, chain(("LightingRig", "rig", {"light_head_count": 3,
                                                                                  "target": (1.0, 0.9, 0.1)})))
    assert np.abs(rig[CAM].astype(int) - bare[CAM]).mean() > 3
    assert 30 < rig[CAM].mean() < 220


# --- post-processing, on a fixed image (no rendering needed) -----------------------------------
def _image_and_depth():
    rng = np.random.default_rng(0)
    h = w = 64
    rgb = np.zeros((2, h, w, 3), np.uint8)
    rgb[:] = (rng.uniform(60, 190, (1, 1, 1, 3))).astype(np.uint8)
    rgb[:, 20:40, 20:40] = 250  # a bright square: bloom source
    depth = np.full((2, h, w), 1.0, np.float32)
    yy, xx = np.mgrid[:h, :w]
    depth[:] = 1.0 - 0.05 * np.exp(-((np.abs(xx - 32) - 12) ** 2) / 20.0)  # two ridges: creases between
    return rgb, depth


def _post(values: dict, seed: int = 0):
    """Post-processes a fixed two-entry batch through the component's hooks (no engine)."""
    comp = PostProcessingRandomizer("pp", "", values)
    batch = BatchContext(2)
    comp.begin_batch(batch)
    entry = EntryContext(None, None, {}, np.zeros(0, dtype=int), batch)
    for i in range(2):
        entry.begin(i, seed)
        entry.rng = np.random.default_rng([seed, i])
        comp.run(entry)
    rgb, depth = _image_and_depth()
    frames = Frames({CAM: rgb.copy()}, {CAM: depth}, {CAM: np.full(2, 45.0)})
    comp.end_batch(frames, batch)
    return rgb, frames.color[CAM]


OFF = {"enable_color_grading": False, "enable_bloom": False, "enable_ambient_occlusion": False}
EFFECTS = {
    "hue": {"enable_color_grading": True, "cg_min_hue_shift": 100.0, "cg_max_hue_shift": 100.0,
            **{f"cg_{a}_{q}": 0.0 for a in ("min", "max") for q in ("saturation", "contrast", "brightness")}},
    "saturation": {"enable_color_grading": True, "cg_min_saturation": -100.0, "cg_max_saturation": -100.0,
                   "cg_min_hue_shift": 0.0, "cg_max_hue_shift": 0.0, "cg_min_contrast": 0.0, "cg_max_contrast": 0.0,
                   "cg_min_brightness": 0.0, "cg_max_brightness": 0.0},
    "contrast": {"enable_color_grading": True, "cg_min_contrast": 100.0, "cg_max_contrast": 100.0,
                 "cg_min_hue_shift": 0.0, "cg_max_hue_shift": 0.0, "cg_min_saturation": 0.0, "cg_max_saturation": 0.0,
                 "cg_min_brightness": 0.0, "cg_max_brightness": 0.0},
    "brightness": {"enable_color_grading": True, "cg_min_brightness": -100.0, "cg_max_brightness": -100.0,
                   "cg_min_hue_shift": 0.0, "cg_max_hue_shift": 0.0, "cg_min_saturation": 0.0, "cg_max_saturation": 0.0,
                   "cg_min_contrast": 0.0, "cg_max_contrast": 0.0},
    "temperature": {"enable_color_grading": True, "cg_min_temperature": 100.0, "cg_max_temperature": 100.0,
                    "cg_min_hue_shift": 0.0, "cg_max_hue_shift": 0.0, "cg_min_saturation": 0.0,
                    "cg_max_saturation": 0.0, "cg_min_contrast": 0.0, "cg_max_contrast": 0.0,
                    "cg_min_brightness": 0.0, "cg_max_brightness": 0.0},
    "tint": {"enable_color_grading": True, "cg_min_tint": 100.0, "cg_max_tint": 100.0,
             "cg_min_hue_shift": 0.0, "cg_max_hue_shift": 0.0, "cg_min_saturation": 0.0, "cg_max_saturation": 0.0,
             "cg_min_contrast": 0.0, "cg_max_contrast": 0.0, "cg_min_brightness": 0.0, "cg_max_brightness": 0.0},
    "bloom": {"enable_bloom": True, "bloom_min_intensity": 2.0, "bloom_max_intensity": 2.0},
    "ambient_occlusion": {"enable_ambient_occlusion": True, "ao_min_intensity": 5.0, "ao_max_intensity": 5.0},
    "grain": {"enable_grain": True, "grain_min_intensity": 1.0, "grain_max_intensity": 1.0,
              "grain_min_size": 2.0, "grain_max_size": 2.0},
}


@pytest.mark.parametrize("effect", sorted(EFFECTS))
def test_each_post_processing_effect_changes_the_image_at_its_range_end(effect):
    rgb, out = _post({**OFF, **EFFECTS[effect]})
    assert np.abs(out.astype(int) - rgb).mean() > 1.0


@pytest.mark.parametrize("effect", sorted(EFFECTS))
def test_each_post_processing_effect_is_a_no_op_at_zero(effect):
    zero = {k: (0.0 if isinstance(v, float) else v) for k, v in EFFECTS[effect].items()}
    rgb, out = _post({**OFF, **zero})
    np.testing.assert_array_equal(out, rgb)


def test_post_processing_at_range_midpoints_looks_natural(make_dactyl_config, dactyl_states):
    bare = render(make_dactyl_config, dactyl_states, chain(), image_width=200, image_height=200)
    pp = render(make_dactyl_config, dactyl_states, chain(("PostProcessingRandomizer", "pp", {
        "cg_min_hue_shift": 0.0, "cg_max_hue_shift": 0.0, "cg_min_saturation": 0.0, "cg_max_saturation": 0.0,
        "cg_min_contrast": 0.0, "cg_max_contrast": 0.0, "cg_min_brightness": 0.0, "cg_max_brightness": 0.0,
        "bloom_min_intensity": 1.0, "bloom_max_intensity": 1.0, "ao_min_intensity": 2.0, "ao_max_intensity": 2.0})),
        image_width=200, image_height=200)
    diff = np.abs(pp[CAM].astype(int) - bare[CAM])
    assert 0.05 < diff.mean() < 6, diff.mean()  # visible but subtle
    assert abs(pp[CAM].mean() - bare[CAM].mean()) < 8


# --- pose components ----------------------------------------------------------------------------
def test_camera_properties_and_calibrator_change_the_view(make_dactyl_config, dactyl_states):
    bare = render(make_dactyl_config, dactyl_states, chain())
    wide = render(make_dactyl_config, dactyl_states, chain(("CameraProperties", "p", {"field_of_view": 40.0}, CAM)))
    calib = render(make_dactyl_config, dactyl_states, chain(("CameraCalibrator", "c", {"camera_name": CAM,
                                                                                         "fov_delta": 0.0})))
    shifted = render(make_dactyl_config, dactyl_states, chain(("CameraCalibrator", "c", {
        "camera_name": CAM, "local_position_delta": (0.05, 0.0, 0.0)})))
    np.testing.assert_array_equal(calib[CAM], bare[CAM])
    assert np.abs(wide[CAM].astype(int) - bare[CAM]).mean() > 3
    assert np.abs(shifted[CAM].astype(int) - bare[CAM]).mean() > 3
    with pytest.raises(ConfigError, match="must name a camera"):
        render(make_dactyl_config, dactyl_states, chain(("CameraProperties", "p", {}, "cube")))


def test_look_at_centres_the_target_and_translate_moves_the_cube(make_dactyl_config, dactyl_states):
    target = (1.0, 0.87, 0.2)
    rc = chain(("LookAt", "look", {"target_offset": target}, CAM),
               ("Tracker", "t", {"camera_names": CAM, "tracked_object_names": "cube:center", "tracked_object_aliases": "c"}))
    qpos = dactyl_states[:1].copy()
    qpos[:, 24:27] = 0.0  # cube at rest: its centre is the target
    with orrb.LocalRenderer(make_dactyl_config(camera_names=[CAM]), rc) as r:
        out = r.render_batch({"qpos": qpos, "seed": 0})
    np.testing.assert_allclose(out[f"tracker_c_X_{CAM}"][0], [0.5, 0.5], atol=1e-6)
    moved = chain(("TranslateRotateScale", "trs", {"translate": (0.0, 0.0, 0.05), "scale": (2.0, 2.0, 2.0)}, "cube"),
                  ("Tracker", "t", {"camera_names": CAM, "tracked_object_names": "cube", "tracked_object_aliases": "c"}))
    base = chain(("Tracker", "t", {"camera_names": CAM, "tracked_object_names": "cube", "tracked_object_aliases": "c"}))
    a = render(make_dactyl_config, dactyl_states, base)
    b = render(make_dactyl_config, dactyl_states, moved)
    assert np.all(b[f"tracker_c_X_{CAM}"][:, 1] < a[f"tracker_c_X_{CAM}"][:, 1] - 0.01)  # higher in the image


# --- shipped configs ----------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["dactyl", "demo_keras"])
def test_shipped_configs_are_well_exposed_and_vary_across_seeds(name, make_dactyl_config, dactyl_states):
    out = render(make_dactyl_config, dactyl_states, None, seeds=(0, 1, 2, 3),
                 renderer_config_path=f"{name}.renderer_config.json")
    images = out[CAM].astype(float)
    means = images.mean(axis=(1, 2, 3))
    assert np.all((means > 8) & (means < 225)), means  # a randomized black table is legitimately dark
    assert np.abs(images[0] - images[1]).mean() > 5
    assert out[f"tracker_cube_X_{CAM}"].shape == (4, 2)


def test_gym_config_lights_a_gymnasium_scene_well_and_varies_across_seeds():
    """gym.renderer_config.json is for arbitrary MuJoCo scenes: check it on Gymnasium's Ant."""
    import os

    import gymnasium

    ant = os.path.join(os.path.dirname(gymnasium.__file__), "envs", "mujoco", "assets", "ant.xml")
    config = orrb.RemoteRendererConfig(camera_names=["track"], image_width=64, image_height=64, model_xml_path=ant,
                                       renderer_config_path=orrb.utils.package_relative_path(
                                           "assets/gym.renderer_config.json"))
    with orrb.LocalRenderer(config) as r:
        qpos = np.tile(r.model.qpos0, (4, 1))
        images = r.render_batch({"qpos": qpos, "seeds": np.arange(4)})["track"].astype(float)
    means = images.mean(axis=(1, 2, 3))
    assert np.all((means > 15) & (means < 225)), means
    assert np.abs(images[0] - images[1]).mean() > 5
