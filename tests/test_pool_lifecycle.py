"""Starting and stopping a pool: dead addresses, busy ports, clean stops, Ctrl-C, log files."""

from __future__ import annotations

import inspect
import logging
import os
import pathlib
import signal
import socket
import subprocess
import sys
import textwrap
import time

import pytest

import orrb
from orrb.errors import RendererError

from test_pool import _alive, assert_same, free_base_port, small_config


def test_default_connect_timeout_is_well_under_two_minutes():
    default = inspect.signature(orrb.RemoteRenderer).parameters["connect_timeout"].default
    assert 0 < default <= 30


@pytest.mark.parametrize("secret", [None, "a shared secret"])
def test_dead_address_fails_within_the_connect_timeout_naming_address_and_causes(secret, monkeypatch):
    monkeypatch.delenv("ORRB_SECRET", raising=False)
    port = free_base_port(1)  # nothing listens there
    address = f"tcp://127.0.0.1:{port}"
    renderer = orrb.RemoteRenderer("test-dead", [address], small_config(), connect_timeout=2.0, secret=secret)
    started = time.monotonic()
    with pytest.raises(RendererError) as info:
        renderer.start()
    elapsed = time.monotonic() - started
    renderer.shutdown()
    assert elapsed < 15, f"start() took {elapsed:.1f} s with connect_timeout=2"
    message = str(info.value)
    assert address in message and "within 2 s" in message
    assert "(connection refused)" in message
    listening, firewall = message.index("nothing is listening"), message.index("firewall")
    assert listening < firewall, "the likeliest cause comes first"
    if secret is None:
        assert "secret" not in message, "no secret is in use: a secret mismatch cannot be the cause"
    else:
        assert firewall < message.index("shared secret")


def test_silent_zeromq_peer_is_named_as_busy_or_not_an_orrb_server():
    import zmq

    port = free_base_port(1)
    with zmq.Context() as context, context.socket(zmq.ROUTER) as silent:
        silent.bind(f"tcp://127.0.0.1:{port}")
        renderer = orrb.RemoteRenderer("test-silent", [f"tcp://127.0.0.1:{port}"], small_config(), connect_timeout=1.0)
        with pytest.raises(RendererError, match="does not answer: it is busy or hung, or it is not an orrb"):
            renderer.start()
        renderer.shutdown()
        silent.setsockopt(zmq.LINGER, 0)


def test_server_told_to_stop_is_neither_a_failure_nor_restarted(dactyl_states, caplog):
    with orrb.LocalRenderer(small_config()) as local:
        reference = local.render_batch({"qpos": dactyl_states[:8], "seed": 3})
    configs = orrb.utils.build_server_configs(1, 2, free_base_port(2))
    with caplog.at_level(logging.INFO, logger="orrb.pool"):
        with orrb.RemoteRenderer("test-told", configs, small_config()) as pool:
            stopped, other = pool.server_pids
            os.kill(stopped, signal.SIGTERM)
            deadline = time.monotonic() + 10
            while _alive(stopped) and time.monotonic() < deadline:
                time.sleep(0.05)
            for _ in range(3):  # the other server takes the work
                assert_same(pool.render_batch({"qpos": dactyl_states[:8], "seed": 3}), reference)
            assert pool.stats["restarts"] == 0 and pool.server_pids == [stopped, other]
            assert not _alive(stopped) and _alive(other)
    text = caplog.text
    assert "restarting" not in text and "failed" not in text
    assert "stopped" in text


def test_shutdown_from_a_done_callback_stops_and_reaps_the_servers(dactyl_states):
    pool = orrb.RemoteRenderer("test-callback", orrb.utils.build_server_configs(1, 1, free_base_port(1)),
                               small_config()).start()
    pid = pool.server_pids[0]
    errors = []

    def shut_down(future):
        try:
            pool.shutdown()  # runs on the pool's I/O thread, which completed the future
        except BaseException as e:
            errors.append(e)

    try:
        pool.render_batch_async({"qpos": dactyl_states[:4], "seed": 0}).add_done_callback(shut_down)
        deadline = time.monotonic() + 20
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        pool.shutdown()
    assert not errors and pool.closed
    assert not _alive(pid), "the server process was left running or unreaped (a zombie)"
    with pytest.raises(RendererError, match="shut down|shutdown"):
        pool.render_batch({"qpos": dactyl_states[:1], "seed": 0})


def test_interrupted_program_stops_its_servers_within_two_seconds_without_restart_messages():
    port = free_base_port(2)
    script = textwrap.dedent(f"""
        import signal, sys, time
        # Ctrl-C raises KeyboardInterrupt, as in a program started from a terminal (a parent that
        # ignores SIGINT, such as a shell's background job, would otherwise pass that on)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        sys.path.insert(0, {os.path.dirname(__file__)!r})
        import numpy as np
        import orrb
        from test_pool import small_config
        states = np.loadtxt(orrb.utils.package_relative_path("assets/states/qpos.csv"), delimiter=",")
        with orrb.RemoteRenderer("test-ctrl-c", orrb.utils.build_server_configs(1, 2, {port}), small_config()) as r:
            print(*r.server_pids, flush=True)
            try:
                futures = [r.render_batch_async({{"qpos": states, "seed": i}}) for i in range(40)]
                print("rendering", flush=True)
                time.sleep(120)
            except KeyboardInterrupt:
                started = time.monotonic()
                r.shutdown()
                print("shutdown_s", time.monotonic() - started, flush=True)
    """)
    # a session of its own, so Ctrl-C can go to its whole process group as a terminal sends it
    program = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, start_new_session=True)
    try:
        pids = [int(p) for p in program.stdout.readline().split()]
        assert program.stdout.readline().strip() == "rendering"
        time.sleep(0.5)
        os.killpg(program.pid, signal.SIGINT)
        out, err = program.communicate(timeout=60)
    finally:
        if program.poll() is None:
            program.kill()
            program.communicate()
    shutdown_s = float(out.split("shutdown_s")[1].split()[0])
    print(f"shutdown after Ctrl-C: {shutdown_s:.2f} s")
    assert shutdown_s < 2.0, f"shutdown after Ctrl-C took {shutdown_s:.2f} s"
    assert "restarting" not in err and "exited with code" not in err, err[-2000:]
    assert not any(_alive(p) for p in pids)


def test_server_logs_go_to_one_private_folder_that_keeps_the_newest(tmp_path, monkeypatch, dactyl_states):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    folder = tmp_path / "orrb" / "logs"
    folder.mkdir(parents=True)
    for i in range(100):
        old = folder / f"orrb-old-{i}.log"
        old.write_text("old\n")
        os.utime(old, (1_000_000 + i, 1_000_000 + i))
    configs = orrb.utils.build_server_configs(1, 2, free_base_port(2))
    with orrb.RemoteRenderer("test-logs", configs, small_config()) as pool:
        pool.render_batch({"qpos": dactyl_states[:2], "seed": 0})
        logs = pool.log_files
    assert all(os.path.dirname(path) == str(folder) for path in logs)
    assert all("listening on" in pathlib.Path(path).read_text() for path in logs)
    names = sorted(p.name for p in folder.iterdir())
    assert len(names) <= 64 + 2
    assert "orrb-old-0.log" not in names and "orrb-old-99.log" in names, "the oldest go first"
    assert (tmp_path / "orrb").stat().st_mode & 0o077 == 0, "the folder is private"


def test_an_empty_batch_right_after_an_update_returns_empty_outputs_and_the_pool_keeps_rendering(dactyl_states):
    # regression: an empty batch queued before any server reported the new config's outputs
    # ended the pool's I/O thread, and the caller waited forever
    config = small_config(renderer_config_path="dactyl.renderer_config.json")
    with orrb.RemoteRenderer("empty", orrb.utils.build_server_configs(1, 1, free_base_port(1)), config) as renderer:
        renderer.update(renderer.mutable_renderer_config())
        empty = renderer.render_batch_async({"qpos": dactyl_states[:0], "seed": 0}).result(timeout=60)
        assert empty["vision_cam_left"].shape == (0, 32, 32, 3)
        assert set(renderer.layout.keys()) <= set(empty)
        after = renderer.render_batch({"qpos": dactyl_states[:2], "seed": 0})
        assert after["vision_cam_left"].shape == (2, 32, 32, 3) and after["vision_cam_left"].std() > 3


@pytest.mark.parametrize("address", ["tcp://127.0.0.1:abc", "tcp://127.0.0.1:0", "tcp://127.0.0.1:70000",
                                     "tcp://:5000", "udp://127.0.0.1:5000"])
def test_an_address_without_a_valid_host_and_port_is_refused_where_it_is_given(address):
    with pytest.raises(ValueError, match="tcp://host:port"):
        orrb.RemoteRenderer("bad-address", [address], small_config())
