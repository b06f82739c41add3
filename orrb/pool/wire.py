"""Wire format between ``RemoteRenderer`` and render servers (SPEC §7).

A message is a ZeroMQ multipart message: one small JSON header frame, then one raw
frame per array. The header names each array with its dtype and shape::

    {"v": 1, "type": "render", "id": 17, "arrays": [["qpos", "float64", [8, 31]],
                                                      ["seeds", "uint64", [8]]]}

Arrays travel as raw buffers (sent with ``copy=False``); nothing is ever unpickled.
Every size is limited: the header (``MAX_HEADER_BYTES``), the number of frames
(``MAX_FRAMES``), each array (``max_array_bytes``), and dtypes are whitelisted.
Malformed input raises :class:`ProtocolError`, never anything else.

Message types (client -> server, reply):
    ``hello`` -> ``hello`` (``version``, ``protocol``, ``pid``);
    ``init`` (``config``, ``renderer_config``) -> ``ready`` (``columns``, ``class_names``,
    ``renderer_config``, ``scene``);
    ``update`` (``renderer_config``, ``stamp``) -> ``ok``;
    ``render`` (arrays ``qpos`` float64 ``[n, K]``, ``seeds`` uint64 ``[n]``) -> ``result``
    (one array per output key, ``render_s``);
    ``ping`` -> ``pong``; ``shutdown`` -> ``ok``. Any failure -> ``error`` (``error_type``,
    ``message``) carrying the request's ``id`` when it could be read.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

__all__ = [
    "ALLOWED_DTYPES",
    "MAX_FRAMES",
    "MAX_HEADER_BYTES",
    "PROTOCOL_VERSION",
    "ProtocolError",
    "decode",
    "encode",
]

PROTOCOL_VERSION = 1
MAX_HEADER_BYTES = 1 << 20  # renderer configs travel in headers; 1 MiB is plenty
MAX_FRAMES = 256
DEFAULT_MAX_ARRAY_BYTES = 1 << 30
ALLOWED_DTYPES = frozenset({"uint8", "int32", "int64", "uint64", "float32", "float64", "bool"})
MAX_NDIM = 4


class ProtocolError(ValueError):
    """A message that does not follow the wire format (malformed, truncated, oversized)."""


def encode(kind: str, fields: dict[str, Any] | None = None,
           arrays: dict[str, np.ndarray] | None = None) -> list:
    """Builds the frames of one message.

    Args:
        kind: the message type (``"render"``, ``"result"``, ...).
        fields: JSON-serializable header fields (``id``, ``stamp``, ...).
        arrays: name -> array; C-contiguous arrays are sent without copying.

    Returns:
        ``[header bytes, buffer, ...]`` for ``socket.send_multipart(frames, copy=False)``.
    """
    header = {"v": PROTOCOL_VERSION, "type": kind}
    if fields:
        header.update(fields)
    frames: list = [b""]
    specs = []
    for name, array in (arrays or {}).items():
        array = np.ascontiguousarray(array)
        if array.dtype.name not in ALLOWED_DTYPES:
            raise ProtocolError(f"array {name!r}: dtype {array.dtype} cannot be sent; allowed: {sorted(ALLOWED_DTYPES)}")
        specs.append([name, array.dtype.name, list(array.shape)])
        frames.append(memoryview(array.reshape(-1).view(np.uint8)) if array.size else b"")
    header["arrays"] = specs
    frames[0] = json.dumps(header, separators=(",", ":")).encode()
    return frames


def _buffer(frame) -> memoryview:
    if isinstance(frame, (bytes, bytearray, memoryview)):
        return memoryview(frame)
    return frame.buffer  # zmq.Frame


def decode(frames: list, max_array_bytes: int = DEFAULT_MAX_ARRAY_BYTES) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Parses and checks one message.

    Args:
        frames: the received frames (``bytes`` or ``zmq.Frame``), header first.
        max_array_bytes: the largest array accepted.

    Returns:
        ``(header, arrays)``; arrays are read-only views over the received buffers.

    Raises:
        ProtocolError: anything malformed: header too large or not a JSON object,
            wrong protocol version, a frame count that does not match the header,
            an unknown dtype, a bad shape, a buffer whose size does not match.
    """
    if not frames:
        raise ProtocolError("empty message")
    if len(frames) > MAX_FRAMES + 1:
        raise ProtocolError(f"message has {len(frames)} frames; at most {MAX_FRAMES + 1} allowed")
    raw = _buffer(frames[0])
    if raw.nbytes > MAX_HEADER_BYTES:
        raise ProtocolError(f"header of {raw.nbytes} bytes exceeds the limit of {MAX_HEADER_BYTES}")
    try:
        header = json.loads(bytes(raw))
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise ProtocolError(f"header is not valid JSON: {str(e)[:100]}") from None
    if not isinstance(header, dict):
        raise ProtocolError(f"header must be a JSON object, got {type(header).__name__}")
    if header.get("v") != PROTOCOL_VERSION:
        raise ProtocolError(f"protocol version {header.get('v')!r}; this side speaks {PROTOCOL_VERSION}")
    if not isinstance(header.get("type"), str):
        raise ProtocolError("header has no message 'type'")
    specs = header.get("arrays", [])
    if not isinstance(specs, list) or len(specs) != len(frames) - 1:
        n = len(specs) if isinstance(specs, list) else "?"
        raise ProtocolError(f"header lists {n} arrays but the message has {len(frames) - 1} array frames")
    arrays: dict[str, np.ndarray] = {}
    for spec, frame in zip(specs, frames[1:]):
        if not (isinstance(spec, list) and len(spec) == 3 and isinstance(spec[0], str)
                and isinstance(spec[1], str) and isinstance(spec[2], list)):
            raise ProtocolError(f"array spec must be [name, dtype, shape], got {str(spec)[:80]}")
        name, dtype, shape = spec
        if dtype not in ALLOWED_DTYPES:
            raise ProtocolError(f"array {name[:40]!r}: dtype {dtype[:20]!r} not allowed; allowed: {sorted(ALLOWED_DTYPES)}")
        if len(shape) > MAX_NDIM or not all(type(d) is int and 0 <= d < 1 << 31 for d in shape):
            raise ProtocolError(f"array {name[:40]!r}: bad shape {str(shape)[:80]} (at most {MAX_NDIM} non-negative ints)")
        if name in arrays:
            raise ProtocolError(f"array {name[:40]!r} appears twice")
        dt = np.dtype(dtype)
        nbytes = int(np.prod(shape, dtype=object)) * dt.itemsize
        if nbytes > max_array_bytes:
            raise ProtocolError(f"array {name[:40]!r} of {nbytes} bytes exceeds the limit of {max_array_bytes}")
        buf = _buffer(frame)
        if buf.nbytes != nbytes:
            raise ProtocolError(f"array {name[:40]!r}: {buf.nbytes} bytes received, {nbytes} expected for {dtype}{shape}")
        array = np.frombuffer(buf, dtype=dt).reshape(shape) if nbytes else np.zeros(shape, dt)
        array.flags.writeable = False
        arrays[name] = array
    return header, arrays
