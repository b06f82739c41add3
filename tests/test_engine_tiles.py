"""Several entries per readback: tiles placed by seed (the same bits alone, in a batch, sharded
over a pool), bounded by the framebuffer limits; the pixel-buffer readback gives the plain
readback's bits."""

from __future__ import annotations

import numpy as np
import pytest

import orrb
from conftest import DACTYL_CAMERAS, assert_within_tile_rounding, dactyl_config
from orrb.engine import EngineOptions, RenderEngine
from orrb.engine.options import ENTRIES_PER_READBACK_ENV

TILES = {"entries_per_readback": 24}  # as many as the limits allow (the default on hardware GL)


def render(config, states, seeds, **options) -> tuple[dict[str, np.ndarray], RenderEngine]:
    with RenderEngine(config, options=EngineOptions(**options)) as engine:
        return engine.render(states, np.asarray(seeds, np.uint64)), engine


@pytest.fixture(scope="module")
def all_modalities():
    return dactyl_config(image_width=48, image_height=48, render_depth=True, render_normals=True,
                         render_segmentation=True)


def test_a_batch_is_read_back_in_chunks_of_entries_that_differ_from_one_entry_per_readback_by_edge_rounding(
        all_modalities, dactyl_states):
    seeds = np.arange(3, 22)  # 19 entries: 8 per readback, the first chunk partial (3 % 8 = 3)
    chunked, engine = render(all_modalities, dactyl_states[:19], seeds, **TILES)
    per_entry, per_entry_engine = render(all_modalities, dactyl_states[:19], seeds, entries_per_readback=1)
    assert engine.tiles.groups == 8 and per_entry_engine.tiles.groups == 1  # 3 cameras of 48 x 48: 24 frames
    assert sorted(chunked) == sorted(per_entry)
    group_zero = seeds % 8 == 0  # the first group is the single entry's tile: the same bits
    for key, value in per_entry.items():
        np.testing.assert_array_equal(chunked[key][group_zero], value[group_zero], err_msg=key)
        assert_within_tile_rounding(chunked[key], value, key)
    assert chunked["vision_cam_left"].std() > 10, "blank image"
    assert not np.array_equal(chunked["vision_cam_left_depth"], per_entry["vision_cam_left_depth"])


def test_an_entry_gives_the_same_bits_alone_as_in_a_chunked_batch_with_the_full_chain(dactyl_states):
    """The tile depends on the seed alone, never on the batch: alone or anywhere in a batch,
    an entry is drawn at the same position (components included)."""
    config = dactyl_config(image_width=40, image_height=40, render_depth=True, render_segmentation=True,
                           renderer_config_path="dactyl.renderer_config.json")
    seeds = np.array([5, 6, 7, 8, 9, 10, 11, 12, 13, 7, 9], np.uint64)  # full chunks, then repeats
    with RenderEngine(config, options=EngineOptions(**TILES)) as engine:
        batch = engine.render(dactyl_states[:11], seeds)
        for i in (0, 4, 9, 10):
            alone = engine.render(dactyl_states[i:i + 1], seeds[i:i + 1])
            for key, value in alone.items():
                np.testing.assert_array_equal(value[0], batch[key][i], err_msg=f"{key}, entry {i}")


def test_sharding_over_two_servers_with_entries_tiled_by_seed_is_bit_identical_to_local_renderer(
        monkeypatch, dactyl_states):
    monkeypatch.setenv(ENTRIES_PER_READBACK_ENV, "24")  # the spawned servers inherit it
    config = dactyl_config(camera_names=["vision_cam_left"], image_width=32, image_height=32, render_depth=True,
                           render_segmentation=True)
    batch = {"qpos": dactyl_states[:40], "seed": 7}  # shards of 20: the second starts mid-cycle
    with orrb.LocalRenderer(config) as local:
        reference = local.render_batch(batch)
    configs = orrb.utils.build_server_configs(1, 2, orrb.utils.free_base_port(2))
    with orrb.RemoteRenderer("test-tiles-shard", configs, config) as pool:
        sharded = pool.render_batch(batch)
    keys = [k for k in reference if k.startswith("vision_cam")]
    for key in keys:
        np.testing.assert_array_equal(sharded[key], reference[key], err_msg=key)
    with RenderEngine(config, options=EngineOptions(entries_per_readback=1)) as engine:
        per_entry = engine.render(dactyl_states[:40], np.arange(7, 47, dtype=np.uint64))
    assert not np.array_equal(per_entry["vision_cam_left_depth"], reference["vision_cam_left_depth"]), \
        "the servers did not tile entries"


@pytest.mark.parametrize("one_blit", [True, False])
def test_pixel_buffer_readback_gives_the_bits_of_the_plain_readback(one_blit, dactyl_states):
    config = dactyl_config(image_width=48, image_height=48, render_depth=True, render_normals=True,
                           render_alpha=True, renderer_config_path="dactyl.renderer_config.json")
    seeds = np.arange(20, 37)  # 17 entries: three chunks, one in flight while the next draws
    plain, _ = render(config, dactyl_states[:17], seeds, pbo_readback=False, one_blit_readback=one_blit, **TILES)
    pbo, _ = render(config, dactyl_states[:17], seeds, pbo_readback=True, one_blit_readback=one_blit, **TILES)
    assert sorted(pbo) == sorted(plain)
    for key, value in plain.items():
        np.testing.assert_array_equal(pbo[key], value, err_msg=key)
    assert plain[DACTYL_CAMERAS[0]].std() > 10 and (plain[f"{DACTYL_CAMERAS[0]}_depth"] > 0).any()


@pytest.mark.parametrize("entries", [1, 24])
def test_pixel_buffer_readback_is_on_when_asked_and_reads_every_modality_as_the_plain_readback(
        entries, all_modalities, dactyl_states):
    seeds = np.arange(9, dtype=np.uint64)
    with RenderEngine(all_modalities, options=EngineOptions(pbo_readback=True, entries_per_readback=entries)) as engine:
        assert engine.pbo_readback is True
        pbo = engine.render(dactyl_states[:9], seeds)
    assert engine.pbo_readback is False  # closed: nothing held
    plain, _ = render(all_modalities, dactyl_states[:9], seeds, pbo_readback=False, entries_per_readback=entries)
    for key, value in plain.items():
        np.testing.assert_array_equal(pbo[key], value, err_msg=key)


def test_cameras_beyond_the_tile_limits_wrap_into_later_readbacks_with_either_readback(dactyl_states):
    """3 cameras of 640 x 640 exceed the 2**20 pixels of a readback: an entry's cameras are
    read back in two parts; pixel buffers and post-processing still see every entry."""
    config = dactyl_config(image_width=640, image_height=640, render_depth=True,
                           renderer_config_path="dactyl.renderer_config.json")
    seeds = np.arange(3)
    plain, engine = render(config, dactyl_states[:3], seeds, pbo_readback=False, **TILES)
    pbo, _ = render(config, dactyl_states[:3], seeds, pbo_readback=True, **TILES)
    assert engine.tiles.groups == 1 and engine.tiles.per_group == 2
    for key, value in plain.items():
        np.testing.assert_array_equal(pbo[key], value, err_msg=key)
    assert all(plain[camera].std() > 10 for camera in DACTYL_CAMERAS)


@pytest.mark.parametrize("cameras", [1, 3, 5])
def test_tile_layouts_stay_within_the_pixel_and_framebuffer_limits(cameras):
    from orrb.engine.frames import TileLayout

    for width in range(16, 1100, 24):
        for height in range(16, 700, 24):
            for entries in (1, 2, 4, None):
                t = TileLayout.for_cameras(cameras, width, height, entries)
                fb_width, fb_height = t.framebuffer
                where = f"{cameras} cameras of {width}x{height}, entries {entries}: {t.cols}x{t.rows} tiles"
                assert t.cols * t.rows == 1 or fb_width * fb_height <= 2**20, where
                assert t.cols * t.rows == 1 or (fb_width <= 4096 and fb_height <= 2048), where
                assert t.groups >= 1 and t.groups * t.per_group <= t.cols * t.rows, where
                assert entries is None or t.groups <= entries, where
