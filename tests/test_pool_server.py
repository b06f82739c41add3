"""The server process on its own: fuzzing, size limits, shared-secret security, --help."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import zmq

import orrb
from orrb.pool import wire
from orrb.errors import RendererError
from orrb.pool.server import build_parser, main
from orrb.pool.wire import curve_keys, is_loopback_address

from pool_intruder import mutated_messages
from test_pool import _alive, free_base_port, small_config


def start_server(*args: str, output: bool = False, token: str | None = None) -> subprocess.Popen:
    """Starts ``python -m orrb.pool.server`` (requiring ``token`` when given, handed over in its
    environment); its output is captured only when asked (a full pipe would block it)."""
    pipe = subprocess.PIPE if output else subprocess.DEVNULL
    args = (*args, "--parent-pid", str(os.getpid()))  # never outlive the test run
    env = dict(os.environ)
    env.pop(wire.TOKEN_ENV, None)
    if token is not None:
        env[wire.TOKEN_ENV] = token
    return subprocess.Popen([sys.executable, "-m", "orrb.pool.server", *args], stdout=pipe, stderr=subprocess.STDOUT,
                            text=True, env=env)


def stop(proc: subprocess.Popen) -> None:
    proc.kill()
    proc.wait()


def request(sock: zmq.Socket, kind: str, fields=None, arrays=None, req_id: int = 10**6,
            token: str | None = None) -> tuple[dict, dict]:
    """Sends one request and reads replies until the one with ``req_id`` (others are fuzz answers)."""
    fields = dict(fields or {})
    if token is not None:
        fields["token"] = token
    sock.send_multipart(wire.encode(kind, {"id": req_id, **fields}, arrays))
    while True:
        if not sock.poll(30000):
            raise TimeoutError(f"no reply to {kind}")
        header, out = wire.decode(sock.recv_multipart())
        if header.get("id") == req_id:
            return header, out


@pytest.fixture
def served(tmp_path):
    """A server requiring a token: ``(socket, token, log path)``."""
    port = free_base_port(1)
    token = wire.new_token()
    log_file = tmp_path / "server.log"
    proc = start_server("--port", str(port), "--log-file", str(log_file), token=token)
    context = zmq.Context()
    sock = context.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    wire.offer_token(sock, token)
    sock.connect(f"tcp://127.0.0.1:{port}")
    try:
        yield sock, token, log_file
    finally:
        sock.close()
        context.term()
        stop(proc)


def render(sock, token, states, **fields):
    return request(sock, "render", fields, {"qpos": states.copy(), "seeds": np.arange(len(states), dtype=np.uint64)},
                   token=token)


def hide_cube(prefix="cube:") -> dict:
    config = orrb.RendererConfig()
    config.add("Hide", "hide_cube", geom_prefix=prefix)
    return config.to_dict()


def test_server_answers_every_random_truncated_and_near_valid_message_and_keeps_serving(dactyl_states, tmp_path):
    port = free_base_port(1)
    token = wire.new_token()
    proc = start_server("--port", str(port), "--max-message-mb", "1", "--log-file", str(tmp_path / "fuzz.log"),
                        token=token)
    context = zmq.Context()
    try:
        fuzz = context.socket(zmq.DEALER)  # one persistent socket: every message is delivered
        fuzz.setsockopt(zmq.LINGER, 0)
        wire.offer_token(fuzz, token)  # past the handshake: the messages themselves are checked
        fuzz.connect(f"tcp://127.0.0.1:{port}")
        assert request(fuzz, "hello", token=token)[0]["type"] == "hello"
        assert request(fuzz, "init", {"config": small_config().to_dict(), "scene": "s"}, token=token)[0]["type"] == "ready"
        rng = np.random.default_rng(1)
        valid = [bytes(f) for f in wire.encode(
            "render", {"id": 5, "token": token}, {"qpos": dactyl_states[:2].copy(), "seeds": np.zeros(2, np.uint64)})]
        v = wire.PROTOCOL_VERSION
        headers = [
            {"v": v, "type": "render", "id": 1, "arrays": [["qpos", "float64", [1 << 20, 1 << 10]]]},
            {"v": v, "type": "render", "id": 2, "arrays": [["qpos", "float64", [2, 31]], ["seeds", "uint8", [2]]]},
            {"v": v, "type": "render", "id": 2, "arrays": [["qpos", "float64", [2, 3]], ["seeds", "uint64", [2]]]},
            {"v": v, "type": "init", "id": 3, "config": {"no_such_field": 1}},
            {"v": v, "type": "init", "id": 3, "config": {"camera_names": [1]}},
            {"v": v, "type": "init", "id": 4, "config": "x"},
            {"v": v, "type": "update", "id": 5, "renderer_config": {"components": [{"type": "Nope"}]}},
            {"v": v, "type": "update", "id": 5, "stamp": 7, "renderer_config": {"components": []}},
            {"v": v, "type": "update", "id": 5, "stamp": 1, "scene": "other", "renderer_config": {"components": []}},
            {"v": v, "type": "render", "id": 6},
            {"v": v, "type": "render", "id": 6, "stamp": "0"},
            {"v": v, "type": "nonsense", "id": 7},
            {"v": v, "type": 7},
        ]
        sent = 0
        for frames in mutated_messages(valid, headers, 3000, rng, token=token):  # half the near-valid ones with the token
            fuzz.send_multipart(frames)
            sent += 1
        replies, kinds = 0, set()
        while replies < sent and fuzz.poll(10000):
            header, _ = wire.decode(fuzz.recv_multipart())
            replies += 1
            kinds.add(header["type"] if header["type"] != "error" else header["error_type"])
        assert replies == sent, f"{sent - replies} messages were not answered"
        assert {"ProtocolError", "unauthorized"} <= kinds and "ready" not in kinds and "ok" not in kinds, kinds
        # an oversized frame: the server drops that connection (zmq.MAXMSGSIZE) and keeps serving
        big = context.socket(zmq.DEALER)
        big.setsockopt(zmq.LINGER, 0)
        wire.offer_token(big, token)
        big.connect(f"tcp://127.0.0.1:{port}")
        big.send_multipart([b"x" * (2 << 20)])
        # raw bytes that are not ZMTP at all
        with socket.create_connection(("127.0.0.1", port)) as raw:
            raw.sendall(bytes(rng.integers(0, 256, 4096, dtype=np.uint8)))
        time.sleep(0.3)
        big.close()

        assert proc.poll() is None, "the server died"
        good = context.socket(zmq.DEALER)
        good.setsockopt(zmq.LINGER, 0)
        wire.offer_token(good, token)
        good.connect(f"tcp://127.0.0.1:{port}")
        header, out = render(good, token, dactyl_states[:3], scene="s", stamp=0)  # the scene survived
        assert header["type"] == "result" and out["vision_cam_left"].shape == (3, 32, 32, 3)
        with orrb.LocalRenderer(small_config()) as local:
            ref = local.render_batch({"qpos": dactyl_states[:3], "seed": 0})
        assert np.array_equal(out["vision_cam_left"], ref["vision_cam_left"])
        header, _ = render(good, token, dactyl_states[:2, :5])
        assert header["type"] == "error" and "K>=31" in header["message"]
        fuzz.close()
        good.close()
    finally:
        context.term()
        stop(proc)


def test_request_without_the_token_is_refused_and_changes_nothing(served, dactyl_states):
    sock, token, _ = served
    for wrong in (None, "", token[:-1] + ("A" if token[-1] != "A" else "B"), 12):
        fields = {"config": small_config().to_dict()} if wrong is None else {"config": small_config().to_dict(),
                                                                              "token": wrong}
        header, _ = request(sock, "init", fields)
        assert header["type"] == "error" and header["error_type"] == "unauthorized", header
    header, _ = render(sock, token, dactyl_states[:1])
    assert header["error_type"] == "no_scene", "a refused init built a scene"
    assert request(sock, "shutdown")[0]["error_type"] == "unauthorized"
    assert request(sock, "ping", token=token)[0]["type"] == "pong", "a refused shutdown stopped the server"


def test_failed_init_or_update_leaves_the_running_scene_and_chain_as_they_were(served, dactyl_states):
    sock, token, _ = served
    header, _ = request(sock, "init", {"config": small_config().to_dict(), "renderer_config": hide_cube(),
                                       "scene": "a"}, token=token)
    assert header["type"] == "ready"
    before = render(sock, token, dactyl_states[:4], scene="a", stamp=0)[1]

    bad_config = small_config(camera_names=["vision_cam_left", "no_such_camera"]).to_dict()
    header, _ = request(sock, "init", {"config": bad_config, "scene": "b"}, token=token)
    assert header["type"] == "error" and "no_such_camera" in header["message"]
    # half valid: the first change applies, the second component fails on the scene
    half = orrb.RendererConfig.from_json(hide_cube(""))
    half.add("Hide", "hide_more", path="no_such_body")
    header, _ = request(sock, "update", {"renderer_config": half.to_dict(), "stamp": 1, "scene": "a"}, token=token)
    assert header["type"] == "error" and "no_such_body" in header["message"]

    header, after = render(sock, token, dactyl_states[:4], scene="a", stamp=0)
    assert header["type"] == "result"
    for key in before:
        assert np.array_equal(after[key], before[key]), f"{key} changed after a failed init or update"
    header, _ = request(sock, "update", {"renderer_config": hide_cube(""), "stamp": 1, "scene": "a"}, token=token)
    assert header["type"] == "ok" and header["stamp"] == 1
    assert not np.array_equal(render(sock, token, dactyl_states[:4], scene="a", stamp=1)[1]["vision_cam_left"],
                              before["vision_cam_left"])


@pytest.mark.parametrize("fields, kind, fragment", [
    ({"scene": "other", "stamp": 0}, "no_scene", "the request names 'other'"),
    ({"scene": "a", "stamp": 3}, "stale", "needs config stamp 3, the server is at 0"),
])
def test_requests_for_another_scene_or_stamp_are_refused_by_name(served, dactyl_states, fields, kind, fragment):
    sock, token, _ = served
    assert render(sock, token, dactyl_states[:1], **fields)[0]["error_type"] == "no_scene"  # nothing loaded yet
    assert request(sock, "init", {"config": small_config().to_dict(), "scene": "a"}, token=token)[0]["type"] == "ready"
    header, _ = render(sock, token, dactyl_states[:1], **fields)
    assert header["error_type"] == kind and fragment in header["message"]


def test_render_that_would_exceed_the_machines_memory_is_refused_before_allocating(served, dactyl_states):
    sock, token, log_file = served
    config = small_config(image_width=512, image_height=512)
    assert request(sock, "init", {"config": config.to_dict()}, token=token)[0]["type"] == "ready"
    with open("/proc/meminfo") as f:
        available = next(int(line.split()[1]) * 1024 for line in f if line.startswith("MemAvailable:"))
    entry = 512 * 512 * (3 + 4 + 12 + 1)
    n = min(available // entry + 1, 65536)
    if n * entry <= available:
        pytest.skip("this machine has more memory than the entry limit can ask for")
    started = time.monotonic()
    header, _ = render(sock, token, np.repeat(dactyl_states[:1], n, axis=0))
    assert header["error_type"] == "too_large" and "MiB" in header["message"]
    assert time.monotonic() - started < 20, "the server tried to render before refusing"
    assert request(sock, "ping", token=token)[0]["type"] == "pong"


def test_non_loopback_bind_without_secret_is_refused():
    proc = start_server("--bind", f"tcp://0.0.0.0:{free_base_port(1)}", output=True)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 2 and "without a shared secret" in out and "ORRB_SECRET" in out


def test_shared_secret_server_refuses_clients_without_it(tmp_path, dactyl_states, monkeypatch):
    monkeypatch.delenv("ORRB_SECRET", raising=False)
    secret_file = tmp_path / "secret"
    secret_file.write_text("correct horse battery staple\n")
    port = free_base_port(1)
    proc = start_server("--bind", f"tcp://0.0.0.0:{port}", "--secret-file", str(secret_file))
    try:
        address = f"tcp://127.0.0.1:{port}"
        for secret in (None, "wrong secret"):
            stranger = orrb.RemoteRenderer("test-stranger", [address], small_config(), connect_timeout=1.5,
                                              secret=secret)
            with pytest.raises(RendererError, match="no answer from") as info:
                stranger.start()
            assert ("refused the ZeroMQ handshake: the shared secrets differ" if secret else
                    "refused the ZeroMQ handshake: it requires a token or a shared secret") in str(info.value)
            assert "nothing is listening" not in str(info.value)
            stranger.shutdown()
        with orrb.RemoteRenderer("test-friend", [address], small_config(),
                                 secret="correct horse battery staple") as friend:
            result = friend.render_batch({"qpos": dactyl_states[:2], "seed": 0})
            assert result["vision_cam_left"].std() > 5
        assert proc.poll() is None, "a client's shutdown must not stop a server it did not spawn"
    finally:
        stop(proc)


def test_batches_are_split_to_fit_the_servers_message_limit(dactyl_states, monkeypatch):
    monkeypatch.delenv("ORRB_SECRET", raising=False)
    port = free_base_port(1)
    proc = start_server("--port", str(port), "--max-message-mb", "0.05")  # 52 kB: 209 states of 31 columns
    try:
        with orrb.RemoteRenderer("test-limit", [f"tcp://127.0.0.1:{port}"], small_config(), timeout=20,
                                 max_restarts=1) as pool:
            wide = np.hstack([np.tile(dactyl_states, (8, 1)), np.zeros((512, 69))])  # 512 x 100: 410 kB
            result = pool.render_batch({"qpos": wide, "seed": 0})  # the extra columns are not sent
            expected = pool.render_batch({"qpos": dactyl_states[:4], "seed": 0})
        assert result["vision_cam_left"].shape == (512, 32, 32, 3)
        np.testing.assert_array_equal(result["vision_cam_left"][:4], expected["vision_cam_left"])
        np.testing.assert_array_equal(result["qpos"], wide)  # the response carries the request as given
    finally:
        stop(proc)


@pytest.mark.parametrize("environment", [None, "another secret"])
def test_spawned_servers_use_the_secret_the_pool_was_given(environment, dactyl_states, monkeypatch):
    if environment is None:
        monkeypatch.delenv("ORRB_SECRET", raising=False)
    else:
        monkeypatch.setenv("ORRB_SECRET", environment)
    configs = orrb.utils.build_server_configs(1, 1, free_base_port(1))
    with orrb.RemoteRenderer("test-secret", configs, small_config(), secret="the pool's own secret",
                             start_timeout=30) as pool:
        assert pool.render_batch({"qpos": dactyl_states[:2], "seed": 0})["vision_cam_left"].std() > 5
        with open(pool.log_files[0]) as f:
            assert "CURVE, shared secret" in f.read()


def test_token_server_refuses_connections_without_its_token_in_the_handshake(dactyl_states, monkeypatch):
    monkeypatch.delenv("ORRB_SECRET", raising=False)
    monkeypatch.delenv(wire.TOKEN_ENV, raising=False)
    token = wire.new_token()
    port = free_base_port(1)
    proc = start_server("--port", str(port), token=token)
    address = f"tcp://127.0.0.1:{port}"
    try:
        for wrong in (None, "not-the-token"):
            stranger = orrb.RemoteRenderer("test-stranger", [address], small_config(), connect_timeout=1.5,
                                           token=wrong)
            with pytest.raises(RendererError, match="no answer from") as info:
                stranger.start()
            assert "refused the ZeroMQ handshake: it requires a token" in str(info.value)
            assert ("another token" if wrong else "no token") in str(info.value)
            stranger.shutdown()
        with orrb.RemoteRenderer("test-friend", [address], small_config(), token=token) as friend:
            assert friend.render_batch({"qpos": dactyl_states[:2], "seed": 0})["vision_cam_left"].std() > 5
    finally:
        stop(proc)


def test_curve_keys_depend_on_the_secret():
    a, b = curve_keys("one"), curve_keys("two")
    assert a["server"] != b["server"] and a["client"] != a["server"]
    assert curve_keys("one") == a
    with pytest.raises(ValueError, match="empty"):
        curve_keys("")


@pytest.mark.parametrize("address, loopback", [
    ("tcp://127.0.0.1:5000", True), ("tcp://localhost:5000", True), ("tcp://[::1]:5000", True),
    ("tcp://0.0.0.0:5000", False), ("tcp://10.1.2.3:5000", False), ("tcp://eth0:5000", False),
    ("tcp://*:5000", False),
])
def test_loopback_addresses_are_recognized(address, loopback):
    assert is_loopback_address(address) is loopback


def test_help_explains_every_option(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    text = capsys.readouterr().out
    for action in build_parser()._actions:
        for flag in action.option_strings:
            assert flag in text
        assert action.help, f"option {action.option_strings} has no help"


def test_cpu_server_logs_its_device_choice(tmp_path):
    port = free_base_port(1)
    log_file = tmp_path / "server.log"
    proc = start_server("--port", str(port), "--device", "3", "--lp-threads", "1", "--log-file", str(log_file))
    context = zmq.Context()
    try:
        sock = context.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.connect(f"tcp://127.0.0.1:{port}")
        header, _ = request(sock, "hello")
        assert header["version"] == orrb.get_renderer_version() and _alive(header["pid"])
        assert request(sock, "shutdown")[0]["type"] == "ok"
        assert proc.wait(timeout=10) == 0
        text = log_file.read_text()
        from orrb.egl_device import nvidia_gpu_present

        if nvidia_gpu_present():
            assert "device 3" in text
        else:
            assert "CPU rendering (device 3 ignored), LP_NUM_THREADS=1" in text
        sock.close()
    finally:
        context.term()
        stop(proc)


def test_server_that_cannot_bind_frees_its_authenticator_and_context():
    import threading

    from orrb.pool.server import RenderServer

    port = free_base_port(1)
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", port))
        blocker.listen()
        threads = threading.active_count()
        with pytest.raises(zmq.ZMQError):
            RenderServer(f"tcp://127.0.0.1:{port}", secret=b"a secret")
        assert threading.active_count() == threads, "the authenticator thread outlived the failed server"


def test_served_engine_closes_with_its_context_manager(dactyl_states):
    from orrb.pool.server import RenderServer

    with RenderServer(f"tcp://127.0.0.1:{free_base_port(1)}") as server:
        reply = server.answer(wire.encode("init", {"id": 1, "config": small_config().to_dict()}))
        assert wire.decode(reply)[0]["type"] == "ready"
    assert server.scene is None and server.socket is None and server.context is None
    server.close()  # idempotent


def test_token_file_that_others_can_read_is_refused(tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text("secret-token\n")
    token_file.chmod(0o644)
    proc = start_server("--port", str(free_base_port(1)), "--token-file", str(token_file), output=True)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode != 0 and "chmod 600" in out


def test_busy_port_is_one_line_and_a_non_zero_exit_without_traceback():
    port = free_base_port(1)
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", port))
        blocker.listen()
        proc = start_server("--port", str(port), output=True)
        out, _ = proc.communicate(timeout=60)
    assert proc.returncode == wire.EXIT_BIND_FAILED
    assert "Traceback" not in out
    assert out.strip().splitlines()[-1] == (f"orrb serve: cannot bind tcp://127.0.0.1:{port}: another program is "
                                            "using it; choose another port")


def test_batch_over_a_servers_entry_limit_is_split_into_requests_and_renders_the_same(dactyl_states):
    port = free_base_port(1)
    token = wire.new_token()
    proc = start_server("--port", str(port), "--max-entries", "3", token=token)
    try:
        with orrb.RemoteRenderer("test-split", [f"tcp://127.0.0.1:{port}"], small_config(), token=token) as pool, \
                orrb.LocalRenderer(small_config()) as local:
            batch = {"qpos": dactyl_states[:10], "seed": 4}
            result, expected = pool.render_batch(batch), local.render_batch(batch)
            for key in pool.layout.keys():
                assert np.array_equal(result[key], expected[key]), key
    finally:
        stop(proc)
