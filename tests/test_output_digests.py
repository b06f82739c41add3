"""Every output array of a fixed set of batches is bit-identical to the recorded digests.

Covers every modality and component stream of the shipped scene with each shipped renderer
config, through ``LocalRenderer`` and through a pool of two servers. The digests are
recorded with ``python tests/digests.py --write``; only a change meant to alter the
renders rewrites them.
"""

from __future__ import annotations

import json

import pytest

import orrb
import digests  # tests/digests.py


@pytest.fixture(scope="module")
def recorded() -> dict[str, dict[str, str]]:
    with open(digests.DIGEST_FILE) as f:
        return json.load(f)


@pytest.mark.parametrize("renderer_config_path", digests.CONFIGS)
def test_local_outputs_match_recorded_digests(recorded, renderer_config_path):
    got = digests.render_local(renderer_config_path)
    want = recorded[str(renderer_config_path)]
    assert sorted(got) == sorted(want), "the response keys changed"
    changed = [key for key in want if got[key] != want[key]]
    assert not changed, f"outputs changed for {renderer_config_path}: {changed}"


def test_pool_outputs_match_recorded_digests(recorded):
    path = "dactyl.renderer_config.json"
    got = digests.render_pool(path, orrb.utils.free_base_port(2))
    assert got == recorded[path]
