"""The render server: one process, one :class:`orrb.engine.RenderEngine`, one ZeroMQ socket.

Started by :meth:`orrb.RemoteRenderer.start` (one per ``[device, port]`` entry), by
``orrb serve`` or by ``python -m orrb.server``. It answers the messages of
:mod:`orrb.protocol` in the order they arrive: ``hello`` (version check), ``init``
(build the scene from a client's config), ``update``, ``render``, ``ping``, ``shutdown``.

Security: the server binds to ``127.0.0.1`` unless given another address; binding
to any other address needs a shared secret (``--secret-file`` or ``ORRB_SECRET``),
from which both sides derive ZeroMQ CURVE keys: traffic is encrypted and clients
without the secret are refused. Every inbound frame is size-limited
(``zmq.MAXMSGSIZE``) and every header, dtype and shape is checked; malformed
messages are answered with an error or dropped. Nothing received is unpickled.
"""

from __future__ import annotations

import argparse
import hashlib
import ipaddress
import logging
import os
import sys
import threading
import time
import traceback
from typing import Any

__all__ = ["build_parser", "curve_keys", "is_loopback_address", "main"]

log = logging.getLogger("orrb.server")

DEFAULT_MAX_MESSAGE_MB = 256
DEFAULT_MAX_ENTRIES = 65536
# Error types a server may name in an error reply; the client re-raises these kinds.
ERROR_TYPES = ("ValueError", "TypeError", "ConfigError", "FileNotFoundError", "RendererError", "KeyError",
               "AttributeError", "ProtocolError")


def curve_keys(secret: str | bytes) -> dict[str, tuple[bytes, bytes]]:
    """Derives the server's and the client's CURVE key pairs from a shared secret.

    Returns:
        ``{"server": (public, secret), "client": (public, secret)}``, Z85-encoded bytes.
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="orrb serve",
        description=(
            "Run an orrb render server: one process that owns a MuJoCo render engine and answers "
            "RemoteRenderer requests over ZeroMQ. The client sends the scene config at connect time, "
            "so the server needs only an address. Point a RemoteRenderer at it with a server_configs "
            "entry 'tcp://HOST:PORT'."
        ),
    )
    parser.add_argument("--port", type=int, default=None,
                        help="TCP port to listen on, bound to 127.0.0.1 (use --bind for another address).")
    parser.add_argument("--bind", default=None, metavar="ADDRESS",
                        help="full ZeroMQ address to bind, e.g. tcp://0.0.0.0:5000. A non-loopback address "
                             "requires a shared secret (--secret-file or ORRB_SECRET).")
    parser.add_argument("--device", type=int, default=None,
                        help="GPU (CUDA index) to render on; the matching EGL device is found automatically. "
                             "Ignored on a machine without an NVIDIA GPU.")
    parser.add_argument("--secret-file", default=None, metavar="PATH",
                        help="file holding the shared secret (CURVE keys are derived from it; clients must "
                             "use the same secret). Defaults to the ORRB_SECRET environment variable.")
    parser.add_argument("--log-file", default=None, metavar="PATH",
                        help="write the server log here (default: stderr).")
    parser.add_argument("--parent-pid", type=int, default=None, metavar="PID",
                        help="exit within a second when this process (the parent that spawned the server) dies.")
    parser.add_argument("--lp-threads", type=int, default=None, metavar="N",
                        help="Mesa llvmpipe render threads on a CPU machine (sets LP_NUM_THREADS; one-thread "
                             "servers scale best when there are several).")
    parser.add_argument("--max-message-mb", type=float, default=DEFAULT_MAX_MESSAGE_MB, metavar="MB",
                        help=f"largest inbound message frame in MiB; larger ones drop the connection "
                             f"(default {DEFAULT_MAX_MESSAGE_MB}).")
    parser.add_argument("--max-entries", type=int, default=DEFAULT_MAX_ENTRIES, metavar="N",
                        help=f"largest number of states in one render request (default {DEFAULT_MAX_ENTRIES}).")
    parser.add_argument("--verbose", action="store_true", help="log every request.")
    return parser


def _setup_device(device: int | None, lp_threads: int | None) -> str:
    """Chooses the GL device before any GL context exists; returns a line for the log."""
    from orrb import egl_device

    if device is not None and egl_device.nvidia_gpu_present():
        try:
            egl_index = egl_device.egl_index_for_cuda_device(device)
        except Exception as e:  # the driver is there but EGL is not usable: say so and fall back
            return f"device {device}: cannot map the CUDA device to an EGL device ({e}); using MuJoCo's default"
        if egl_index is None:
            return f"device {device}: no EGL device reports CUDA device {device}; using MuJoCo's default"
        os.environ["MUJOCO_EGL_DEVICE_ID"] = str(egl_index)
        return f"device {device}: CUDA device {device} is EGL device {egl_index} (MUJOCO_EGL_DEVICE_ID)"
    if lp_threads is not None:
        os.environ["LP_NUM_THREADS"] = str(lp_threads)
    return f"CPU rendering (device {device} ignored), LP_NUM_THREADS={os.environ.get('LP_NUM_THREADS', 'default')}"


def _watch_parent(parent_pid: int) -> None:
    while True:
        if os.getppid() != parent_pid:
            log.warning("parent process %d is gone: exiting", parent_pid)
            logging.shutdown()
            os._exit(0)
        time.sleep(0.3)


class _Server:
    def __init__(self, args: argparse.Namespace, address: str, secret: bytes | None):
        import zmq

        self.args = args
        self.address = address
        self.max_message_bytes = int(args.max_message_mb * (1 << 20))
        self.context = zmq.Context()
        self.auth = None
        self.socket = self.context.socket(zmq.ROUTER)
        self.socket.setsockopt(zmq.MAXMSGSIZE, self.max_message_bytes)
        self.socket.setsockopt(zmq.LINGER, 1000)
        if secret is not None:
            from zmq.auth.thread import ThreadAuthenticator

            keys = curve_keys(secret)
            client_public = keys["client"][0]

            class _Allow:
                def callback(self, domain, key):
                    return key == client_public

            self.auth = ThreadAuthenticator(self.context)
            self.auth.start()
            self.auth.configure_curve_callback("*", credentials_provider=_Allow())
            self.socket.curve_publickey, self.socket.curve_secretkey = keys["server"]
            self.socket.curve_server = True
        self.socket.bind(address)
        self.engine = None
        self.stop = False

    def close(self) -> None:
        if self.engine is not None:
            self.engine.close()
            self.engine = None
        if self.auth is not None:
            self.auth.stop()
        self.socket.close(linger=1000)
        self.context.term()

    def serve(self) -> None:
        import zmq

        from orrb.protocol import ProtocolError, decode, encode

        max_array = self.max_message_bytes
        while not self.stop:
            if not self.socket.poll(500):
                continue
            try:
                frames = self.socket.recv_multipart(copy=False)
            except zmq.ZMQError as e:
                log.warning("receive failed: %s", e)
                continue
            if len(frames) < 2:
                continue  # nothing but an identity: drop
            identity, body = frames[0], frames[1:]
            request_id = None
            try:
                header, arrays = decode(body, max_array_bytes=max_array)
                request_id = header.get("id") if type(header.get("id")) is int else None
                if self.args.verbose:
                    log.info("request %s id=%s", header["type"], request_id)
                reply = self.handle(header, arrays)
            except ProtocolError as e:
                log.warning("malformed message dropped with an error reply: %s", e)
                reply = encode("error", {"id": request_id, "error_type": "ProtocolError", "message": str(e)})
            except Exception as e:  # the request failed; the server keeps serving
                kind = type(e).__name__
                if isinstance(e, (ValueError, TypeError, KeyError, AttributeError)):
                    log.warning("request id=%s failed: %s: %s", request_id, kind, e)
                else:
                    log.error("request id=%s failed: %s", request_id, traceback.format_exc())
                reply = encode("error", {"id": request_id, "error_type": kind if kind in ERROR_TYPES else "RendererError",
                                         "message": f"{kind}: {e}" if kind not in ERROR_TYPES else str(e)})
            try:
                self.socket.send_multipart([identity, *reply], copy=False)
            except zmq.ZMQError as e:
                log.warning("reply could not be sent: %s", e)

    def handle(self, header: dict[str, Any], arrays: dict) -> list:
        from orrb import get_renderer_version
        from orrb.protocol import PROTOCOL_VERSION, ProtocolError, encode

        kind, request_id = header["type"], header.get("id")
        if kind == "hello":
            return encode("hello", {"id": request_id, "version": get_renderer_version(),
                                    "protocol": PROTOCOL_VERSION, "pid": os.getpid()})
        if kind == "ping":
            return encode("pong", {"id": request_id})
        if kind == "shutdown":
            self.stop = True
            return encode("ok", {"id": request_id})
        if kind == "init":
            return self._init(header)
        if kind == "update":
            self._require_engine()
            from orrb.config import RendererConfig

            if not isinstance(header.get("renderer_config"), dict):
                raise ProtocolError("update needs a 'renderer_config' object")
            self.engine.update(RendererConfig.from_json(header["renderer_config"]))
            log.info("update to stamp %s applied", header.get("stamp"))
            return encode("ok", {"id": request_id, "stamp": header.get("stamp")})
        if kind == "render":
            return self._render(header, arrays)
        raise ProtocolError(f"unknown message type {kind[:40]!r}; expected hello, init, update, render, ping, shutdown")

    def _require_engine(self):
        if self.engine is None:
            from orrb.errors import RendererError

            raise RendererError("the server has no scene yet: the client must send 'init' first")

    def _init(self, header: dict[str, Any]) -> list:
        from orrb.config import RemoteRendererConfig, RendererConfig
        from orrb.engine import RenderEngine
        from orrb.protocol import ProtocolError, encode

        config_dict = header.get("config")
        if not isinstance(config_dict, dict):
            raise ProtocolError("init needs a 'config' object (RemoteRendererConfig.to_dict())")
        config = RemoteRendererConfig.from_dict(config_dict)
        renderer_config = header.get("renderer_config")
        chain = RendererConfig.from_json(renderer_config) if isinstance(renderer_config, dict) else None
        if self.engine is not None:
            self.engine.close()
            self.engine = None
        started = time.perf_counter()
        self.engine = RenderEngine(config, chain)
        log.info("scene %s ready in %.2f s: cameras %s, %dx%d, %d qpos columns",
                 config.resolve(config.model_xml_path), time.perf_counter() - started, config.camera_names,
                 config.image_width, config.image_height, self.engine.columns)
        return encode("ready", {
            "id": header.get("id"),
            "columns": int(self.engine.columns),
            "class_names": list(self.engine.class_names),
            "renderer_config": self.engine.renderer_config().to_dict(),
            "scene": config.resolve(config.model_xml_path),
        })

    def _render(self, header: dict[str, Any], arrays: dict) -> list:
        import numpy as np

        from orrb.protocol import ProtocolError, encode

        self._require_engine()
        qpos, seeds = arrays.get("qpos"), arrays.get("seeds")
        if qpos is None or seeds is None:
            raise ProtocolError("render needs arrays 'qpos' float64 [n, K] and 'seeds' uint64 [n]")
        if qpos.dtype != np.float64 or qpos.ndim != 2 or qpos.shape[1] < self.engine.columns:
            raise ProtocolError(f"qpos must be float64 [n, K>={self.engine.columns}], got {qpos.dtype}{list(qpos.shape)}")
        if seeds.dtype != np.uint64 or seeds.shape != (qpos.shape[0],):
            raise ProtocolError(f"seeds must be uint64 [{qpos.shape[0]}], got {seeds.dtype}{list(seeds.shape)}")
        if qpos.shape[0] > self.args.max_entries:
            raise ProtocolError(f"{qpos.shape[0]} states in one request; at most {self.args.max_entries} (--max-entries)")
        if not np.isfinite(qpos).all():
            raise ValueError("qpos contains NaN or inf; all values must be finite")
        started = time.perf_counter()
        out = self.engine.render(qpos, seeds)
        render_s = time.perf_counter() - started
        return encode("result", {"id": header.get("id"), "render_s": render_s}, out)


def _read_secret(path: str | None) -> bytes | None:
    if path:
        with open(path, "rb") as f:
            secret = f.read().strip()
        if not secret:
            raise SystemExit(f"orrb serve: the secret file {path} is empty")
        return secret
    env = os.environ.get("ORRB_SECRET")
    return env.encode() if env else None


def main(argv: list[str] | None = None) -> int:
    """Runs a render server until a ``shutdown`` message, SIGTERM, or the parent's death.

    Args:
        argv: command-line arguments (see ``--help``); ``None`` reads ``sys.argv``.

    Returns:
        the process exit status (0 after a clean shutdown).
    """
    args = build_parser().parse_args(argv)
    if args.bind is None and args.port is None:
        build_parser().error("give --port (binds 127.0.0.1) or --bind ADDRESS")
    if args.bind is not None and args.port is not None:
        build_parser().error("give either --port or --bind, not both")
    address = args.bind or f"tcp://127.0.0.1:{args.port}"
    secret = _read_secret(args.secret_file)
    if not is_loopback_address(address) and secret is None:
        print(f"orrb serve: refusing to bind {address} without a shared secret: a non-loopback address "
              "needs --secret-file PATH or ORRB_SECRET (clients use the same secret)", file=sys.stderr)
        return 2

    handlers: list[logging.Handler] = [logging.FileHandler(args.log_file) if args.log_file else logging.StreamHandler()]
    logging.basicConfig(level=logging.INFO, handlers=handlers, force=True,
                        format="%(asctime)s orrb-server[%(process)d] %(levelname)s %(message)s")
    log.info("starting on %s (%s)", address, "CURVE, shared secret" if secret else "plain")
    log.info(_setup_device(args.device, args.lp_threads))
    if args.parent_pid is not None:
        threading.Thread(target=_watch_parent, args=(args.parent_pid,), daemon=True, name="orrb-parent-watch").start()

    import orrb  # noqa: F401  (sets MUJOCO_GL=egl before mujoco is imported)

    try:
        server = _Server(args, address, secret)
    except Exception as e:
        log.error("cannot bind %s: %s", address, e)
        print(f"orrb serve: cannot bind {address}: {e}", file=sys.stderr)
        return 1
    log.info("listening on %s", address)
    try:
        server.serve()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()
        log.info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
