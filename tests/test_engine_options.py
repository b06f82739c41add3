"""EngineOptions: checked at construction, frozen, and how they size the image stage's chunks (no GL context)."""

from __future__ import annotations

import dataclasses
import re

import numpy as np
import pytest

from conftest import dactyl_config
from orrb.engine import EngineOptions, RenderEngine
from orrb.engine.frames import TileLayout
from orrb.engine.options import ENTRIES_PER_READBACK_ENV


@pytest.mark.parametrize("options, error", [
    ({"setup_ahead": 1}, TypeError), ({"image_overlap": "yes"}, TypeError), ({"one_blit_readback": None}, TypeError),
    ({"image_chunk_pixels": 2.5}, TypeError), ({"image_chunk_pixels": True}, TypeError),
    ({"image_chunk_pixels": 0}, ValueError), ({"entries_per_readback": 0}, ValueError),
    ({"entries_per_readback": 2.0}, TypeError), ({"entries_per_readback": False}, TypeError),
    ({"pbo_readback": 1}, TypeError), ({"gl_post_processing": 1}, TypeError),
    ({"gl_post_processing": "auto"}, TypeError)])
def test_engine_options_of_the_wrong_kind_or_value_are_refused_naming_the_option(options, error):
    name = next(iter(options))
    with pytest.raises(error, match=f"EngineOptions.{name}"):
        EngineOptions(**options)


def test_engine_options_are_frozen_and_an_engine_takes_only_engine_options():
    with pytest.raises(dataclasses.FrozenInstanceError):
        EngineOptions().image_overlap = False
    with pytest.raises(TypeError, match="EngineOptions, got dict"):
        RenderEngine(dactyl_config(), options={"image_overlap": False})


@pytest.mark.parametrize("pixels, size, hardware, entries", [
    (None, 200, True, 16), (None, 200, False, 4), (None, 1000, False, 1), (4 * 48 * 48, 48, True, 4),
    (10**9, 64, False, 244140)])
def test_image_chunks_hold_the_entries_that_fit_the_pixel_budget_and_at_least_one(pixels, size, hardware, entries):
    assert EngineOptions(image_chunk_pixels=pixels).chunk_entries(size, size, hardware) == entries


@pytest.mark.parametrize("cameras, size, wanted, groups", [
    (3, 200, None, 8), (3, 128, None, 8), (3, 48, None, 8), (1, 32, None, 24), (3, 48, 2, 2), (3, 48, 1, 1),
    (30, 64, None, 1), (1, 1024, None, 1), (13, 64, None, 1), (12, 64, None, 2)])
def test_entries_per_readback_fill_at_most_the_tiling_limits(cameras, size, wanted, groups):
    layout = TileLayout.for_cameras(cameras, size, size, wanted)
    assert layout.groups == groups
    width, height = layout.framebuffer
    assert width <= max(4096, size) and height <= max(2048, size)
    assert groups == 1 or groups * cameras <= min(24, 2**20 // (size * size))
    slots = {g * layout.group_slots + c % layout.per_group for g in range(groups) for c in range(cameras)}
    assert len(slots) == groups * min(cameras, layout.per_group) and max(slots) < layout.cols * layout.rows


def test_an_entrys_tile_group_is_its_seed_modulo_the_groups_whatever_the_batch():
    layout = TileLayout.for_cameras(3, 64, 64, None)
    seeds = np.array([0, 7, 8, 9, 2**64 - 1, 2**63 + 5], dtype=np.uint64)
    np.testing.assert_array_equal(layout.groups_of(seeds), [0, 7, 0, 1, (2**64 - 1) % 8, (2**63 + 5) % 8])
    np.testing.assert_array_equal(layout.groups_of(seeds[3:4]), layout.groups_of(seeds)[3:4])


def test_entries_per_readback_default_to_all_that_fit_on_hardware_one_on_software_or_the_environment(monkeypatch):
    monkeypatch.delenv(ENTRIES_PER_READBACK_ENV, raising=False)
    assert EngineOptions().readback_entries(hardware=True) is None  # as many as the limits allow
    assert EngineOptions().readback_entries(hardware=False) == 1
    assert EngineOptions(entries_per_readback=4).readback_entries(hardware=False) == 4
    monkeypatch.setenv(ENTRIES_PER_READBACK_ENV, "6")
    assert EngineOptions().readback_entries(hardware=False) == 6
    assert EngineOptions(entries_per_readback=2).readback_entries(hardware=True) == 2
    for bad in ("many", "0", "3_0", "+5", "\u0663"):  # the last: ARABIC-INDIC DIGIT THREE
        monkeypatch.setenv(ENTRIES_PER_READBACK_ENV, bad)
        with pytest.raises(ValueError, match=re.escape(f"{ENTRIES_PER_READBACK_ENV} must be an int >= 1, got {bad!r}")):
            EngineOptions().readback_entries(hardware=True)
