"""The "warp" backend (MuJoCo Warp's batch ray tracer, here on Warp's CPU device) against the GL engine.

Tests that render with Warp are skipped (with the install line) when ``mujoco_warp`` is missing.
One Warp engine per configuration and module: its kernels compile once per process (seconds on
the CPU, then cached on disk by Warp). Images are small; the comparisons with GL use 128 px.
"""

from __future__ import annotations

import importlib.util
import sys

import numpy as np
import pytest

import orrb
from orrb.config import ComponentSpec, RendererConfig

from conftest import dactyl_config
from orrb.engine import RenderEngine, create_engine
from orrb.engine.warp_backend import WarpRenderEngine

needs_warp = pytest.mark.skipif(importlib.util.find_spec("mujoco_warp") is None,
                                reason='mujoco_warp is not installed: pip install "orrb[warp]"')

DACTYL_CHAIN = orrb.utils.package_relative_path("assets/dactyl.renderer_config.json")


def changed_pixels(a: np.ndarray, b: np.ndarray) -> int:
    """How many pixels of two ``uint8 [B, H, W, 3]`` batches differ by more than 8 levels in a channel."""
    return int((np.abs(a.astype(int) - b.astype(int)).max(-1) > 8).sum())


@pytest.fixture(scope="module")
def states(dactyl_states) -> np.ndarray:
    return dactyl_states[:4]


@pytest.fixture(scope="module")
def plain_pair(states):
    """GL and Warp outputs at 128 px, every modality, no components (so no camera randomization)."""
    config = dactyl_config(image_width=128, image_height=128, render_depth=True, render_segmentation=True,
                           render_normals=True, render_alpha=True)
    seeds = np.arange(len(states), dtype=np.uint64)
    with RenderEngine(config) as gl:
        gl_out = gl.render(states, seeds)
    config.backend = "warp"
    with create_engine(config) as warp:
        assert isinstance(warp, WarpRenderEngine)
        warp_out = warp.render(states, seeds)
    return config, gl_out, warp_out


@pytest.fixture(scope="module")
def chain_engines():
    """GL and Warp engines at 64 px with the full Dactyl chain (tracker included)."""
    config = dactyl_config(renderer_config_path=DACTYL_CHAIN)
    gl = RenderEngine(config)
    warp_config = config.copy()
    warp_config.backend = "warp"
    warp = create_engine(warp_config)
    yield gl, warp
    gl.close()
    warp.close()


@needs_warp
def test_every_output_key_dtype_and_shape_equals_gl(plain_pair):
    _, gl_out, warp_out = plain_pair
    assert list(warp_out) == list(gl_out)
    for key in gl_out:
        assert warp_out[key].dtype == gl_out[key].dtype, key
        assert warp_out[key].shape == gl_out[key].shape, key


@needs_warp
def test_segmentation_masks_agree_with_gl_per_class(plain_pair):
    config, gl_out, warp_out = plain_pair
    for camera in config.camera_names:
        gl_seg, warp_seg = gl_out[f"{camera}_segmentation"], warp_out[f"{camera}_segmentation"]
        for cls in np.union1d(np.unique(gl_seg), np.unique(warp_seg)):
            a, b = gl_seg == cls, warp_seg == cls
            iou = (a & b).sum() / (a | b).sum()
            assert iou >= 0.95, f"{camera} class {cls}: IoU {iou:.3f}"


@needs_warp
def test_depth_agrees_with_gl_within_a_centimetre_where_both_hit(plain_pair):
    config, gl_out, warp_out = plain_pair
    for camera in config.camera_names:
        gl_d, warp_d = gl_out[f"{camera}_depth"], warp_out[f"{camera}_depth"]
        both = (gl_d > 0) & (warp_d > 0)
        assert both.mean() > 0.5
        close = np.abs(gl_d - warp_d)[both] <= 0.01
        # silhouette pixels (a ray and a rasterized sample just either side of an edge) and the
        # sites GL draws but the ray tracer does not are the only misses
        assert close.mean() >= 0.98, f"{camera}: {close.mean():.4f} of pixels within 1 cm"
        assert np.median(np.abs(gl_d - warp_d)[both]) < 0.002


@needs_warp
def test_row_zero_is_the_top_of_the_image_as_in_gl(plain_pair):
    config, gl_out, warp_out = plain_pair
    camera = config.camera_names[0]
    gl_seg, warp_seg = gl_out[f"{camera}_segmentation"], warp_out[f"{camera}_segmentation"]
    assert (gl_seg == warp_seg).mean() > 0.95
    assert (gl_seg == warp_seg[:, ::-1]).mean() < (gl_seg == warp_seg).mean()


@needs_warp
def test_tracker_labels_are_identical_to_gl(chain_engines, states):
    gl, warp = chain_engines
    seeds = np.array([5, 6, 7, 8], dtype=np.uint64)
    gl_out, warp_out = gl.render(states, seeds), warp.render(states, seeds)
    tracker_keys = [k for k in gl_out if k.startswith("tracker")]
    assert tracker_keys
    for key in tracker_keys:
        assert np.array_equal(gl_out[key], warp_out[key]), key


@needs_warp
def test_same_seed_is_bit_identical_and_another_seed_changes_outputs(chain_engines, states):
    _, warp = chain_engines
    a = warp.render(states, np.array([1, 2, 3, 4], dtype=np.uint64))
    b = warp.render(states, np.array([1, 2, 3, 4], dtype=np.uint64))
    c = warp.render(states, np.array([9, 2, 3, 4], dtype=np.uint64))
    for key in a:
        assert np.array_equal(a[key], b[key]), key
    assert not np.array_equal(a["vision_cam_left"][0], c["vision_cam_left"][0])
    assert np.array_equal(a["vision_cam_left"][1:], c["vision_cam_left"][1:])  # entries are independent


@needs_warp
def test_an_entry_renders_the_same_alone_and_in_a_batch(chain_engines, states):
    _, warp = chain_engines
    seeds = np.array([1, 2, 3, 4], dtype=np.uint64)
    batch = warp.render(states, seeds)
    alone = warp.render(states[2:3], seeds[2:3])
    for key in alone:
        assert np.array_equal(alone[key][0], batch[key][2]), key


@needs_warp
@pytest.mark.parametrize("name", ["camera_randomizer", "post_processing_randomizer", "cube_face_randomizer",
                                  "lighting_rig", "light_randomizer", "material_randomizer"])
def test_each_dactyl_component_changes_the_images(chain_engines, states, name):
    _, warp = chain_engines
    seeds = np.array([1, 2], dtype=np.uint64)
    full = warp.render(states[:2], seeds)["vision_cam_left"]
    kind = {c.name: c.type_name for c in warp.components}[name]
    warp.update(RendererConfig([ComponentSpec(kind, name, "", {"enabled": False})]))
    try:
        without = warp.render(states[:2], seeds)["vision_cam_left"]
    finally:
        warp.update(RendererConfig([ComponentSpec(kind, name, "", {"enabled": True})]))
    assert changed_pixels(full, without) >= 20, name


@needs_warp
@pytest.mark.parametrize("spec", [
    ("JointRandomizer", "joints", {}, ""),
    ("TranslateRotateScale", "trs", {"translate": (0.0, 0.0, 0.03), "scale": (2.0, 2.0, 2.0)}, "cube"),
    ("Hide", "hide_cube", {"geom_prefix": "cube:"}, ""),
    ("CameraCalibrator", "calib", {"fov_delta": 8.0}, "vision_cam_left"),
    ("CameraProperties", "props", {"field_of_view": 60.0}, "vision_cam_left"),
    ("LookAt", "look", {"target_offset": (1.0, 0.87, 0.2)}, "vision_cam_left"),
])
def test_scene_components_change_the_images(states, spec):
    config = dactyl_config(camera_names=["vision_cam_left"], backend="warp")
    kind, name, values, path = spec
    seeds = np.array([3, 4], dtype=np.uint64)
    with create_engine(config) as plain:
        before = plain.render(states[:2], seeds)["vision_cam_left"]
    with create_engine(config, RendererConfig([ComponentSpec(kind, name, path, values)])) as engine:
        after = engine.render(states[:2], seeds)["vision_cam_left"]
    assert changed_pixels(before, after) >= 20, kind


@needs_warp
def test_the_pool_renders_warp_as_the_local_renderer_does(states):
    config = dactyl_config(renderer_config_path=DACTYL_CHAIN, backend="warp", render_segmentation=True)
    batch = {"qpos": states, "seed": 17}
    with orrb.LocalRenderer(config) as local:
        reference = local.render_batch(batch)
    servers = orrb.utils.build_server_configs(1, 1, orrb.utils.free_base_port(1))
    with orrb.RemoteRenderer("test-warp-pool", servers, config) as pool:
        result = pool.render_batch(batch)
    for key in reference:
        assert np.array_equal(result[key], reference[key]), key


@needs_warp
def test_make_vec_steps_with_a_warp_renderer():
    env_config = dactyl_config(camera_names=["vision_cam_left"], backend="warp")
    with orrb.LocalRenderer(env_config, RendererConfig.load(DACTYL_CHAIN)) as renderer:
        envs = orrb.make_vec("OrrbDactyl-v0", num_envs=2, vectorization_mode="sync", width=64, height=64,
                             camera_names=["vision_cam_left"], renderer=renderer)
        try:
            obs, _ = envs.reset(seed=0)
            obs, *_ = envs.step(envs.action_space.sample())
        finally:
            envs.close()
    assert obs["vision_cam_left"].shape == (2, 64, 64, 3)
    assert obs["vision_cam_left"].std() > 5  # an image, not a blank frame
    assert not np.array_equal(obs["vision_cam_left"][0], obs["vision_cam_left"][1])


def test_unknown_backend_is_refused_naming_the_accepted_ones():
    config = dactyl_config(backend="vulkan")
    with pytest.raises(ValueError, match=r"backend must be one of \['gl', 'warp'\], got 'vulkan'"):
        config.validate()


@needs_warp
def test_a_component_the_backend_cannot_express_is_refused_at_build_naming_it(monkeypatch):
    from orrb.engine import warp_backend

    monkeypatch.setattr(warp_backend, "SUPPORTED_COMPONENTS", warp_backend.SUPPORTED_COMPONENTS - {"Tracker"})
    chain = RendererConfig([ComponentSpec("Tracker", "labels", "", {"camera_names": "vision_cam_left",
                                                                      "tracked_object_names": "cube"})])
    with pytest.raises(orrb.ConfigError, match=r"component 'labels' \(Tracker\).*'warp' backend cannot express"):
        create_engine(dactyl_config(backend="warp"), chain)


def test_every_built_in_component_type_is_carried_over():
    from orrb.components.base import registry
    from orrb.engine.warp_backend import SUPPORTED_COMPONENTS

    built_in = {name for name, cls in registry().items() if cls.__module__.startswith("orrb.components.")}
    assert built_in == SUPPORTED_COMPONENTS  # (other tests register components of their own)


def test_the_backend_travels_with_the_config_dict():
    config = dactyl_config(backend="warp")
    assert orrb.RemoteRendererConfig.from_dict(config.to_dict()).backend == "warp"
    assert orrb.RemoteRendererConfig().backend == "gl"


def test_warp_without_mujoco_warp_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "mujoco_warp", None)
    with pytest.raises(ModuleNotFoundError, match=r'pip install "orrb\[warp\]"'):
        create_engine(dactyl_config(backend="warp"))


@needs_warp
def test_an_update_that_unhides_geoms_and_a_scaled_finger_render_and_track_as_in_gl(states):
    chain = RendererConfig()
    chain.add("Hide", "hide", geom_prefix="cube:")
    chain.add("TranslateRotateScale", "grow", path="robot0:ffdistal", scale=(3.0, 3.0, 3.0))
    chain.add("Tracker", "t", camera_names="vision_cam_left", tracked_object_names="robot0:ffdistal",
              tracked_object_aliases="ff")
    config = dactyl_config(camera_names=["vision_cam_left"], render_segmentation=True)
    warp_config = config.copy()
    warp_config.backend = "warp"
    seeds = np.arange(len(states), dtype=np.uint64)
    unhide = RendererConfig()
    unhide.add("Hide", "hide", enabled=False)
    with RenderEngine(config, chain) as gl, create_engine(warp_config, chain) as warp:
        cube = gl.class_names.index("cube")
        outputs = []
        for _ in range(2):  # hidden, then shown again by the update
            outputs.append((gl.render(states, seeds), warp.render(states, seeds)))
            gl.update(unhide)
            warp.update(unhide)
    (gl_hidden, warp_hidden), (gl_shown, warp_shown) = outputs
    assert not (warp_hidden["vision_cam_left_segmentation"] == cube).any()
    a, b = gl_shown["vision_cam_left_segmentation"] == cube, warp_shown["vision_cam_left_segmentation"] == cube
    assert a.sum() > 100 and (a & b).sum() / (a | b).sum() >= 0.9  # the ray tracer draws the cube again
    for out in (gl_hidden, gl_shown):  # the added site geoms count neither for the scale nor the box
        key = "tracker_ff_X_vision_cam_left_bbox"
        assert np.array_equal(out[key], (warp_hidden if out is gl_hidden else warp_shown)[key])
