"""The render server: one process, one :class:`orrb.engine.RenderEngine`, one ZeroMQ socket.

Started by :class:`orrb.RemoteRenderer` (one per ``[device, port]`` entry), by
``orrb serve`` or by ``python -m orrb.pool.server``. It answers the messages of
:mod:`orrb.pool.wire` in the order they arrive: ``hello`` (version check), ``init``
(build the scene from a client's config), ``update``, ``render``, ``ping``, ``shutdown``.

Who may use it: the server binds ``127.0.0.1`` unless given another address. A server
given a token (a pool hands its servers a fresh random one through the ``ORRB_TOKEN``
environment variable; ``orrb serve`` reads it from there or from ``--token-file``)
refuses, in the ZeroMQ handshake (the PLAIN mechanism, the token as password), every
connection that does not present it: nothing such a connection sends is received, so no
other process on the machine can change what a pool renders or make its server buffer
data. Binding a non-loopback address needs a shared secret (``--secret-file`` or
``ORRB_SECRET``), from which both sides derive ZeroMQ CURVE keys: traffic is encrypted and
connections without the secret are refused in the handshake. A message is also checked
for the token in its header (with a secret, that is where the token is checked), and one
without it is answered with an ``unauthorized`` error and changes nothing. Every inbound
frame is size-limited (``zmq.MAXMSGSIZE``), a message has at most
:data:`orrb.pool.wire.MAX_FRAMES` frames, and every header, dtype and shape is checked;
nothing received is unpickled; a render request that would exceed the entry limit or the
memory the machine has free is refused before anything is allocated.

Scene changes are atomic: ``init`` builds the new engine before it replaces the old
one, and an ``update`` that fails leaves the chain as it was (the engine is rebuilt
from the previous chain when the failure happened midway); the error reply says why.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import time
import traceback
from typing import Any

import numpy as np

from orrb.pool import wire
from orrb.pool.wire import ErrorKind, Kind, ProtocolError, Refused

__all__ = ["RenderServer", "build_parser", "main"]

log = logging.getLogger("orrb.pool.server")

DEFAULT_MAX_MESSAGE_MB = 256
DEFAULT_MAX_ENTRIES = 65536
_MEMORY_HEADROOM = 2.0  # a render needs its outputs about twice (engine buffers, then the reply)


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
    parser.add_argument("--token-file", default=None, metavar="PATH",
                        help=f"file (mode 600) holding a token every request must carry; clients pass the same "
                             f"token (RemoteRenderer(token=...)). Defaults to the {wire.TOKEN_ENV} environment "
                             "variable; without either, any local process may use the server.")
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

    if device is not None:
        os.environ["ORRB_WARP_DEVICE"] = f"cuda:{device}"  # the warp backend's device (used when CUDA is there)
    if device is not None and egl_device.nvidia_gpu_present():
        try:
            chosen = egl_device.mujoco_egl_device_id(device)
        except Exception as e:  # the driver is there but EGL is not usable: say so and fall back
            return f"device {device}: cannot map the CUDA device to an EGL device ({e}); using MuJoCo's default"
        if chosen is None:
            return f"device {device}: no EGL device reports CUDA device {device}; using MuJoCo's default"
        value, egl_index = chosen
        os.environ["MUJOCO_EGL_DEVICE_ID"] = str(value)
        return f"device {device}: CUDA device {device} is EGL device {egl_index} (MUJOCO_EGL_DEVICE_ID={value})"
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


def _available_memory() -> int | None:
    """Bytes the machine can still give out (``MemAvailable``), or ``None`` where unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


class _Scene:
    """What ``init`` built: the engine, the client's scene id, the chain it started from and
    the updates applied since (stamp = their count)."""

    def __init__(self, engine, scene_id: str, config, base_chain):
        self.engine = engine
        self.scene_id = scene_id
        self.config = config
        self.base_chain = base_chain
        self.history: list = []

    @property
    def stamp(self) -> int:
        return len(self.history)

    def entry_bytes(self) -> tuple[int, int]:
        """``(all outputs, the largest output)``: bytes of one entry, from the response layout."""
        from orrb.renderer import ResponseLayout

        sizes = [int(np.prod(o.shape)) * o.dtype.itemsize
                 for o in ResponseLayout.from_config(self.config, self.engine.streams())]
        return sum(sizes), max(sizes, default=0)


class RenderServer:
    """Serves one engine on one ZeroMQ ROUTER socket until ``shutdown`` or :meth:`stop`.

    Safe when half-built: a bind that fails closes the authenticator and the context
    before the error propagates. A context manager; :meth:`close` is idempotent.

    Args:
        address: the ZeroMQ address to bind (``tcp://127.0.0.1:5000``).
        secret: shared secret for CURVE (``None``: no encryption).
        token: every request must carry it, and without ``secret`` every connection must
            present it in the handshake (``None``: any client may talk).
        max_message_bytes: largest inbound frame; larger ones drop the connection.
        max_entries: most states in one render request.
        verbose: log every request.

    Raises:
        zmq.ZMQError: the address cannot be bound (``errno`` says why).
    """

    def __init__(self, address: str, *, secret: bytes | None = None, token: str | None = None,
                 max_message_bytes: int = DEFAULT_MAX_MESSAGE_MB << 20, max_entries: int = DEFAULT_MAX_ENTRIES,
                 verbose: bool = False):
        import zmq

        self.context = self.auth = self.socket = None
        self.scene: _Scene | None = None
        self._stop = threading.Event()
        self.address = address
        self.token = token
        self.max_message_bytes = int(max_message_bytes)
        self.max_entries = int(max_entries)
        self.verbose = verbose
        try:
            self.context = zmq.Context()
            self.socket = self.context.socket(zmq.ROUTER)
            self.socket.setsockopt(zmq.MAXMSGSIZE, self.max_message_bytes)
            self.socket.setsockopt(zmq.LINGER, 1000)
            if secret is not None:
                from zmq.auth.thread import ThreadAuthenticator

                keys = wire.curve_keys(secret)
                client_public = keys["client"][0]

                class _Allow:
                    def callback(self, domain, key):
                        return key == client_public

                self.auth = ThreadAuthenticator(self.context)
                self.auth.start()
                self.auth.configure_curve_callback("*", credentials_provider=_Allow())
                self.socket.curve_publickey, self.socket.curve_secretkey = keys["server"]
                self.socket.curve_server = True
            elif token is not None:  # connections without the token are refused before they deliver anything
                from zmq.auth.thread import ThreadAuthenticator

                self.auth = ThreadAuthenticator(self.context)
                self.auth.start()
                self.auth.configure_plain("*", {wire.PLAIN_USER: token})
                self.socket.plain_server = True
            self.socket.bind(address)
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> RenderServer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def stop(self) -> None:
        """Makes :meth:`serve` return after the request it is handling (thread- and signal-safe)."""
        self._stop.set()

    def close(self) -> None:
        """Frees the engine, the authenticator, the socket and the context. Idempotent."""
        scene, self.scene = self.scene, None
        try:
            if scene is not None:
                scene.engine.close()
        finally:
            self._close_transport()

    def _close_transport(self) -> None:
        """Stops the authenticator and closes the socket and the context (also when closing the engine failed)."""
        auth, self.auth = self.auth, None
        if auth is not None:
            auth.stop()
        sock, self.socket = self.socket, None
        if sock is not None:
            sock.close(linger=1000)
        context, self.context = self.context, None
        if context is not None:
            context.term()

    # -- the loop ----------------------------------------------------------------------------------
    def serve(self) -> None:
        """Answers requests in arrival order until ``shutdown`` or :meth:`stop`."""
        import zmq

        while not self._stop.is_set():
            try:
                if not self.socket.poll(200):
                    continue
                frames = self.socket.recv_multipart(copy=False)
            except zmq.ZMQError as e:
                if self._stop.is_set():
                    break
                log.warning("receive failed: %s", e)
                continue
            if len(frames) < 2:
                continue  # nothing but an identity: drop
            reply = self.answer(frames[1:])
            try:
                self.socket.send_multipart([frames[0], *reply], copy=False)
            except zmq.ZMQError as e:
                log.warning("reply could not be sent: %s", e)

    def answer(self, body: list) -> list:
        """The reply frames for one request's frames (never raises)."""
        request_id = None
        try:
            header, arrays = wire.decode(body, max_array_bytes=self.max_message_bytes)
            request_id = header.get("id") if type(header.get("id")) is int else None
            if not wire.same_token(self.token, header):
                raise Refused(ErrorKind.UNAUTHORIZED, "the request does not carry this server's token: refused; "
                                                      "nothing was changed")
            if self.verbose:
                log.info("request %s id=%s", str(header["type"])[:20], request_id)
            return self.handle(header, arrays)
        except Exception as e:  # the request failed; the server keeps serving
            fields = wire.error_fields(e)
            if isinstance(e, (ProtocolError, Refused, ValueError, TypeError, KeyError)):
                log.warning("request id=%s refused (%s): %s", request_id, fields["error_type"], fields["message"][:500])
            else:
                log.error("request id=%s failed: %s", request_id, traceback.format_exc())
            return wire.encode(Kind.ERROR, {"id": request_id, **fields})

    def handle(self, header: dict[str, Any], arrays: dict) -> list:
        """Carries out one decoded, authorized request; returns the reply frames."""
        from orrb._version import get_renderer_version

        try:
            kind = Kind(header["type"])
        except ValueError:
            kind = None
        request_id = header.get("id")
        if kind is Kind.HELLO:
            return wire.encode(Kind.HELLO, {"id": request_id, "version": get_renderer_version(),
                                            "protocol": wire.PROTOCOL_VERSION, "pid": os.getpid(),
                                            "max_entries": self.max_entries,
                                            "max_message_bytes": self.max_message_bytes})
        if kind is Kind.PING:
            return wire.encode(Kind.PONG, {"id": request_id})
        if kind is Kind.SHUTDOWN:
            self._stop.set()
            return wire.encode(Kind.OK, {"id": request_id})
        if kind is Kind.INIT:
            return self._init(header)
        if kind is Kind.UPDATE:
            return self._update(header)
        if kind is Kind.RENDER:
            return self._render(header, arrays)
        raise ProtocolError(f"unknown message type {header['type'][:40]!r}; expected one of "
                            f"{[k.value for k in wire.REQUESTS]}")

    # -- requests ----------------------------------------------------------------------------------
    def _current(self, header: dict[str, Any], stamp: int | None) -> _Scene:
        """The scene a request names, at ``stamp``; refuses one this server does not have."""
        scene = self.scene
        if scene is None:
            raise Refused(ErrorKind.NO_SCENE, "the server has no scene yet: the client must send 'init' first")
        wanted = header.get("scene")
        if wanted is not None and wanted != scene.scene_id:
            raise Refused(ErrorKind.NO_SCENE, f"the server runs scene {scene.scene_id!r}, the request names "
                                              f"{str(wanted)[:80]!r}: the client must send 'init' again")
        if stamp is not None and stamp != scene.stamp:
            raise Refused(ErrorKind.STALE, f"the request needs config stamp {stamp}, the server is at "
                                           f"{scene.stamp}: the client must send 'init' again")
        return scene

    def _init(self, header: dict[str, Any]) -> list:
        from orrb.config import RemoteRendererConfig, RendererConfig
        from orrb.engine import create_engine

        config_dict = header.get("config")
        if not isinstance(config_dict, dict):
            raise ProtocolError("init needs a 'config' object (RemoteRendererConfig.to_dict())")
        scene_id = header.get("scene", "")
        if not isinstance(scene_id, str) or len(scene_id) > 100:
            raise ProtocolError("init's 'scene' must be a string of at most 100 characters")
        config = RemoteRendererConfig.from_dict(config_dict)
        renderer_config = header.get("renderer_config")
        chain = RendererConfig.from_json(renderer_config) if isinstance(renderer_config, dict) else None
        started = time.perf_counter()
        engine = create_engine(config, chain)  # built first: a failure leaves the running scene as it was
        old, self.scene = self.scene, _Scene(engine, scene_id, config, chain)
        if old is not None:
            old.engine.close()
        log.info("scene %s ready in %.2f s: cameras %s, %dx%d, %d qpos columns",
                 config.resolve(config.model_xml_path), time.perf_counter() - started, config.camera_names,
                 config.image_width, config.image_height, engine.columns)
        return wire.encode(Kind.READY, {
            "id": header.get("id"),
            "columns": int(engine.columns),
            "class_names": list(engine.class_names),
            "renderer_config": engine.renderer_config().to_dict(),
            "streams": wire.streams_to_wire(engine.streams()),
            "scene": scene_id,
        })

    def _update(self, header: dict[str, Any]) -> list:
        from orrb.config import RendererConfig
        from orrb.engine import create_engine

        stamp = header.get("stamp")
        if stamp is not None and (type(stamp) is not int or stamp < 1):
            raise ProtocolError(f"update's 'stamp' must be an int >= 1, got {str(stamp)[:40]}")
        scene = self._current(header, None if stamp is None else stamp - 1)
        if not isinstance(header.get("renderer_config"), dict):
            raise ProtocolError("update needs a 'renderer_config' object")
        update = RendererConfig.from_json(header["renderer_config"])
        scene.engine.renderer_config().merged(update)  # names a mismatched component before anything changes
        try:
            scene.engine.update(update)
        except BaseException:
            # the chain may be half-changed: rebuild the scene as it was (the start chain plus the
            # updates applied so far, as a restarted server would) and put that in its place
            log.warning("update to stamp %s failed; rebuilding the scene at stamp %d", stamp, scene.stamp)
            try:
                engine = create_engine(scene.config, scene.base_chain)
                for past in scene.history:
                    engine.update(past)
            except BaseException:
                log.error("the previous scene could not be rebuilt: %s", traceback.format_exc())
                self.scene = None
                scene.engine.close()
                raise
            broken, scene.engine = scene.engine, engine
            broken.close()
            raise
        scene.history.append(update)
        log.info("update to stamp %d applied", scene.stamp)
        return wire.encode(Kind.OK, {"id": header.get("id"), "stamp": scene.stamp,
                                     "streams": wire.streams_to_wire(scene.engine.streams())})

    def _render(self, header: dict[str, Any], arrays: dict) -> list:
        stamp = header.get("stamp")
        if stamp is not None and type(stamp) is not int:
            raise ProtocolError(f"render's 'stamp' must be an int, got {str(stamp)[:40]}")
        scene = self._current(header, stamp)
        engine = scene.engine
        qpos, seeds = arrays.get("qpos"), arrays.get("seeds")
        if qpos is None or seeds is None:
            raise ProtocolError("render needs arrays 'qpos' float64 [n, K] and 'seeds' uint64 [n]")
        if qpos.dtype != np.float64 or qpos.ndim != 2 or qpos.shape[1] < engine.columns:
            raise ProtocolError(f"qpos must be float64 [n, K>={engine.columns}], got {qpos.dtype}{list(qpos.shape)}")
        if seeds.dtype != np.uint64 or seeds.shape != (qpos.shape[0],):
            raise ProtocolError(f"seeds must be uint64 [{qpos.shape[0]}], got {seeds.dtype}{list(seeds.shape)}")
        n = qpos.shape[0]
        if n > self.max_entries:
            raise Refused(ErrorKind.TOO_LARGE, f"{n} states in one request; at most {self.max_entries} (--max-entries)")
        entry, entry_largest = scene.entry_bytes()
        largest = n * entry_largest
        if largest > wire.MAX_ARRAY_BYTES:
            raise Refused(ErrorKind.TOO_LARGE, f"{n} states make a reply array of {largest >> 20} MiB; at most "
                                               f"{wire.MAX_ARRAY_BYTES >> 20} MiB travel in one message: send fewer")
        needed = int(n * entry * _MEMORY_HEADROOM)
        available = _available_memory()
        if available is not None and needed > available:
            raise Refused(ErrorKind.TOO_LARGE, f"{n} states need about {needed >> 20} MiB; the server's machine has "
                                               f"{available >> 20} MiB free: send smaller batches")
        if not np.isfinite(qpos).all():
            raise ValueError("qpos contains NaN or inf; all values must be finite")
        started = time.perf_counter()
        out = engine.render(qpos, seeds)
        render_s = time.perf_counter() - started
        return wire.encode(Kind.RESULT, {"id": header.get("id"), "render_s": render_s}, out)


def _read_secret(path: str | None) -> bytes | None:
    if path:
        with open(path, "rb") as f:
            secret = f.read().strip()
        if not secret:
            raise SystemExit(f"orrb serve: the secret file {path} is empty")
        return secret
    env = os.environ.get(wire.SECRET_ENV)
    return os.fsencode(env) if env else None


def _read_token(path: str | None) -> str | None:
    """The token from ``--token-file`` or the environment, which is then cleared (children do not inherit it)."""
    env = os.environ.pop(wire.TOKEN_ENV, None)
    if path:
        try:
            return wire.read_token_file(path)
        except (OSError, ValueError) as e:
            raise SystemExit(f"orrb serve: {e}") from None
    return env or None


def main(argv: list[str] | None = None) -> int:
    """Runs a render server until a ``shutdown`` message, SIGTERM, Ctrl-C, or the parent's death.

    Args:
        argv: command-line arguments (see ``--help``); ``None`` reads ``sys.argv``.

    Returns:
        the process exit status: 0 after a clean stop, 2 for bad arguments,
        :data:`orrb.pool.wire.EXIT_BIND_FAILED` when the address cannot be bound.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.bind is None and args.port is None:
        parser.error("give --port (binds 127.0.0.1) or --bind ADDRESS")
    if args.bind is not None and args.port is not None:
        parser.error("give either --port or --bind, not both")
    address = args.bind or f"tcp://127.0.0.1:{args.port}"
    secret = _read_secret(args.secret_file)
    token = _read_token(args.token_file)
    if not wire.is_loopback_address(address) and secret is None:
        print(f"orrb serve: refusing to bind {address} without a shared secret: a non-loopback address "
              "needs --secret-file PATH or ORRB_SECRET (clients use the same secret)", file=sys.stderr)
        return 2

    handlers: list[logging.Handler] = [logging.FileHandler(args.log_file) if args.log_file else logging.StreamHandler()]
    logging.basicConfig(level=logging.INFO, handlers=handlers, force=True,
                        format="%(asctime)s orrb-server[%(process)d] %(levelname)s %(message)s")
    log.info("starting on %s (%s%s)", address, "CURVE, shared secret" if secret else "plain",
             ", token required" if token else "")
    log.info(_setup_device(args.device, args.lp_threads))
    if args.parent_pid is not None:
        threading.Thread(target=_watch_parent, args=(args.parent_pid,), daemon=True, name="orrb-parent-watch").start()

    import zmq  # (running this module imported the orrb package first, which chose MUJOCO_GL)

    try:
        server = RenderServer(address, secret=secret, token=token,
                              max_message_bytes=int(args.max_message_mb * (1 << 20)),
                              max_entries=args.max_entries, verbose=args.verbose)
    except zmq.ZMQError as e:
        busy = e.errno == zmq.EADDRINUSE
        reason = "another program is using it; choose another port" if busy else e.strerror
        if args.log_file:  # (without one the log is stderr: say it once)
            log.error("cannot bind %s: %s", address, reason)
        print(f"orrb serve: cannot bind {address}: {reason}", file=sys.stderr)
        return wire.EXIT_BIND_FAILED if busy else 1
    signal.signal(signal.SIGTERM, lambda *_: server.stop())
    log.info("listening on %s", address)
    with server:
        try:
            server.serve()
        except KeyboardInterrupt:
            log.info("interrupted")
    log.info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
