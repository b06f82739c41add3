"""Faults with real processes: killed, frozen and repeatedly failing servers; parent death."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

import orrb
from orrb.errors import RendererError

from test_pool import _alive, free_base_port, small_config

BATCHES = 50


def batches(states):
    return [{"qpos": states[(4 * i) % 64:(4 * i) % 64 + 4], "seed": 100 * i} for i in range(BATCHES)]


@pytest.fixture(scope="module")
def undisturbed(dactyl_states):
    config = small_config(render_normals=False)
    with orrb.LocalRenderer(config) as local:
        return [local.render_batch(b) for b in batches(dactyl_states)]


def assert_all_match(futures, expected):
    for i, (future, ref) in enumerate(zip(futures, expected)):
        result = future.result(timeout=120)
        for key in ("vision_cam_left", "vision_cam_left_depth", "vision_cam_left_segmentation"):
            assert np.array_equal(result[key], ref[key]), f"batch {i}: {key} differs"


def test_killed_server_loses_no_request(dactyl_states, undisturbed):
    configs = orrb.utils.build_server_configs(1, 2, free_base_port(2))
    with orrb.RemoteRenderer("test-kill", configs, small_config(render_normals=False)) as renderer:
        victim = renderer.server_pids[0]
        futures = [renderer.render_batch_async(b) for b in batches(dactyl_states)]
        futures[2].result(timeout=60)
        assert not futures[-1].done(), "all batches finished before the kill: the test proves nothing"
        os.kill(victim, signal.SIGKILL)
        assert_all_match(futures, undisturbed)
        assert renderer.stats["restarts"] >= 1
        assert renderer.server_pids[0] != victim and _alive(renderer.server_pids[0])
        assert not any(f.exception() for f in futures)


def test_frozen_server_is_detected_by_timeout_and_replaced(dactyl_states, undisturbed):
    configs = orrb.utils.build_server_configs(1, 2, free_base_port(2))
    with orrb.RemoteRenderer("test-freeze", configs, small_config(render_normals=False),
                             timeout=1.5, entry_timeout=0.1) as renderer:
        victim = renderer.server_pids[1]
        futures = [renderer.render_batch_async(b) for b in batches(dactyl_states)[:20]]
        futures[0].result(timeout=60)
        assert not futures[-1].done(), "all batches finished before the freeze: the test proves nothing"
        os.kill(victim, signal.SIGSTOP)
        try:
            assert_all_match(futures, undisturbed[:20])
        finally:
            if _alive(victim):
                os.kill(victim, signal.SIGKILL)
        assert renderer.server_pids[1] != victim and not _alive(victim)
        assert renderer.stats["restarts"] >= 1


def test_repeated_failure_raises_renderer_error_naming_the_server(dactyl_states):
    port = free_base_port(1)
    with orrb.RemoteRenderer("test-repeat", [[0, port]], small_config(), max_restarts=0) as renderer:
        renderer.render_batch({"qpos": dactyl_states[:1], "seed": 0})
        future = renderer.render_batch_async({"qpos": np.repeat(dactyl_states, 4, axis=0), "seed": 0})
        time.sleep(0.3)
        os.kill(renderer.server_pids[0], signal.SIGKILL)
        with pytest.raises(RendererError) as info:
            future.result(timeout=60)
        message = str(info.value)
        assert f"port {port}" in message and f"orrb-test-repeat-{port}.log" in message and "exited" in message
        with pytest.raises(RendererError, match="no server left"):
            renderer.render_batch({"qpos": dactyl_states[:1], "seed": 0})


def test_servers_exit_when_their_parent_dies():
    port = free_base_port(2)
    script = textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {os.path.dirname(__file__)!r})
        import orrb
        from test_pool import small_config
        r = orrb.RemoteRenderer('test-orphan', orrb.utils.build_server_configs(1, 2, {port}), small_config())
        r.start()
        print(*r.server_pids, flush=True)
        time.sleep(120)
    """)
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        pids = [int(p) for p in parent.stdout.readline().split()]
        assert len(pids) == 2 and all(_alive(p) for p in pids)
        parent.kill()
        parent.wait()
        deadline = time.monotonic() + 3.0
        while time.monotonic() < deadline and any(_alive(p) for p in pids):
            time.sleep(0.1)
        assert not any(_alive(p) for p in pids), "server outlived its parent by 3 s"
    finally:
        parent.kill()
        parent.stdout.close()
