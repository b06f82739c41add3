"""The server process on its own: fuzzing, size limits, shared-secret security, --help."""

from __future__ import annotations

import json
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

from test_pool import _alive, free_base_port, small_config


def start_server(*args: str, output: bool = False) -> subprocess.Popen:
    """Starts ``python -m orrb.pool.server``; its output is captured only when asked (a full pipe would block it)."""
    pipe = subprocess.PIPE if output else subprocess.DEVNULL
    args = (*args, "--parent-pid", str(os.getpid()))  # never outlive the test run
    return subprocess.Popen([sys.executable, "-m", "orrb.pool.server", *args], stdout=pipe, stderr=subprocess.STDOUT, text=True)


def stop(proc: subprocess.Popen) -> None:
    proc.kill()
    proc.wait()


def request(sock: zmq.Socket, kind: str, fields=None, arrays=None, req_id: int = 10**6) -> tuple[dict, dict]:
    """Sends one request and reads replies until the one with ``req_id`` (others are fuzz answers)."""
    sock.send_multipart(wire.encode(kind, {"id": req_id, **(fields or {})}, arrays))
    while True:
        if not sock.poll(30000):
            raise TimeoutError(f"no reply to {kind}")
        header, out = wire.decode(sock.recv_multipart())
        if header.get("id") == req_id:
            return header, out


def test_server_survives_thousands_of_random_truncated_and_oversized_messages(dactyl_states, tmp_path):
    port = free_base_port(1)
    proc = start_server("--port", str(port), "--max-message-mb", "1", "--log-file", str(tmp_path / "fuzz.log"))
    context = zmq.Context()
    try:
        fuzz = context.socket(zmq.DEALER)
        fuzz.setsockopt(zmq.LINGER, 0)
        fuzz.connect(f"tcp://127.0.0.1:{port}")
        assert request(fuzz, "hello")[0]["type"] == "hello"
        rng = np.random.default_rng(1)
        valid = [bytes(f) for f in wire.encode(
            "render", {"id": 5}, {"qpos": dactyl_states[:2].copy(), "seeds": np.zeros(2, np.uint64)})]
        headers = [
            {"v": wire.PROTOCOL_VERSION, "type": "render", "id": 1, "arrays": [["qpos", "float64", [1 << 20, 1 << 10]]]},
            {"v": wire.PROTOCOL_VERSION, "type": "render", "id": 2, "arrays": [["qpos", "float64", [2, 31]], ["seeds", "uint8", [2]]]},
            {"v": wire.PROTOCOL_VERSION, "type": "init", "id": 3, "config": {"no_such_field": 1}},
            {"v": wire.PROTOCOL_VERSION, "type": "init", "id": 4, "config": "x"},
            {"v": wire.PROTOCOL_VERSION, "type": "update", "id": 5, "renderer_config": {"components": [{"type": "Nope"}]}},
            {"v": wire.PROTOCOL_VERSION, "type": "render", "id": 6},
            {"v": wire.PROTOCOL_VERSION, "type": "nonsense", "id": 7},
            {"v": wire.PROTOCOL_VERSION, "type": 7},
        ]
        for i in range(3000):
            choice = i % 5
            if choice == 0:
                frames = [rng.bytes(int(rng.integers(0, 200))) for _ in range(int(rng.integers(1, 5)))]
            elif choice == 1:
                frames = list(valid)
                k = int(rng.integers(len(frames)))
                frames[k] = frames[k][: int(rng.integers(0, len(frames[k]) + 1))]
            elif choice == 2:
                frames = valid[: int(rng.integers(1, len(valid) + 1))]
            elif choice == 3:
                frames = [json.dumps(headers[i % len(headers)]).encode()] + [b"\0" * 16] * int(rng.integers(0, 3))
            else:
                frames = [b"{" * int(rng.integers(1, 5000))]
            fuzz.send_multipart(frames)
        # an oversized frame: the server drops that connection (zmq.MAXMSGSIZE) and keeps serving
        big = context.socket(zmq.DEALER)
        big.setsockopt(zmq.LINGER, 0)
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
        good.connect(f"tcp://127.0.0.1:{port}")
        header, _ = request(good, "init", {"config": small_config().to_dict()})
        assert header["type"] == "ready" and header["columns"] == 31
        header, out = request(good, "render", {}, {"qpos": dactyl_states[:3].copy(),
                                                   "seeds": np.arange(3, dtype=np.uint64)})
        assert header["type"] == "result" and out["vision_cam_left"].shape == (3, 32, 32, 3)
        with orrb.LocalRenderer(small_config()) as local:
            ref = local.render_batch({"qpos": dactyl_states[:3], "seed": 0})
        assert np.array_equal(out["vision_cam_left"], ref["vision_cam_left"])
        header, _ = request(good, "render", {}, {"qpos": dactyl_states[:2, :5].copy(),
                                                 "seeds": np.zeros(2, np.uint64)})
        assert header["type"] == "error" and "K>=31" in header["message"]
        fuzz.close()
        good.close()
    finally:
        context.term()
        stop(proc)


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
            with pytest.raises(RendererError, match="no answer from"):
                stranger.start()
            stranger.shutdown()
        with orrb.RemoteRenderer("test-friend", [address], small_config(),
                                 secret="correct horse battery staple") as friend:
            result = friend.render_batch({"qpos": dactyl_states[:2], "seed": 0})
            assert result["vision_cam_left"].std() > 5
        assert proc.poll() is None, "a client's shutdown must not stop a server it did not spawn"
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
