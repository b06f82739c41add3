"""The wire format: arrays round-trip bit for bit; malformed messages raise ProtocolError only; one error table."""

from __future__ import annotations

import json

import numpy as np
import pytest

from orrb.errors import ConfigError, RendererError
from orrb.pool import wire
from orrb.pool.wire import ProtocolError, decode, encode


def _bytes(frames):
    return [bytes(f) for f in frames]


def test_arrays_round_trip_bit_identical_with_dtype_and_shape():
    arrays = {
        "img": np.arange(2 * 4 * 5 * 3, dtype=np.uint8).reshape(2, 4, 5, 3),
        "depth": np.linspace(0, 1, 40, dtype=np.float32).reshape(2, 4, 5),
        "seeds": np.array([0, 2**64 - 1], dtype=np.uint64),
        "flags": np.array([[True], [False]]),
    }
    header, out = decode(_bytes(encode("result", {"id": 3, "render_s": 0.5}, arrays)))
    assert header["type"] == "result" and header["id"] == 3 and header["render_s"] == 0.5
    for name, array in arrays.items():
        assert out[name].dtype == array.dtype and out[name].shape == array.shape
        np.testing.assert_array_equal(out[name], array)
        assert not out[name].flags.writeable


def test_non_contiguous_arrays_are_sent_correctly():
    base = np.arange(60, dtype=np.float64).reshape(6, 10)
    _, out = decode(_bytes(encode("render", {"id": 1}, {"qpos": base[::2, 1:5]})))
    np.testing.assert_array_equal(out["qpos"], base[::2, 1:5])


def test_object_arrays_cannot_be_sent():
    with pytest.raises(ProtocolError, match="dtype object cannot be sent"):
        encode("render", {}, {"x": np.array([object()])})


def _header(**fields):
    h = {"v": wire.PROTOCOL_VERSION, "type": "render", "arrays": []}
    h.update(fields)
    return json.dumps(h).encode()


@pytest.mark.parametrize("frames, fragment", [
    ([], "empty message"),
    ([b"\xff\xfe"], "not valid JSON"),
    ([b"[1, 2]"], "must be a JSON object"),
    ([json.dumps({"v": 99, "type": "x"}).encode()], "protocol version 99"),
    ([json.dumps({"v": wire.PROTOCOL_VERSION}).encode()], "no message 'type'"),
    ([_header(arrays=[["a", "uint8", [4]]])], "lists 1 arrays but the message has 0"),
    ([_header(arrays=[["a", "object", [1]]]), b"x"], "dtype 'object' not allowed"),
    ([_header(arrays=[["a", "uint8", [-1]]]), b"x"], "bad shape"),
    ([_header(arrays=[["a", "uint8", [1, 1, 1, 1, 1]]]), b"x"], "bad shape"),
    ([_header(arrays=[["a", "uint8", [4]]]), b"xyz"], "3 bytes received, 4 expected"),
    ([_header(arrays=[["a", "float64", [1 << 30, 8]]]), b""], "exceeds the limit"),
    ([_header(arrays=[["a", "uint8", [1]], ["a", "uint8", [1]]]), b"x", b"y"], "appears twice"),
    ([_header(arrays=["junk"]), b"x"], "must be [name, dtype, shape]"),
    ([b"{" * (wire.MAX_HEADER_BYTES + 1)], "exceeds the limit"),
    ([_header()] + [b""] * (wire.MAX_FRAMES + 1), "frames; at most"),
])
def test_malformed_messages_raise_protocol_error_naming_the_problem(frames, fragment):
    with pytest.raises(ProtocolError) as info:
        decode(frames)
    assert fragment in str(info.value)


def test_deeply_nested_json_header_is_a_protocol_error():
    with pytest.raises(ProtocolError):
        decode([b"[" * 100000 + b"]" * 100000])


def test_random_garbage_never_raises_anything_but_protocol_error():
    rng = np.random.default_rng(0)
    valid = _bytes(encode("render", {"id": 1}, {"qpos": np.zeros((2, 3)), "seeds": np.zeros(2, np.uint64)}))
    for _ in range(2000):
        frames = [bytes(f) for f in valid]
        choice = rng.integers(4)
        if choice == 0:
            frames = [rng.bytes(int(rng.integers(0, 64))) for _ in range(int(rng.integers(1, 4)))]
        elif choice == 1:
            i = int(rng.integers(len(frames)))
            frames[i] = frames[i][: int(rng.integers(0, max(1, len(frames[i]))))]
        elif choice == 2:
            frames = frames[: int(rng.integers(1, len(frames) + 1))]
        else:
            h = bytearray(frames[0])
            h[int(rng.integers(len(h)))] = int(rng.integers(256))
            frames[0] = bytes(h)
        try:
            decode(frames)
        except ProtocolError:
            pass


@pytest.mark.parametrize("error, kind, raised", [
    (ConfigError("bad file"), "ConfigError", ConfigError),
    (ValueError("bad value"), "ValueError", ValueError),
    (TypeError("bad kind"), "TypeError", TypeError),
    (FileNotFoundError("no file"), "FileNotFoundError", FileNotFoundError),
    (KeyError("no key"), "KeyError", KeyError),
    (ProtocolError("bad frame"), "ProtocolError", ProtocolError),
    (RendererError("no context"), "RendererError", RendererError),
    (wire.Refused(wire.ErrorKind.NO_SCENE, "no scene"), "no_scene", RendererError),
    (wire.Refused(wire.ErrorKind.UNAUTHORIZED, "no token"), "unauthorized", RendererError),
    (ZeroDivisionError("oops"), "RendererError", RendererError),
])
def test_one_error_table_names_an_error_on_the_server_and_raises_it_on_the_client(error, kind, raised):
    fields = wire.error_fields(error)
    assert fields["error_type"] == kind
    header, _ = decode(_bytes(encode(wire.Kind.ERROR, {"id": 1, **fields})))
    assert wire.exception_for(header) is raised
    assert str(error.args[0]) in header["message"]
    if kind == "RendererError" and not isinstance(error, RendererError):
        assert header["message"].startswith("ZeroDivisionError: "), "an unexpected error keeps its class name"


def test_unknown_error_kind_from_a_peer_is_a_renderer_error():
    assert wire.exception_for({"error_type": "SystemExit"}) is RendererError
    assert wire.exception_for({}) is RendererError


def test_token_check_is_exact():
    token = wire.new_token()
    assert len(token) >= 40 and token != wire.new_token()
    assert wire.same_token(None, {}) and wire.same_token(token, {"token": token})
    for got in (None, "", token[:-1], token + "x", 7, [token]):
        assert not wire.same_token(token, {"token": got})


def test_streams_round_trip_and_malformed_streams_are_protocol_errors():
    streams = {"lights_color": (np.float32, 6), "flags": (np.bool_, 2)}
    back = wire.streams_from_wire(json.loads(json.dumps(wire.streams_to_wire(streams))))
    assert back == {"lights_color": (np.dtype(np.float32), 6), "flags": (np.dtype(np.bool_), 2)}
    for bad in ([], {"x": ["object", 1]}, {"x": ["float32", -1]}, {"x": ["float32"]}, {"x": ["float32", 1.5]}):
        with pytest.raises(ProtocolError):
            wire.streams_from_wire(bad)
