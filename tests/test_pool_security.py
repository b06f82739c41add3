"""A pool's servers belong to it: other processes on the machine cannot break or change them.

The intruder is another process (``tests/pool_intruder.py``) with persistent sockets to the
pool's servers, without the pool's token or with a wrong one: the servers refuse its
connections in the handshake, so none of its messages reaches them (none is answered, none
changes what the pool renders, none makes a server buffer it), and the servers keep their
pids. A server that lost its scene behind the pool's back is initialized again and the
batch completes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import zmq

import orrb
from orrb.pool import wire

from test_pool import assert_same, free_base_port, small_config

INTRUDER = os.path.join(os.path.dirname(__file__), "pool_intruder.py")


def chain() -> orrb.RendererConfig:
    config = orrb.RendererConfig()
    config.add("Hide", "hide_cube", geom_prefix="cube:")
    return config


@pytest.fixture(scope="module")
def reference(dactyl_states):
    """LocalRenderer output of 16 states with the cube hidden, seed 5."""
    with orrb.LocalRenderer(small_config(), chain()) as local:
        return local.render_batch({"qpos": dactyl_states[:16], "seed": 5})


def intrude(mode: str, addresses: list[str]) -> dict:
    """Runs the intruder process against ``addresses``; returns its JSON summary."""
    env = dict(os.environ)
    env.pop(wire.TOKEN_ENV, None)
    out = subprocess.run([sys.executable, INTRUDER, mode, orrb.utils.package_relative_path("assets"), *addresses],
                         capture_output=True, text=True, timeout=120, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def peak_resident_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        return int(f.read().split("VmHWM:")[1].split()[0]) / 1024


@pytest.mark.parametrize("mode", ["fuzz", "valid", "flood"])
def test_messages_from_another_process_never_reach_the_servers(mode, reference, dactyl_states):
    configs = orrb.utils.build_server_configs(1, 2, free_base_port(2))
    with orrb.RemoteRenderer("test-intruder", configs, small_config(), chain()) as pool:
        assert_same(pool.render_batch({"qpos": dactyl_states[:16], "seed": 5}), reference)
        pids = pool.server_pids
        peak = [peak_resident_mib(pid) for pid in pids]

        summary = intrude(mode, [f"tcp://127.0.0.1:{port}" for _, port in configs])

        assert summary["replies"] == 0, summary  # refused in the handshake
        assert summary["sent"] > 0 or mode == "flood", summary  # (sent: queued before the refusal)
        grown = [peak_resident_mib(pid) - before for pid, before in zip(pids, peak)]
        assert max(grown) < 32, f"a server buffered an intruder's message: its peak memory grew {grown} MiB"
        for _ in range(2):
            assert_same(pool.render_batch({"qpos": dactyl_states[:16], "seed": 5}), reference)
        assert pool.server_pids == pids and pool.stats["restarts"] == 0


def start_server(port: int, token_file) -> subprocess.Popen:
    env = dict(os.environ)
    env.pop(wire.TOKEN_ENV, None)
    return subprocess.Popen([sys.executable, "-m", "orrb.pool.server", "--port", str(port), "--token-file",
                             str(token_file), "--parent-pid", str(os.getpid())],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)


def hello(port: int, token: str) -> dict:
    """Waits until a server answers; returns its hello reply."""
    with zmq.Context() as context, context.socket(zmq.DEALER) as sock:
        sock.setsockopt(zmq.LINGER, 0)
        wire.offer_token(sock, token)
        sock.connect(f"tcp://127.0.0.1:{port}")
        sock.send_multipart(wire.encode(wire.Kind.HELLO, {"id": 1, "token": token}))
        assert sock.poll(60000), "the server did not answer"
        return wire.decode(sock.recv_multipart())[0]


@pytest.mark.parametrize("how", ["restarted", "given another scene"])
def test_server_that_lost_its_scene_is_initialized_again_and_the_batch_completes(how, tmp_path, reference,
                                                                                  dactyl_states):
    token = wire.new_token()
    token_file = tmp_path / "token"
    token_file.write_text(token + "\n")
    token_file.chmod(0o600)
    port = free_base_port(1)
    server = start_server(port, token_file)
    try:
        hello(port, token)
        address = f"tcp://127.0.0.1:{port}"
        with orrb.RemoteRenderer("test-lost", [address], small_config(), chain(), token=token) as pool:
            pool.update(chain())  # stamp 1: the server must be brought back to it
            assert_same(pool.render_batch({"qpos": dactyl_states[:16], "seed": 5}), reference)
            if how == "restarted":
                server.kill()
                server.wait()
                server = start_server(port, token_file)
                hello(port, token)
            else:  # its owner, who has the token, loads another scene on it
                with zmq.Context() as context, context.socket(zmq.DEALER) as sock:
                    sock.setsockopt(zmq.LINGER, 0)
                    wire.offer_token(sock, token)
                    sock.connect(address)
                    config = small_config(camera_names=["vision_cam_top"]).to_dict()
                    sock.send_multipart(wire.encode(wire.Kind.INIT, {"id": 1, "token": token, "config": config}))
                    assert sock.poll(60000) and wire.decode(sock.recv_multipart())[0]["type"] == "ready"
            assert_same(pool.render_batch({"qpos": dactyl_states[:16], "seed": 5}), reference)
            assert pool.stats["restarts"] == 1
    finally:
        server.kill()
        server.wait()
