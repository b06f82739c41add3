"""The wire between ``RemoteRenderer`` and its render servers: both sides import this, never each other.

A message is a ZeroMQ multipart message: one small JSON header frame, then one raw
frame per array. The header names each array with its dtype and shape::

    {"v": 2, "type": "render", "id": 17, "token": "...", "stamp": 0, "scene": "9f..",
     "arrays": [["qpos", "float64", [8, 31]], ["seeds", "uint64", [8]]]}

Arrays travel as raw buffers (sent with ``copy=False``); nothing is ever unpickled.
Every size is limited: the header (``MAX_HEADER_BYTES``), the number of frames
(``MAX_FRAMES``), each array (``max_array_bytes``), and dtypes are whitelisted.
Malformed input raises :class:`ProtocolError`, never anything else. ZeroMQ receives a
whole message before the frames can be counted, and limits each frame's size, not their
sum: only peers that passed the handshake (the token, or the shared secret) can send one.

Messages (:class:`Kind`; client -> server, reply):
    ``hello`` -> ``hello`` (``version``, ``protocol``, ``pid``);
    ``init`` (``config``, ``renderer_config``, ``scene``: an id the client chooses) ->
    ``ready`` (``columns``, ``class_names``, ``renderer_config``, ``streams``, ``scene``);
    ``update`` (``renderer_config``, ``stamp``, ``scene``) -> ``ok`` (``stamp``, ``streams``);
    ``render`` (``stamp``, ``scene``; arrays ``qpos`` float64 ``[n, K]``, ``seeds`` uint64
    ``[n]``) -> ``result`` (one array per output key, ``render_s``);
    ``ping`` -> ``pong``; ``shutdown`` -> ``ok``. Any failure -> ``error`` (``error_type``,
    one of :class:`ErrorKind`, and ``message``) carrying the request's ``id`` when it could be read.

A server that was given a token (the pool's servers always are) refuses connections that
do not present it in the handshake (:func:`offer_token`; with a shared secret, the CURVE
handshake refuses those without the secret instead), and answers every message that does
not carry it in its header with an ``unauthorized`` error, changing nothing. ``streams``
map a component stream's name to ``[dtype, k]`` (one row of ``k`` values per entry).
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import ipaddress
import json
import os
import secrets
from typing import Any

import numpy as np

from orrb.errors import ConfigError, RendererError

__all__ = [
    "ALLOWED_DTYPES",
    "DEFAULT_MAX_ARRAY_BYTES",
    "EXIT_BIND_FAILED",
    "ErrorKind",
    "Kind",
    "MAX_ARRAY_BYTES",
    "MAX_FRAMES",
    "MAX_HEADER_BYTES",
    "PROTOCOL_VERSION",
    "ProtocolError",
    "Refused",
    "TOKEN_ENV",
    "curve_keys",
    "decode",
    "encode",
    "error_fields",
    "exception_for",
    "is_loopback_address",
    "new_token",
    "same_token",
]

PROTOCOL_VERSION = 2
MAX_HEADER_BYTES = 1 << 20  # renderer configs travel in headers; 1 MiB is plenty
MAX_FRAMES = 256
DEFAULT_MAX_ARRAY_BYTES = 1 << 30
MAX_ARRAY_BYTES = 1 << 31
"""The largest array a reply may carry (the client's ``zmq.MAXMSGSIZE``)."""
ALLOWED_DTYPES = frozenset({"uint8", "int32", "int64", "uint64", "float32", "float64", "bool"})
MAX_NDIM = 4
EXIT_BIND_FAILED = 3
"""Exit status of a server that could not bind its address (e.g. the port is taken)."""
TOKEN_ENV = "ORRB_TOKEN"
"""The environment variable that hands a server its token (never the command line)."""
SECRET_ENV = "ORRB_SECRET"
"""The environment variable holding the CURVE shared secret (when no secret file is given)."""


class Kind(str, enum.Enum):
    """Message types, as they appear in a header's ``type``."""

    HELLO = "hello"
    INIT = "init"
    UPDATE = "update"
    RENDER = "render"
    PING = "ping"
    SHUTDOWN = "shutdown"
    READY = "ready"
    OK = "ok"
    RESULT = "result"
    PONG = "pong"
    ERROR = "error"


REQUESTS = (Kind.HELLO, Kind.INIT, Kind.UPDATE, Kind.RENDER, Kind.PING, Kind.SHUTDOWN)


class ProtocolError(ValueError):
    """A message that does not follow the wire format (malformed, truncated, oversized)."""


class ErrorKind(str, enum.Enum):
    """What an ``error`` reply's ``error_type`` names; :data:`ERRORS` maps each to the exception raised."""

    VALUE = "ValueError"
    TYPE = "TypeError"
    CONFIG = "ConfigError"
    FILE_NOT_FOUND = "FileNotFoundError"
    KEY = "KeyError"
    RENDERER = "RendererError"
    PROTOCOL = "ProtocolError"
    UNAUTHORIZED = "unauthorized"  # no token or the wrong one: nothing was done
    NO_SCENE = "no_scene"  # the server has no scene, or another one than the request names
    STALE = "stale"  # the server's config stamp is not the one the request needs
    TOO_LARGE = "too_large"  # the request needs more entries or memory than the server allows


# The one error table of both sides: the server names an exception by the first class it
# is an instance of; the client raises that class (ConfigError before ValueError: a subclass).
ERRORS: dict[ErrorKind, type[Exception]] = {
    ErrorKind.CONFIG: ConfigError,
    ErrorKind.FILE_NOT_FOUND: FileNotFoundError,
    ErrorKind.PROTOCOL: ProtocolError,
    ErrorKind.VALUE: ValueError,
    ErrorKind.TYPE: TypeError,
    ErrorKind.KEY: KeyError,
    ErrorKind.RENDERER: RendererError,
    ErrorKind.UNAUTHORIZED: RendererError,
    ErrorKind.NO_SCENE: RendererError,
    ErrorKind.STALE: RendererError,
    ErrorKind.TOO_LARGE: RendererError,
}


class Refused(Exception):
    """A request the server refuses without changing anything; carries its :class:`ErrorKind`."""

    def __init__(self, kind: ErrorKind, message: str):
        super().__init__(message)
        self.kind = kind


def error_fields(error: BaseException) -> dict[str, str]:
    """The ``error_type`` and ``message`` fields of an ``error`` reply for ``error``."""
    if isinstance(error, Refused):
        return {"error_type": error.kind.value, "message": str(error)}
    for kind, cls in ERRORS.items():
        if isinstance(error, cls):
            message = str(error.args[0]) if isinstance(error, KeyError) and error.args else str(error)
            return {"error_type": kind.value, "message": message}
    return {"error_type": ErrorKind.RENDERER.value, "message": f"{type(error).__name__}: {error}"}


def error_kind(header: dict[str, Any]) -> ErrorKind:
    """The :class:`ErrorKind` of an ``error`` reply (``RENDERER`` for an unknown name)."""
    try:
        return ErrorKind(header.get("error_type"))
    except ValueError:
        return ErrorKind.RENDERER


def exception_for(header: dict[str, Any]) -> type[Exception]:
    """The exception class a client raises for an ``error`` reply."""
    return ERRORS[error_kind(header)]


# -- who may talk to a server ----------------------------------------------------------------------
def new_token() -> str:
    """A fresh random pool token (256 bits, URL-safe text)."""
    return secrets.token_urlsafe(32)


PLAIN_USER = "orrb"
"""The ZeroMQ PLAIN user name of a token's handshake (the token is the password)."""


def offer_token(sock, token: str | None) -> None:
    """Makes client socket ``sock`` (before it connects) present ``token`` in the ZeroMQ
    handshake, as servers with a token and no shared secret require; ``None``: nothing."""
    if token is not None:
        sock.plain_username = PLAIN_USER.encode()
        sock.plain_password = token.encode()


def same_token(expected: str | None, header: dict[str, Any]) -> bool:
    """True when the server needs no token or ``header`` carries ``expected`` (constant time)."""
    if expected is None:
        return True
    got = header.get("token")
    return isinstance(got, str) and hmac.compare_digest(got.encode(), expected.encode())


def read_token_file(path: str) -> str:
    """Reads a token file (first line); refuses one that other users can read.

    Raises:
        ValueError: the file is empty or readable by group or others.
    """
    mode = os.stat(path).st_mode
    if mode & 0o077:
        raise ValueError(f"token file {path} has mode {oct(mode & 0o777)}; others could read it: chmod 600 {path}")
    with open(path) as f:
        token = f.readline().strip()
    if not token:
        raise ValueError(f"token file {path} is empty")
    return token


def curve_keys(secret: str | bytes) -> dict[str, tuple[bytes, bytes]]:
    """Derives the server's and the client's CURVE key pairs from a shared secret.

    Returns:
        ``{"server": (public, secret), "client": (public, secret)}``, Z85-encoded bytes.

    Raises:
        ValueError: the secret is empty.
    """
    import zmq
    from zmq.utils import z85

    if isinstance(secret, str):
        secret = secret.encode()
    if not secret:
        raise ValueError("the shared secret is empty")
    out = {}
    for role in ("server", "client"):
        secret_key = z85.encode(hashlib.sha256(b"orrb-curve-" + role.encode() + b"\0" + secret).digest())
        out[role] = (zmq.curve_public(secret_key), secret_key)
    return out


def is_loopback_address(address: str) -> bool:
    """True for ``tcp://127.x.x.x:port``, ``tcp://localhost:port``, ``tcp://[::1]:port``, ipc and inproc."""
    if not address.startswith("tcp://"):
        return address.startswith(("ipc://", "inproc://"))
    host = address[len("tcp://"):].rsplit(":", 1)[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name or interface name: treat as exposed


# -- the format ------------------------------------------------------------------------------------
def encode(kind: Kind | str, fields: dict[str, Any] | None = None,
           arrays: dict[str, np.ndarray] | None = None) -> list:
    """Builds the frames of one message.

    Args:
        kind: the message type (:class:`Kind`).
        fields: JSON-serializable header fields (``id``, ``stamp``, ``token``, ...).
        arrays: name -> array; C-contiguous arrays are sent without copying.

    Returns:
        ``[header bytes, buffer, ...]`` for ``socket.send_multipart(frames, copy=False)``.

    Raises:
        ProtocolError: an array's dtype is not one the wire carries.
    """
    header = {"v": PROTOCOL_VERSION, "type": kind.value if isinstance(kind, Kind) else kind}
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
        ``(header, arrays)``; arrays are read-only views over the received buffers (no copy).

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
        raise ProtocolError(f"protocol version {str(header.get('v'))[:20]}; this side speaks {PROTOCOL_VERSION}")
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


def streams_to_wire(streams: dict[str, tuple[Any, int]]) -> dict[str, list]:
    """``{name: (dtype, k)}`` -> ``{name: [dtype name, k]}`` (JSON)."""
    return {name: [np.dtype(dtype).name, int(k)] for name, (dtype, k) in streams.items()}


def streams_from_wire(value: Any) -> dict[str, tuple[np.dtype, int]]:
    """``{name: [dtype name, k]}`` -> ``{name: (np.dtype, k)}``.

    Raises:
        ProtocolError: not such a mapping, or a dtype the wire does not carry.
    """
    if not isinstance(value, dict):
        raise ProtocolError(f"streams must be an object {{name: [dtype, k]}}, got {str(value)[:80]}")
    out = {}
    for name, spec in value.items():
        if not (isinstance(spec, list) and len(spec) == 2 and spec[0] in ALLOWED_DTYPES
                and type(spec[1]) is int and spec[1] >= 0):
            raise ProtocolError(f"stream {name[:40]!r}: expected [dtype, k], got {str(spec)[:80]}")
        out[name] = (np.dtype(spec[0]), spec[1])
    return out
