"""RemoteRenderer with real server processes and real sockets: API, sharding, updates, bad input."""

from __future__ import annotations

import os
import queue
import socket

import numpy as np
import pytest

import orrb
from orrb.errors import ConfigError, RendererError

from conftest import dactyl_config


free_base_port = orrb.utils.free_base_port  # other test modules import it from here


def small_config(**fields) -> orrb.RemoteRendererConfig:
    defaults = dict(camera_names=["vision_cam_left"], image_width=32, image_height=32,
                    render_depth=True, render_normals=True, render_segmentation=True)
    defaults.update(fields)
    return dactyl_config(**defaults)


def hide_chain(prefix: str) -> orrb.RendererConfig:
    config = orrb.RendererConfig()
    config.add("Hide", "hide_cube", geom_prefix=prefix)
    return config


@pytest.fixture(scope="module")
def reference(dactyl_states):
    """LocalRenderer output for all 64 states, seed 11 (the bit-exact reference)."""
    with orrb.LocalRenderer(small_config()) as local:
        return local.render_batch({"qpos": dactyl_states, "seed": 11})


@pytest.fixture(scope="module")
def pool3():
    base = free_base_port(3)
    renderer = orrb.RemoteRenderer("test-pool3", orrb.utils.build_server_configs(1, 3, base), small_config())
    renderer.start()
    yield renderer
    renderer.shutdown()


def assert_same(result, reference, keys=None):
    for key in keys or [k for k in reference if k not in ("seed", "seeds")]:
        assert result[key].dtype == reference[key].dtype, key
        assert result[key].shape == reference[key].shape, key
        assert np.array_equal(result[key], reference[key]), f"{key} differs"


def test_api_document_snippets_run_verbatim(dactyl_states):
    import orrb

    def _build_renderer(num_gpus, num_workers, base_port):
        config = orrb.RemoteRendererConfig()
        config.camera_names = ['vision_cam_left']
        config.image_width = 200
        config.image_height = 200
        config.renderer_version = orrb.get_renderer_version()
        config.model_xml_path = 'dactyl.xml'
        config.model_mapping_path = 'dactyl.mapping'
        config.renderer_config_path = 'demo_keras.renderer_config.json'
        config.asset_basedir = orrb.utils.package_relative_path('assets')
        config.render_depth = False
        config.render_normals = False
        config.render_segmentation = False

        server_configs = orrb.utils.build_server_configs(num_gpus, num_workers, base_port, mpi_rank=0,
                                                         mpi_size=1)
        return config, orrb.RemoteRenderer('OrrbRenderer0', server_configs, config)

    config, renderer = _build_renderer(1, 2, free_base_port(2))
    renderer.start()
    batch = {"qpos": dactyl_states[:4], "seed": 0}

    result = renderer.render_batch(batch)

    result_queue = queue.Queue()

    renderer.render_batch_async(batch, result_queue)

    result2 = result_queue.get()
    result_queue.task_done()

    renderer.shutdown()

    for res in (result, result2):
        assert res["vision_cam_left"].shape == (4, 200, 200, 3) and res["vision_cam_left"].dtype == np.uint8
        assert res["vision_cam_left"].std() > 5, "blank image"
        assert res["seed"] == 0 and res["qpos"] is batch["qpos"]
    assert np.array_equal(result["vision_cam_left"], result2["vision_cam_left"])


@pytest.mark.parametrize("servers", [1, 2, 3])
def test_sharding_is_invisible_bit_identical_to_local_renderer(servers, pool3, reference, dactyl_states):
    if servers == 3:
        result = pool3.render_batch({"qpos": dactyl_states, "seed": 11})
    else:
        configs = orrb.utils.build_server_configs(1, servers, free_base_port(servers))
        with orrb.RemoteRenderer(f"test-shard{servers}", configs, small_config()) as renderer:
            result = renderer.render_batch({"qpos": dactyl_states, "seed": 11})
    assert set(result) == set(reference)
    assert_same(result, reference)
    assert result["vision_cam_left"].std() > 5 and (result["vision_cam_left_depth"] > 0).any()


def test_entry_renders_the_same_alone_as_in_a_sharded_batch(pool3, reference, dactyl_states):
    alone = pool3.render_batch({"qpos": dactyl_states[37:38], "seeds": [11 + 37]})
    for key in ("vision_cam_left", "vision_cam_left_depth", "vision_cam_left_segmentation"):
        assert np.array_equal(alone[key][0], reference[key][37])


def test_outputs_are_fresh_writable_arrays(pool3, dactyl_states):
    a = pool3.render_batch({"qpos": dactyl_states[:3], "seed": 0})
    b = pool3.render_batch({"qpos": dactyl_states[:3], "seed": 0})
    assert a["vision_cam_left"].flags.writeable
    a["vision_cam_left"][:] = 0
    assert b["vision_cam_left"].std() > 5


def test_async_batches_arrive_on_queue_and_future_in_full(pool3, reference, dactyl_states):
    results = queue.Queue()
    futures = [pool3.render_batch_async({"qpos": dactyl_states[i:i + 8], "seeds": np.arange(8) + 11 + i,
                                         "tag": i}, results) for i in range(0, 64, 8)]
    got = {}
    for _ in futures:
        item = results.get(timeout=60)
        assert not isinstance(item, Exception), item
        got[item["tag"]] = item
    for i, future in zip(range(0, 64, 8), futures):
        assert future.result(timeout=1) is got[i]
        assert np.array_equal(got[i]["vision_cam_left"], reference["vision_cam_left"][i:i + 8])


def test_an_update_the_scene_refuses_raises_in_the_caller_and_the_pool_keeps_rendering(dactyl_states):
    chain = orrb.RendererConfig()
    chain.add("Tracker", "trk", camera_names="vision_cam_left", tracked_object_names="cube")
    config = small_config(render_depth=False, render_normals=False, render_segmentation=False)
    with orrb.RemoteRenderer("test-refused", orrb.utils.build_server_configs(1, 1, free_base_port(1)), config,
                             chain) as pool:
        before = pool.render_batch({"qpos": dactyl_states[:2], "seed": 0})
        for bad in ({"camera_names": "vision_cam_left,nope"}, {"tracked_object_names": "nothing_here"}):
            update = orrb.RendererConfig()
            update.add("Tracker", "trk", **bad)
            with pytest.raises(orrb.ConfigError, match="'nope'|'nothing_here'"):
                pool.update(update)
        assert_same(pool.render_batch({"qpos": dactyl_states[:2], "seed": 0}), before)
        good = orrb.RendererConfig()
        good.add("Tracker", "trk", camera_names="vision_cam_left,vision_cam_top")
        pool.update(good)
        assert "tracker_cube_X_vision_cam_top" in pool.render_batch({"qpos": dactyl_states[:2], "seed": 0})


def test_gone_and_moved_hooks_refuse_servers_the_pool_spawned(pool3, dactyl_states):
    with pytest.raises(ValueError, match=r"server_gone\(0\).*spawned by this pool"):
        pool3.server_gone(0, "a guess")
    with pytest.raises(ValueError, match=r"server_moved\(1\).*spawned by this pool"):
        pool3.server_moved(1, "tcp://127.0.0.1:5999")
    assert pool3.render_batch({"qpos": dactyl_states[:6], "seed": 0})["vision_cam_left"].shape == (6, 32, 32, 3)


def test_a_full_result_queue_holds_up_only_its_own_results(pool3, dactyl_states):
    full = queue.Queue(maxsize=1)  # a consumer that has not come round to it yet
    for seed in range(3):
        pool3.render_batch_async({"qpos": dactyl_states[:2], "seed": seed}, full)
    other = pool3.render_batch_async({"qpos": dactyl_states[:2], "seed": 9})
    assert other.result(timeout=30)["vision_cam_left"].shape == (2, 32, 32, 3)
    assert pool3.render_batch({"qpos": dactyl_states[:2], "seed": 9})["vision_cam_left"].shape == (2, 32, 32, 3)
    seeds = sorted(int(full.get(timeout=30)["seed"]) for _ in range(3))  # then every result arrives
    assert seeds == [0, 1, 2]


@pytest.mark.parametrize("batch, kind, fragment", [
    ({"qpos": np.zeros((2, 5)), "seed": 0}, ValueError, "at least 31"),
    ({"qpos": np.zeros(31), "seed": 0}, ValueError, "two-dimensional"),
    ({"qpos": np.full((2, 31), np.nan), "seed": 0}, ValueError, "NaN"),
    ({"qpos": np.zeros((2, 31))}, ValueError, "neither 'seed'"),
    ({"qpos": np.zeros((2, 31)), "seeds": [1, 2, 3]}, ValueError, "B = 2"),
    ("not a dict", TypeError, "must be a dict"),
])
def test_bad_request_raises_named_error_in_caller_and_pool_stays_usable(pool3, dactyl_states, batch, kind, fragment):
    with pytest.raises(kind, match=fragment):
        pool3.render_batch(batch)
    results = queue.Queue()
    with pytest.raises(kind, match=fragment):
        pool3.render_batch_async(batch, results)
    assert results.empty()
    assert pool3.render_batch({"qpos": dactyl_states[:2], "seed": 0})["vision_cam_left"].shape == (2, 32, 32, 3)


def test_update_interleaved_with_async_batches_uses_config_of_queue_time(dactyl_states):
    config = small_config(render_normals=False, render_segmentation=False)
    states = dactyl_states[:6]
    sequence = ["", "cube:", "", "cube:", "cube:", ""]
    expected = {}
    with orrb.LocalRenderer(config, hide_chain("")) as local:
        for prefix in set(sequence):
            local.update(hide_chain(prefix))
            expected[prefix] = local.render_batch({"qpos": states, "seed": 5})
    assert not np.array_equal(expected[""]["vision_cam_left"], expected["cube:"]["vision_cam_left"])

    configs = orrb.utils.build_server_configs(1, 2, free_base_port(2))
    with orrb.RemoteRenderer("test-update", configs, config, hide_chain("")) as renderer:
        futures = []
        for prefix in sequence:
            renderer.update(hide_chain(prefix))
            futures.append(renderer.render_batch_async({"qpos": states, "seed": 5}))
        assert renderer.mutable_renderer_config()["hide_cube"]["geom_prefix"] == sequence[-1]
        for prefix, future in zip(sequence, futures):
            assert_same(future.result(timeout=60), expected[prefix], ["vision_cam_left", "vision_cam_left_depth"])


def test_version_mismatch_is_refused_at_start_showing_both():
    config = small_config(renderer_version="orrb-0.0.0+mujoco-1.0")
    renderer = orrb.RemoteRenderer("test-version", [[0, free_base_port(1)]], config)
    with pytest.raises(RendererError) as info:
        renderer.start()
    message = str(info.value)
    assert "orrb-0.0.0+mujoco-1.0" in message and orrb.get_renderer_version() in message
    renderer.shutdown()
    assert all(pid is None or not _alive(pid) for pid in renderer.server_pids)


def test_unknown_camera_raises_config_error_listing_cameras_from_the_server():
    renderer = orrb.RemoteRenderer("test-camera", [[0, free_base_port(1)]], small_config(camera_names=["nope"]))
    with pytest.raises(ConfigError, match="unknown camera 'nope'.*vision_cam_left"):
        renderer.start()
    renderer.shutdown()


def test_busy_port_fails_start_with_one_line_naming_port_reason_and_log():
    port = free_base_port(1)
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", port))
    blocker.listen()
    try:
        renderer = orrb.RemoteRenderer("test-busy", [[0, port]], small_config())
        with pytest.raises(RendererError) as info:
            renderer.start()
        message = str(info.value)
        assert "\n" not in message, "one line, not a traceback or a log tail"
        assert f"cannot bind port {port}" in message and "free_base_port" in message
        assert f"orrb-test-busy-{port}.log" in message
        assert info.value.log_file.endswith(f"orrb-test-busy-{port}.log")
        renderer.shutdown()
    finally:
        blocker.close()


@pytest.mark.parametrize("entry, kind", [
    ([0], TypeError), (["a", 1], TypeError), ([0, 70000], ValueError), ("localhost:5000", ValueError),
])
def test_bad_server_configs_are_named(entry, kind):
    with pytest.raises(kind, match="server_configs"):
        orrb.RemoteRenderer("x", [entry], small_config())


def test_orrb_minimal_caps_the_number_of_servers(monkeypatch, dactyl_states):
    monkeypatch.setenv("ORRB_MINIMAL", "1")
    configs = orrb.utils.build_server_configs(1, 3, free_base_port(3))
    with orrb.RemoteRenderer("test-minimal", configs, small_config()) as renderer:
        assert len(renderer.server_pids) == 1
        assert renderer.render_batch({"qpos": dactyl_states[:2], "seed": 0})["vision_cam_left"].shape[0] == 2


def test_spawned_servers_use_one_math_library_thread_unless_the_user_chose(pool3):
    for pid in pool3.server_pids:
        with open(f"/proc/{pid}/environ", "rb") as f:
            env = dict(item.split(b"=", 1) for item in f.read().split(b"\0") if b"=" in item)
        for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            assert env[var.encode()] == os.environ.get(var, "1").encode(), var


def test_shutdown_is_idempotent_and_leaves_no_server_process(dactyl_states):
    configs = orrb.utils.build_server_configs(1, 2, free_base_port(2))
    renderer = orrb.RemoteRenderer("test-shutdown", configs, small_config())
    renderer.start()
    pids = renderer.server_pids
    assert all(_alive(pid) for pid in pids)
    renderer.shutdown()
    renderer.shutdown()
    assert not any(_alive(pid) for pid in pids)
    with pytest.raises(RendererError, match="after shutdown"):
        renderer.render_batch({"qpos": dactyl_states[:1], "seed": 0})


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/status") as f:
            return "State:\tZ" not in f.read()
    except FileNotFoundError:
        return False


def test_detached_start_prints_runnable_server_commands_and_waits_for_them(monkeypatch, capsys, reference,
                                                                             dactyl_states):
    import shlex
    import subprocess
    import threading
    import time

    monkeypatch.setenv("ORRB_DETACHED", "1")
    base = free_base_port(2)
    renderer = orrb.RemoteRenderer("test-detached", orrb.utils.build_server_configs(1, 2, base), small_config())
    starting = threading.Thread(target=renderer.start, daemon=True)
    starting.start()
    printed, deadline = "", time.monotonic() + 30
    while printed.count("orrb.pool.server") < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
        printed += capsys.readouterr().out
    commands = [shlex.split(line) for line in printed.splitlines() if "orrb.pool.server" in line]
    assert len(commands) == 2 and {c[c.index("--port") + 1] for c in commands} == {str(base), str(base + 1)}
    time.sleep(1.0)
    assert starting.is_alive(), "start() must wait for servers started by hand"
    servers = [subprocess.Popen(c, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for c in commands]
    try:
        starting.join(60)
        assert not starting.is_alive()
        result = renderer.render_batch({"qpos": dactyl_states[:8], "seed": 11})
        assert np.array_equal(result["vision_cam_left"], reference["vision_cam_left"][:8])
    finally:
        renderer.shutdown()
        for server in servers:
            server.kill()
            server.wait()


def test_pool_is_a_renderer_with_the_local_renderers_model_and_layout(dactyl_states):
    from orrb.renderer import Renderer

    config = small_config(renderer_config_path="dactyl.renderer_config.json")
    with orrb.LocalRenderer(config) as local, \
            orrb.RemoteRenderer("test-protocol", [[0, free_base_port(1)]], config) as pool:
        assert isinstance(pool, Renderer)
        assert pool.layout == local.layout and any(o.modality == "stream" for o in pool.layout)
        for name in ("nq", "ngeom", "ncam", "nlight", "nmat", "ntex"):
            assert getattr(pool.model, name) == getattr(local.model, name), name
        assert pool.model.names == local.model.names
        assert pool.columns == local.columns and pool.class_names == local.class_names
        assert len(pool.server_pids) == len(pool.log_files) == 1
        result = pool.render_batch({"qpos": dactyl_states[:3], "seed": 1})
        pool.layout.check(result, 3, "pool response")
        assert pool.stats["batches"] == 1 and pool.stats["server_render_s"] > 0


def test_update_that_adds_a_stream_changes_the_layout_and_the_responses_as_locally(dactyl_states):
    update = orrb.RendererConfig()
    update.add("LightRandomizer", "lights", emit_values=True)
    batch = {"qpos": dactyl_states[:4], "seed": 9}
    with orrb.LocalRenderer(small_config()) as local:
        local.update(update)
        expected, expected_layout = local.render_batch(batch), local.layout
    with orrb.RemoteRenderer("test-stream", orrb.utils.build_server_configs(1, 2, free_base_port(2)),
                             small_config()) as pool:
        before = pool.layout
        pool.update(update)
        assert pool.layout == expected_layout and len(pool.layout) > len(before)
        assert_same(pool.render_batch(batch), expected)
