"""EngineOptions: checked at construction, frozen, and how they size the image stage's chunks (no GL context)."""

from __future__ import annotations

import dataclasses

import pytest

from conftest import dactyl_config
from orrb.engine import EngineOptions, RenderEngine


@pytest.mark.parametrize("options, error", [
    ({"setup_ahead": 1}, TypeError), ({"image_overlap": "yes"}, TypeError), ({"one_blit_readback": None}, TypeError),
    ({"image_chunk_pixels": 2.5}, TypeError), ({"image_chunk_pixels": True}, TypeError),
    ({"image_chunk_pixels": 0}, ValueError), ({"gl_post_processing": 1}, TypeError),
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
