"""Another process on the machine, talking to render servers it does not own (run as a script).

``python tests/pool_intruder.py MODE ADDRESS...`` opens one persistent ZeroMQ DEALER socket per
address (every other one presents a wrong token in the handshake, the others none), sends
the messages of MODE until its socket takes no more within a second (once a server has refused
the handshake, the socket has no connection to queue on), reads replies until each message sent
has one (or a few seconds pass), and prints one JSON line: ``{"sent": n, "replies": n,
"errors": {kind: count}, "other": [reply types that are not errors]}``.

Modes:
    ``fuzz``: random bytes, truncated and cut valid messages, and near-valid ``init``,
    ``update``, ``render`` and ``shutdown`` messages (broken configs, wrong shapes, no token,
    a wrong token), plus raw TCP garbage that is not ZeroMQ at all.
    ``valid``: well-formed ``init`` (another scene), ``update`` (a new component),
    ``render`` and ``shutdown`` messages without the pool's token.
    ``flood``: one message of two 64 MiB frames (within a pool server's frame size limit).
"""

from __future__ import annotations

import collections
import json
import socket
import sys
import time

import numpy as np
import zmq

from orrb.pool import wire

QPOS = np.zeros((2, 31))
SEEDS = np.zeros(2, np.uint64)


def valid_messages(asset_dir: str) -> list[list[bytes]]:
    config = {"camera_names": ["vision_cam_top"], "image_width": 16, "image_height": 16,
              "model_xml_path": "dactyl.xml", "model_mapping_path": "dactyl.mapping", "asset_basedir": asset_dir}
    hide = {"components": [{"type": "Hide", "name": "intruder", "config": {"stringProperties": {"geom_prefix": "cube:"}}}]}
    out = []
    for token in ({}, {"token": "not-the-token"}):
        out += [wire.encode(wire.Kind.INIT, {"id": 1, "config": config, **token}),
                wire.encode(wire.Kind.UPDATE, {"id": 2, "stamp": 1, "renderer_config": hide, **token}),
                wire.encode(wire.Kind.RENDER, {"id": 3, **token}, {"qpos": QPOS, "seeds": SEEDS}),
                wire.encode(wire.Kind.SHUTDOWN, {"id": 4, **token})]
    return [[bytes(f) for f in m] for m in out]


def mutated_messages(valid: list[bytes], headers: list[dict], count: int, rng: np.random.Generator,
                     token: str | None = None) -> list[list[bytes]]:
    """``count`` multipart messages made from one valid message's frames and near-valid headers,
    six kinds in turn: random frames; the valid message with one frame cut short; its first
    frames only; a near-valid header with stray frames; a near-valid header alone; a run of
    ``{`` (deeply nested JSON). With ``token``, every other near-valid header carries it."""
    messages = []
    for i in range(count):
        choice = i % 6
        if choice == 0:
            frames = [rng.bytes(int(rng.integers(0, 200))) for _ in range(int(rng.integers(1, 5)))]
        elif choice == 1:
            frames = list(valid)
            k = int(rng.integers(len(frames)))
            frames[k] = frames[k][: int(rng.integers(0, len(frames[k]) + 1))]
        elif choice == 2:
            frames = valid[: int(rng.integers(1, len(valid) + 1))]
        elif choice in (3, 4):
            header = dict(headers[i % len(headers)], **({"token": token} if token and (i // 6) % 2 else {}))
            frames = [json.dumps(header).encode()]
            if choice == 3:
                frames += [b"\0" * 16] * int(rng.integers(0, 3))
        else:
            frames = [b"{" * int(rng.integers(1, 5000))]
        messages.append(frames)
    return messages


def fuzz_messages(asset_dir: str, count: int, seed: int) -> list[list[bytes]]:
    rng = np.random.default_rng(seed)
    valid = [bytes(f) for f in wire.encode(wire.Kind.RENDER, {"id": 5}, {"qpos": QPOS, "seeds": SEEDS})]
    v = wire.PROTOCOL_VERSION
    near = [
        {"v": v, "type": "init", "id": 3, "config": {"camera_names": [1]}},
        {"v": v, "type": "init", "id": 3, "config": {"camera_names": ["vision_cam_top"], "asset_basedir": asset_dir,
                                                     "model_xml_path": "dactyl.xml"}, "token": ""},
        {"v": v, "type": "init", "id": 4, "config": "x", "token": None},
        {"v": v, "type": "update", "id": 5, "renderer_config": {"components": [{"type": "Nope"}]}},
        {"v": v, "type": "update", "id": 5, "stamp": 1, "renderer_config": {"components": []}, "token": "x" * 43},
        {"v": v, "type": "render", "id": 6, "arrays": [["qpos", "float64", [1 << 20, 1 << 10]]]},
        {"v": v, "type": "render", "id": 6, "stamp": 0, "scene": "guess"},
        {"v": v, "type": "shutdown", "id": 7},
        {"v": v, "type": "shutdown", "id": 7, "token": ["list"]},
        {"v": v, "type": "hello", "id": 8, "token": 12},
        {"v": v, "type": "nonsense", "id": 9},
        {"v": v, "type": 7},
    ]
    return mutated_messages(valid, near, count, rng)


def main() -> int:
    mode, asset_dir, addresses = sys.argv[1], sys.argv[2], sys.argv[3:]
    if mode == "flood":
        messages = [[b"x" * (64 << 20)] * 2]
    else:
        messages = valid_messages(asset_dir) if mode == "valid" else fuzz_messages(asset_dir, 1200, 7)
    context = zmq.Context()
    sockets = []
    for i, address in enumerate(addresses):
        sock = context.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 2000)
        sock.setsockopt(zmq.SNDHWM, 0)  # queue everything
        sock.setsockopt(zmq.SNDTIMEO, 1000)  # a refused handshake leaves nothing to queue on: give up then
        if i % 2:
            wire.offer_token(sock, "not-the-token")
        sock.connect(address)
        sockets.append(sock)
    sent = 0
    for sock in sockets:
        for frames in messages:
            try:
                sock.send_multipart(frames)
                sent += 1
            except zmq.Again:  # refused: nothing left to queue messages on
                break
    if mode == "fuzz":
        for address in addresses:  # bytes that are not ZeroMQ at all
            host, port = address[len("tcp://"):].rsplit(":", 1)
            with socket.create_connection((host, int(port))) as raw:
                raw.sendall(np.random.default_rng(3).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    replies, errors, other = 0, collections.Counter(), []
    deadline = time.monotonic() + 5
    poller = zmq.Poller()
    for sock in sockets:
        poller.register(sock, zmq.POLLIN)
    while replies < sent and time.monotonic() < deadline:
        for sock, _ in poller.poll(200):
            while True:
                try:
                    frames = sock.recv_multipart(zmq.NOBLOCK)
                except zmq.Again:
                    break
                replies += 1
                header, _ = wire.decode(frames)
                if header["type"] == "error":
                    errors[header["error_type"]] += 1
                else:
                    other.append(header["type"])
    for sock in sockets:
        sock.close(linger=0)
    context.term()
    print(json.dumps({"sent": sent, "replies": replies, "errors": dict(errors), "other": other}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
