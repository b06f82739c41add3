"""Post-processing as GL shader passes before readback against the numpy path after it.

Both paths apply the same per-entry draws (the streams the component emits are equal); their
pixels differ by float rounding only: the mean absolute difference per channel stays under
2/255 on real Dactyl renders, for each effect alone and for the shipped chain. Depth,
normals and segmentation are the same bits whichever path post-processes the colour.
"""

from __future__ import annotations

import functools
from unittest import mock

import numpy as np
import pytest

import orrb
from conftest import DACTYL_CAMERAS, dactyl_config
from orrb.components.base import Component, register
from orrb.engine import EngineOptions, RenderEngine
from orrb.engine.gl_post import GLPostProcessor

N = 6  # entries per batch
FIELDS = ("hue", "saturation", "contrast", "brightness", "temperature", "tint", "bloom_intensity",
          "bloom_diffusion", "ao_intensity", "grain_colored", "grain_intensity", "grain_size")


def post_config(**props) -> orrb.RendererConfig:
    """A chain of one PostProcessingRandomizer (emitting its draws) with ``props``; every effect
    off unless enabled there."""
    values = {"enable_color_grading": False, "enable_bloom": False, "enable_ambient_occlusion": False,
              "enable_grain": False, "emit_values": True, **props}
    kinds = {bool: "boolProperties", float: "floatProperties"}
    config: dict = {}
    for name, value in values.items():
        config.setdefault(kinds[type(value)], {})[name] = value
    return orrb.RendererConfig.from_json({"components": [
        {"type": "PostProcessingRandomizer", "name": "post", "config": config}]})


EFFECTS = {
    "grading": dict(enable_color_grading=True, cg_min_hue_shift=-40.0, cg_max_hue_shift=40.0,
                    cg_min_temperature=-30.0, cg_max_temperature=30.0, cg_min_tint=-30.0, cg_max_tint=30.0),
    "bloom": dict(enable_bloom=True, bloom_min_intensity=2.0, bloom_max_intensity=4.0,
                  bloom_min_diffusion=1.0, bloom_max_diffusion=10.0),
    "ambient_occlusion": dict(enable_ambient_occlusion=True, ao_min_intensity=3.0, ao_max_intensity=6.0),
    "grain": dict(enable_grain=True, grain_min_intensity=0.05, grain_max_intensity=0.2,
                  grain_min_size=0.5, grain_max_size=3.0, grain_color_probability=0.5),
    # a whole number of pixels: cell edges fall exactly on pixels, where float32 division may round
    "grain_size_3": dict(enable_grain=True, grain_min_intensity=0.05, grain_max_intensity=0.2,
                         grain_min_size=3.0, grain_max_size=3.0, grain_color_probability=0.5),
}
SIZES = {"64px": (64, 64), "128px": (128, 128), "62x50": (62, 50)}


def render(config, renderer_config, gl: bool | None, states, n=N, seed0=11, twice=False, **options):
    """``(tiles the GL passes drew per readback, outputs, outputs of the same batch again or
    None)`` of a fresh engine with ``EngineOptions(gl_post_processing=gl, **options)``; with
    ``gl=False`` no tile may reach the GL passes."""
    drawn = []
    passes = GLPostProcessor._passes

    def counting(self, con, tiles):
        drawn.append(len(tiles))
        return passes(self, con, tiles)

    with mock.patch.object(GLPostProcessor, "_passes", counting), \
            RenderEngine(config, renderer_config, options=EngineOptions(gl_post_processing=gl, **options)) as engine:
        out = engine.render(states[:n], np.arange(seed0, seed0 + n, dtype=np.uint64))
        again = engine.render(states[:n], np.arange(seed0, seed0 + n, dtype=np.uint64)) if twice else None
    if gl is False:
        assert not drawn, "the GL passes ran with gl_post_processing=False"
    return drawn, out, again


@functools.lru_cache(maxsize=None)
def _unprocessed(size: tuple[int, int], states_bytes: bytes, columns: int) -> dict:
    states = np.frombuffer(states_bytes).reshape(-1, columns)
    return render(dactyl_config(image_width=size[0], image_height=size[1]), post_config(), False, states)[1]


def unprocessed(size: tuple[int, int], states: np.ndarray) -> dict:
    """The batch ``render`` draws, with every effect off (cached per size)."""
    return _unprocessed(size, np.ascontiguousarray(states[:N]).tobytes(), states.shape[1])


def mean_difference(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Mean absolute difference per colour channel, 0-255 units."""
    return np.abs(a[..., :3].astype(np.int16) - b[..., :3]).reshape(-1, 3).mean(axis=0)


def assert_looks_the_same(gpu: np.ndarray, cpu: np.ndarray, what: str) -> None:
    """Mean absolute difference under 2/255 per channel, and at most 0.1% of the values off by
    more than one unit (rounding moves values by one; a misplaced effect moves many by more)."""
    mean = mean_difference(gpu, cpu)
    off = np.mean(np.abs(gpu[..., :3].astype(np.int16) - cpu[..., :3]) > 1)
    assert np.all(mean < 2.0) and off <= 1e-3, f"{what}: mean difference {mean} per channel, {off:.2%} off by > 1"


@pytest.mark.parametrize("effect, size", [(e, s) for e in sorted(EFFECTS) if e != "grain_size_3" for s in SIZES]
                         + [("grain_size_3", "62x50")])
def test_each_effect_on_the_gpu_draws_the_same_and_looks_the_same_as_on_the_cpu(effect, size, dactyl_states):
    size = SIZES[size]
    config = dactyl_config(image_width=size[0], image_height=size[1])
    chain = post_config(**EFFECTS[effect])
    _, cpu, _ = render(config, chain, False, dactyl_states)
    chosen, gpu, gpu_again = render(config, chain, True, dactyl_states, twice=True)
    plain = unprocessed(size, dactyl_states)
    assert sum(chosen)
    for field in FIELDS:
        np.testing.assert_array_equal(gpu[f"post_{field}"], cpu[f"post_{field}"], err_msg=field)
    for camera in DACTYL_CAMERAS:
        effect_size = mean_difference(cpu[camera], plain[camera]).mean()
        assert effect_size > 1.0, f"{effect} barely changes {camera}: {effect_size}"
        assert_looks_the_same(gpu[camera], cpu[camera], f"{effect} {camera}")
        np.testing.assert_array_equal(gpu_again[camera], gpu[camera])  # deterministic, no GL state left behind


def test_shipped_dactyl_chain_on_the_gpu_matches_the_cpu_and_keeps_depth_normals_and_segmentation(dactyl_states):
    config = dactyl_config(image_width=96, image_height=96, renderer_config_path="dactyl.renderer_config.json",
                           render_depth=True, render_normals=True, render_segmentation=True)
    _, cpu, _ = render(config, None, False, dactyl_states, n=4)
    chosen, gpu, gpu_again = render(config, None, True, dactyl_states, n=4, twice=True)
    assert sum(chosen)
    assert set(gpu) == set(cpu)
    for key, value in cpu.items():
        if key in DACTYL_CAMERAS:
            assert_looks_the_same(gpu[key], value, key)
            np.testing.assert_array_equal(gpu_again[key], gpu[key])
        else:  # depth, normals, segmentation, streams: the same bits
            np.testing.assert_array_equal(gpu[key], value, err_msg=key)


def test_gpu_path_without_msaa_matches_the_cpu_path(dactyl_states):
    config = dactyl_config(render_settings=orrb.RenderSettings(msaa_samples=0))
    chain = post_config(**EFFECTS["ambient_occlusion"], **EFFECTS["bloom"], **EFFECTS["grading"])
    _, cpu, _ = render(config, chain, False, dactyl_states, n=3)
    _, gpu, _ = render(config, chain, True, dactyl_states, n=3)
    for camera in DACTYL_CAMERAS:
        assert_looks_the_same(gpu[camera], cpu[camera], camera)


def test_entry_on_the_gpu_path_renders_the_same_alone_and_in_a_batch(dactyl_states):
    chain = post_config(**EFFECTS["grain"], **EFFECTS["bloom"], **EFFECTS["ambient_occlusion"])
    config = dactyl_config()
    with RenderEngine(config, chain, options=EngineOptions(gl_post_processing=True)) as engine:
        batch = engine.render(dactyl_states[:4], np.array([5, 6, 7, 8], np.uint64))
        alone = engine.render(dactyl_states[2:3], np.array([7], np.uint64))
    for camera in DACTYL_CAMERAS:
        np.testing.assert_array_equal(alone[camera][0], batch[camera][2])


def test_auto_choice_on_a_software_rasterizer_is_the_cpu_path_bit_for_bit(dactyl_states):
    config = dactyl_config(renderer_config_path="dactyl.renderer_config.json")
    with RenderEngine(config) as engine:
        if engine.gl_hardware:
            pytest.skip("the GL context renders on hardware: auto chooses the GL passes there")
        assert engine.gl_post_processing is False
        auto = engine.render(dactyl_states[:3], np.arange(11, 14, dtype=np.uint64))
    _, cpu, _ = render(config, None, False, dactyl_states, n=3)
    for key, value in cpu.items():
        np.testing.assert_array_equal(auto[key], value, err_msg=key)


@register
class PaintCorner(Component):
    """A component for these tests: an image stage that paints pixel (0, 0) of every camera white."""

    type_name = "TestPaintCorner"

    def end_batch(self, frames, batch):
        for color in frames.color.values():
            color[:, 0, 0, :3] = 255


def test_post_processing_after_another_image_stage_stays_on_the_cpu_in_chain_order(dactyl_states):
    config = dactyl_config()
    before = post_config(**EFFECTS["bloom"], **EFFECTS["grading"])
    before.add("TestPaintCorner", "paint")  # after post-processing: GL passes, then the paint
    after = orrb.RendererConfig([before.components[1], before.components[0]])  # the paint first
    _, cpu_before, _ = render(config, before, False, dactyl_states, n=2)
    _, gpu_before, _ = render(config, before, True, dactyl_states, n=2)
    _, cpu_after, _ = render(config, after, False, dactyl_states, n=2)
    _, gpu_after, _ = render(config, after, True, dactyl_states, n=2)
    for camera in DACTYL_CAMERAS:
        assert np.all(gpu_before[camera][:, 0, 0, :3] == 255)
        assert_looks_the_same(gpu_before[camera], cpu_before[camera], camera)
        assert not np.all(cpu_after[camera][:, 0, 0, :3] == 255)  # the paint was post-processed
        np.testing.assert_array_equal(gpu_after[camera], cpu_after[camera])  # all of it on the CPU


def test_tiles_in_two_rows_at_odd_offsets_match_the_cpu_path(dactyl_states):
    """Frames 1402 px wide lie in a 2 x 2 grid of tiles (the framebuffer is at most 4096 wide),
    at offsets that are no multiple of the effects' blocks."""
    config = dactyl_config(image_width=1402, image_height=42)
    chain = post_config(**EFFECTS["bloom"], **EFFECTS["ambient_occlusion"], **EFFECTS["grading"], **EFFECTS["grain"])
    _, cpu, _ = render(config, chain, False, dactyl_states, n=2)
    _, gpu, _ = render(config, chain, True, dactyl_states, n=2)
    for camera in DACTYL_CAMERAS:
        assert_looks_the_same(gpu[camera], cpu[camera], camera)


def test_two_post_processors_on_the_gpu_apply_in_chain_order_as_with_numpy(dactyl_states):
    first = post_config(**EFFECTS["bloom"], **EFFECTS["grading"]).components[0]
    second = post_config(**EFFECTS["ambient_occlusion"], **EFFECTS["grain"]).components[0]
    second.name = "post2"
    chain = orrb.RendererConfig([first, second])
    _, cpu, _ = render(dactyl_config(), chain, False, dactyl_states, n=3)
    _, gpu, _ = render(dactyl_config(), chain, True, dactyl_states, n=3)
    for camera in DACTYL_CAMERAS:
        assert_looks_the_same(gpu[camera], cpu[camera], camera)


def test_gpu_path_with_several_entries_per_readback_matches_the_cpu_path(dactyl_states):
    """Entries tiled into one readback (their tiles fixed by their seeds) are post-processed
    each with its own draws."""
    chain = post_config(**EFFECTS["bloom"], **EFFECTS["ambient_occlusion"], **EFFECTS["grading"], **EFFECTS["grain"])
    config = dactyl_config()
    drawn, gpu, _ = render(config, chain, True, dactyl_states[:4], n=4, seed0=20, entries_per_readback=4)
    _, cpu, _ = render(config, chain, False, dactyl_states[:4], n=4, seed0=20)
    assert max(drawn) > len(DACTYL_CAMERAS), f"no readback held several entries: {drawn}"
    for camera in DACTYL_CAMERAS:
        assert_looks_the_same(gpu[camera], cpu[camera], camera)
