"""Server processes of a pool: spawn, connect, handshake, health, restart.

The :class:`Supervisor` runs on the pool's I/O thread and owns every server's process,
socket and handshake. It knows nothing of batches: it carries render requests for the
dispatcher and reports what happened as events (:class:`Ready`, :class:`Lost`,
:class:`Stopped`, :class:`Failed`, :class:`RenderReply`), and the dispatcher decides
what to do with the work of a server that was lost.

A server's life (:class:`ServerState`)::

    NEW -> CONNECTING (hello sent) -> LOADING (init sent) -> READY
    READY/CONNECTING/LOADING -> (died, hung)      -> CONNECTING again (restarted) ... -> FAILED
    READY                    -> (lost its scene) -> LOADING again (re-initialized)
    any                      -> (exited cleanly, told to stop) -> STOPPED (not restarted)

Logs of spawned servers go to one per-user folder (:func:`log_dir`) that keeps the
newest :data:`MAX_LOG_FILES` files.
"""

from __future__ import annotations

import collections
import dataclasses
import enum
import logging
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from typing import Any

import numpy as np
import zmq

from orrb.config import RemoteRendererConfig
from orrb.errors import RendererError
from orrb.pool import wire
from orrb.pool.wire import ErrorKind, Kind

__all__ = ["Failed", "History", "Lost", "MAX_LOG_FILES", "Ready", "RenderReply", "Server", "ServerState",
           "Stopped", "Supervisor", "log_dir", "private_dir"]

log = logging.getLogger("orrb.pool")

MAX_LOG_FILES = 64
MAX_REPLY_BYTES = wire.MAX_ARRAY_BYTES
# Servers run side by side, several per machine: one BLAS/OpenMP thread each. A numpy product
# that reaches a multithreaded BLAS starts a thread per core in every server, and the servers'
# threads then starve each other (benchmarks/RESULTS.md).
ONE_THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
_CLEAN_EXITS = (0, -signal.SIGINT, -signal.SIGTERM)
_WATCHED = (zmq.EVENT_CONNECTED | zmq.EVENT_CONNECT_RETRIED | zmq.EVENT_HANDSHAKE_SUCCEEDED
            | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL | zmq.EVENT_HANDSHAKE_FAILED_AUTH)


# -- per-user folders --------------------------------------------------------------------------------
def private_dir() -> str:
    """This user's orrb folder (mode 0700): ``$XDG_CACHE_HOME/orrb`` (``~/.cache/orrb``), or
    ``<tempdir>/orrb-<uid>`` when that cannot be made.

    Raises:
        RendererError: no folder could be made that only this user can enter.
    """
    uid = os.getuid() if hasattr(os, "getuid") else 0
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    tried = []
    for path in (os.path.join(cache, "orrb"), os.path.join(tempfile.gettempdir(), f"orrb-{uid}")):
        try:
            os.makedirs(path, mode=0o700, exist_ok=True)
            info = os.stat(path)
            if info.st_uid != uid:
                raise PermissionError(f"owned by uid {info.st_uid}")
            if info.st_mode & 0o077:
                os.chmod(path, 0o700)
            return path
        except OSError as e:
            tried.append(f"{path}: {e}")
    raise RendererError("no private orrb folder could be made: " + "; ".join(tried))


def log_dir() -> str:
    """The folder of spawned servers' log files (``private_dir()/logs``)."""
    path = os.path.join(private_dir(), "logs")
    os.makedirs(path, mode=0o700, exist_ok=True)
    return path


def prune_logs(folder: str, keep: int = MAX_LOG_FILES) -> None:
    """Removes the oldest ``orrb-*.log`` files of ``folder`` beyond the newest ``keep``."""
    try:
        entries = [e for e in os.scandir(folder) if e.name.startswith("orrb-") and e.name.endswith(".log")]
        entries.sort(key=lambda e: e.stat().st_mtime)
        for entry in entries[: max(0, len(entries) - keep)]:
            os.unlink(entry.path)
    except OSError:
        pass  # another pool prunes at the same time


def log_tail(path: str | None, lines: int = 8) -> str:
    """The last lines of a log file, indented under a heading (``""`` when unreadable)."""
    if not path:
        return ""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 4000))
            text = f.read().decode(errors="replace").strip().splitlines()[-lines:]
    except OSError:
        return ""
    return ("\n  last lines of the log:\n    " + "\n    ".join(text)) if text else ""


# -- the servers -----------------------------------------------------------------------------------
class ServerState(enum.Enum):
    NEW = "new"
    CONNECTING = "connecting"  # hello sent
    LOADING = "loading"  # init sent
    READY = "ready"
    STOPPED = "stopped"  # exited cleanly or told to stop: not a failure, not restarted
    FAILED = "failed"  # gave up: its work fails


@dataclasses.dataclass
class _Pending:
    kind: Kind
    work: Any = None  # the dispatcher's shard for a render request
    entries: int = 0  # states to render (a longer answer time is allowed)


class Server:
    """One server of the pool: its address, process, socket and requests in flight (I/O thread only)."""

    def __init__(self, index: int, address: str, *, device: int | None, port: int | None, spawn: bool,
                 log_file: str | None, token: str | None, by_hand: bool = False):
        self.index, self.address, self.device, self.port = index, address, device, port
        self.spawn, self.log_file, self.token = spawn, log_file, token
        self.by_hand = by_hand  # ours, but started by hand (ORRB_DETACHED): waited for without limit
        self.awaited = False  # gone, to come back at an address given later (server_moved): waited for
        self.proc: subprocess.Popen | None = None
        self.socket: zmq.Socket | None = None
        self.state = ServerState.NEW
        self.since = time.monotonic()
        self.applied_stamp = 0
        self.failures = 0
        self.spawns = 0
        self.error: BaseException | None = None
        self.pid: int | None = None
        self.info: dict[str, Any] = {}  # the ready reply: columns, class_names, renderer_config, streams
        self.outstanding: collections.OrderedDict[int, _Pending] = collections.OrderedDict()
        self.monitor: zmq.Socket | None = None  # transport events while a server given by address connects
        self.seen: set[str] = set()  # "refused", "connected", "handshake failed", "handshake ok"
        self.head_since = time.monotonic()  # when the oldest request in flight became the oldest

    @property
    def alive(self) -> bool:
        """Not stopped and not given up: it has or will have a scene."""
        return self.state not in (ServerState.STOPPED, ServerState.FAILED)

    def describe(self) -> str:
        port = f", port {self.port}" if self.port is not None else ""
        log_file = f", log {self.log_file}" if self.log_file else ""
        return f"server {self.address}{port}{log_file}"

    def error_for(self, message: str) -> RendererError:
        return RendererError(message, server=self.address, log_file=self.log_file)


# -- events ------------------------------------------------------------------------------------------
@dataclasses.dataclass
class Ready:
    """The server has the scene and can take work."""
    server: Server


@dataclasses.dataclass
class Lost:
    """The server's requests in flight are gone (it died, hung or lost its scene); it is being
    restarted or re-initialized: its unfinished work must be sent again once it is ready."""
    server: Server
    reason: str


@dataclasses.dataclass
class Stopped:
    """The server exited cleanly or was told to stop: its unfinished work must go elsewhere."""
    server: Server
    reason: str


@dataclasses.dataclass
class Failed:
    """The supervisor gave up on the server: its unfinished work fails with ``error``."""
    server: Server
    error: BaseException


@dataclasses.dataclass
class RenderReply:
    """The answer to a render request: ``header['type']`` is ``result`` or ``error``."""
    server: Server
    work: Any
    header: dict[str, Any]
    arrays: dict[str, np.ndarray]


class History:
    """The chain a pool started from and its updates in order; stamp ``k`` = after ``k`` updates.
    Appended by the caller's thread, read by the I/O thread."""

    def __init__(self, base: dict[str, Any]):
        self.base = base
        self.updates: list[dict[str, Any]] = []
        self.streams: dict[int, dict[str, tuple[np.dtype, int]]] = {}  # as the servers report them

    @property
    def stamp(self) -> int:
        return len(self.updates)


# -- the supervisor ------------------------------------------------------------------------------------
class Supervisor:
    """Spawns, connects, handshakes, health-checks and restarts the servers of one pool.

    Args:
        name: the pool's name (logs, thread names).
        servers: the servers to supervise.
        config: what the servers render (sent in ``init``).
        history: the chain and its updates (replayed after a restart).
        scene_id: the id every ``init`` names; requests naming another are refused.
        secret: CURVE shared secret of servers started by hand, or ``None``.
        timeout / entry_timeout: a busy server may stay silent ``timeout + entry_timeout * entries``
            seconds before it is declared hung.
        start_timeout: seconds a spawned server may take to answer and load the scene.
        connect_timeout: seconds a server not spawned here may take to answer ``hello``.
        max_restarts: consecutive failures of one server tolerated before it is given up.
        token_file: where servers started by hand read the pool's token (``ORRB_DETACHED``).
    """

    def __init__(self, name: str, servers: list[Server], config: RemoteRendererConfig, history: History, *,
                 scene_id: str, secret: str | bytes | None, timeout: float,
                 entry_timeout: float, start_timeout: float, connect_timeout: float, max_restarts: int,
                 token_file: str | None = None):
        self.name, self.servers, self.config, self.history = name, servers, config, history
        self.scene_id, self.secret = scene_id, secret
        self.timeout, self.entry_timeout = timeout, entry_timeout
        self.start_timeout, self.connect_timeout = start_timeout, connect_timeout
        self.max_restarts, self.token_file = max_restarts, token_file
        self.restarts = 0
        self.started = False  # start() has returned: a failure from now on restarts the server
        self.stopping = False
        self._next_id = 0
        self.context = zmq.Context()
        self.poller = zmq.Poller()
        self._by_socket: dict[zmq.Socket, Server] = {}
        self._by_monitor: dict[zmq.Socket, Server] = {}
        self._events: list = []
        self._extra_registered: set = set()

    def start_complete(self) -> None:
        """``start()`` has returned: from now on a failing server is restarted (before, it fails start)."""
        self.started = True

    # -- commands for spawned servers ------------------------------------------------------------------
    def server_command(self, server: Server) -> list[str]:
        """The command line of a spawned server (carries no token: that travels in the environment)."""
        cmd = [sys.executable, "-m", "orrb.pool.server", "--port", str(server.port), "--device", str(server.device)]
        from orrb.egl_device import nvidia_gpu_present

        if not nvidia_gpu_present():
            # llvmpipe in the server's own thread, no rasterizer threads: single-threaded servers
            # scale best side by side, and 0 was ~9% faster than one rasterizer thread (1)
            cmd += ["--lp-threads", "0"]
        if server.by_hand:
            if self.token_file:
                cmd += ["--token-file", self.token_file]
        else:
            cmd += ["--log-file", server.log_file, "--parent-pid", str(os.getpid())]
        return cmd

    # -- sending -------------------------------------------------------------------------------------
    def _send(self, server: Server, kind: Kind, fields: dict[str, Any] | None = None,
              arrays: dict[str, np.ndarray] | None = None, work: Any = None, entries: int = 0) -> int:
        self._next_id += 1
        req_id = self._next_id
        if not server.outstanding:
            server.head_since = time.monotonic()
        server.outstanding[req_id] = _Pending(kind, work, entries)
        header = {"id": req_id, **(fields or {})}
        if server.token is not None:
            header["token"] = server.token
        server.socket.send_multipart(wire.encode(kind, header, arrays), copy=False)
        return req_id

    def sync(self, server: Server, stamp: int) -> None:
        """Sends ``server`` the updates it lacks up to ``stamp`` (in order)."""
        while server.applied_stamp < stamp:
            k = server.applied_stamp + 1
            self._send(server, Kind.UPDATE, {"stamp": k, "scene": self.scene_id,
                                             "renderer_config": self.history.updates[k - 1]})
            server.applied_stamp = k

    def render(self, server: Server, work: Any, stamp: int, qpos: np.ndarray, seeds: np.ndarray) -> int:
        """Brings a ready server to ``stamp`` and sends it one render request; returns its id."""
        if server.state is not ServerState.READY:
            raise RendererError(f"{server.describe()}: render request to a server in state {server.state.value}")
        self.sync(server, stamp)
        return self._send(server, Kind.RENDER, {"stamp": stamp, "scene": self.scene_id},
                          {"qpos": qpos, "seeds": seeds}, work, entries=qpos.shape[0])

    # -- launching -----------------------------------------------------------------------------------
    def launch_all(self) -> None:
        if self.servers and self.servers[0].log_file:
            prune_logs(os.path.dirname(self.servers[0].log_file))
        for server in self.servers:
            self._launch_or_give_up(server)

    def _launch_or_give_up(self, server: Server) -> None:
        """Launches ``server``; a launch that raises (a log file that cannot be opened, a process
        that cannot start, an address ZeroMQ refuses) gives that server up, not the pool."""
        try:
            self.launch(server)
        except Exception as e:
            self._give_up(server, server.error_for(f"{server.describe()} could not be launched: {e}"))

    def launch(self, server: Server) -> None:
        """(Re)starts a server: spawns its process if it is ours, connects, sends hello."""
        if server.spawn:
            self._kill(server)
            env = dict(os.environ, MUJOCO_GL=os.environ.get("MUJOCO_GL", "egl"))
            for var in ONE_THREAD_VARS:  # unless the user set them
                env.setdefault(var, "1")
            env.pop(wire.TOKEN_ENV, None)
            if server.token is not None:
                env[wire.TOKEN_ENV] = server.token
            env.pop(wire.SECRET_ENV, None)  # the pool's secret (secret= or this one), so that both ends agree
            if self.secret is not None:
                env[wire.SECRET_ENV] = os.fsdecode(self.secret)
            mode = "a" if server.spawns else "w"
            with open(server.log_file, mode) as log_handle:
                # a session of its own: Ctrl-C in a terminal reaches only the parent, which stops
                # the servers in order (they also exit when the parent dies)
                server.proc = subprocess.Popen(self.server_command(server), env=env, stdin=subprocess.DEVNULL,
                                               stdout=log_handle, stderr=subprocess.STDOUT, start_new_session=True)
            server.spawns += 1
            server.pid = server.proc.pid
        self._connect(server)
        self._forget_requests(server)
        server.state, server.since = ServerState.CONNECTING, time.monotonic()
        self._send(server, Kind.HELLO)

    def _connect(self, server: Server) -> None:
        self._disconnect(server)
        sock = self.context.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.MAXMSGSIZE, MAX_REPLY_BYTES)
        sock.setsockopt(zmq.SNDHWM, 0)
        sock.setsockopt(zmq.RCVHWM, 0)
        if self.secret is not None:
            keys = wire.curve_keys(self.secret)
            sock.curve_serverkey = keys["server"][0]
            sock.curve_publickey, sock.curve_secretkey = keys["client"]
        else:
            wire.offer_token(sock, server.token)
        server.seen = set()
        if not server.spawn:  # to say why a server given by address does not answer
            server.monitor = sock.get_monitor_socket(_WATCHED)
            self.poller.register(server.monitor, zmq.POLLIN)
            self._by_monitor[server.monitor] = server
        sock.connect(server.address)
        server.socket = sock
        self.poller.register(sock, zmq.POLLIN)
        self._by_socket[sock] = server

    def _stop_monitor(self, server: Server) -> None:
        if server.monitor is not None:
            self.poller.unregister(server.monitor)
            self._by_monitor.pop(server.monitor, None)
            server.socket.disable_monitor()
            server.monitor.close(linger=0)
            server.monitor = None

    def _on_transport_events(self, server: Server) -> None:
        from zmq.utils.monitor import recv_monitor_message

        while server.monitor is not None:
            try:
                event = recv_monitor_message(server.monitor, zmq.NOBLOCK)["event"]
            except zmq.Again:
                break
            if event == zmq.EVENT_CONNECT_RETRIED and "connected" not in server.seen:
                server.seen.add("refused")
            elif event == zmq.EVENT_CONNECTED:
                server.seen.add("connected")
            elif event == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                server.seen.add("handshake ok")
            elif event in (zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL, zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL,
                           zmq.EVENT_HANDSHAKE_FAILED_AUTH):
                server.seen.add("handshake failed")

    def _disconnect(self, server: Server, linger: int = 0) -> None:
        if server.socket is not None:
            self._stop_monitor(server)
            self.poller.unregister(server.socket)
            self._by_socket.pop(server.socket, None)
            server.socket.close(linger=linger)
            server.socket = None

    def _forget_requests(self, server: Server) -> None:
        server.outstanding.clear()
        server.applied_stamp = 0

    def _kill(self, server: Server) -> None:
        if server.proc is not None and server.proc.poll() is None:
            try:
                server.proc.kill()
            except OSError:
                pass
            server.proc.wait()

    # -- failures ------------------------------------------------------------------------------------
    def _give_up(self, server: Server, error: BaseException) -> None:
        """A failure a restart cannot fix, or one too many: the server's work fails with ``error``."""
        server.state, server.error, server.since = ServerState.FAILED, error, time.monotonic()
        log.error("%s", error)
        self._kill(server)
        self._disconnect(server)
        server.outstanding.clear()
        self._events.append(Failed(server, error))

    def _lost(self, server: Server, reason: str, *, error: RendererError | None = None) -> None:
        """The server died or hung: restart it (its work is sent again), or give up after repeated failures."""
        server.failures += 1
        if not self.started or server.failures > self.max_restarts:
            if error is None:
                times = f" ({server.failures} consecutive failures)" if self.started else ""
                what = "failed" if self.started else "failed to start"
                error = server.error_for(f"{server.describe()} {what}: {reason}{times}{log_tail(server.log_file)}")
            self._give_up(server, error)
            return
        log.warning("%s: %s; restarting it (failure %d of %d allowed)", server.describe(), reason,
                    server.failures, self.max_restarts)
        self.restarts += 1
        self._events.append(Lost(server, reason))
        self._launch_or_give_up(server)

    def _diverged(self, server: Server, reason: str) -> None:
        """The server answered that it lacks the pool's scene or config: initialize it again."""
        server.failures += 1
        if server.failures > self.max_restarts:
            self._give_up(server, server.error_for(f"{server.describe()} keeps losing its scene: {reason}"))
            return
        log.warning("%s: %s; initializing it again", server.describe(), reason)
        self.restarts += 1
        self._events.append(Lost(server, reason))
        self._forget_requests(server)
        self._send_init(server)

    def reinitialize(self, server: Server, reason: str) -> None:
        """Sends a ready server ``init`` again (its requests in flight are dropped: :class:`Lost`)."""
        log.info("%s: %s; initializing it again", server.describe(), reason)
        self._events.append(Lost(server, reason))
        self._forget_requests(server)
        self._send_init(server)

    # -- servers that whoever started them reports gone or moved (e.g. Ray actors) --------------------
    def server_gone(self, server: Server, reason: str, *, for_good: bool = False) -> None:
        """A server not spawned here is gone, as whoever started it reports (a Ray actor died).

        Its requests in flight are dropped. While other servers are alive its work moves to
        them (:class:`Stopped`), and :meth:`server_moved` may bring it back later. As the last
        server its work waits for it instead (:class:`Lost`), without a time limit, until
        :meth:`server_moved`; with ``for_good`` it is given up (:class:`Failed`: its batches fail).
        """
        if not server.alive or self.stopping:
            return
        others = any(s.alive for s in self.servers if s is not server)
        self._disconnect(server)
        server.outstanding.clear()
        if others:
            log.info("%s is gone (%s): its work goes to the other servers", server.describe(), reason)
            server.state, server.since = ServerState.STOPPED, time.monotonic()
            server.error = server.error_for(f"{server.describe()} is gone ({reason})")
            self._events.append(Stopped(server, reason))
        elif for_good:
            self._give_up(server, server.error_for(f"{server.describe()} is gone ({reason}) and no other server "
                                                   "is left"))
        else:
            log.warning("%s is gone (%s): its work waits for it to come back", server.describe(), reason)
            self._events.append(Lost(server, reason))
            self._forget_requests(server)
            server.awaited = True
            server.state, server.since = ServerState.CONNECTING, time.monotonic()

    def server_moved(self, server: Server, address: str) -> None:
        """A server not spawned here is (back) at ``address``: connect, handshake and load the
        scene there (:class:`Ready` when done), also after :meth:`server_gone`."""
        if server.spawn or self.stopping:
            return
        log.info("%s is now at %s", server.describe(), address)
        if server.outstanding:  # requests in flight at the old address: sent again once it is ready here
            self._events.append(Lost(server, f"moved to {address}"))
        tail = address.rsplit(":", 1)[-1]
        server.address, server.port = address, int(tail) if tail.isdigit() else None
        server.error, server.awaited = None, False
        self.restarts += 1
        self._launch_or_give_up(server)

    def _stopped(self, server: Server, reason: str) -> None:
        if self.stopping:
            server.state = ServerState.STOPPED
            return
        log.info("%s stopped (%s): not restarted; its work goes to the other servers", server.describe(), reason)
        server.state, server.since = ServerState.STOPPED, time.monotonic()
        server.error = server.error_for(f"{server.describe()} stopped ({reason})")
        self._disconnect(server)
        server.outstanding.clear()
        self._events.append(Stopped(server, reason))

    def _no_answer(self, server: Server, limit: float) -> str:
        """Why a server did not answer the handshake, from what its transport showed, likeliest first."""
        if server.spawn:
            return f"no answer to the handshake within {limit:.0f} s (the server is starting too slowly or hangs)"
        address, host_port = server.address, server.address.split("://", 1)[-1]
        head = f"no answer from {address} within {limit:g} s (connect_timeout)"
        seen = server.seen
        if "handshake failed" in seen and self.secret is not None:
            causes = ["the server refused the ZeroMQ handshake: the shared secrets differ (this client has another "
                      "one, or the server uses none)"]
        elif "handshake failed" in seen:
            mine = "another token" if server.token is not None else "no token"
            causes = [f"the server refused the ZeroMQ handshake: it requires a token or a shared secret that this "
                      f"client lacks (it has {mine} and no secret; token= or ORRB_TOKEN, secret= or ORRB_SECRET)"
                      + (", or the server requires none" if server.token is not None else "")]
        elif "handshake ok" in seen:
            causes = ["the server took the connection but does not answer: it is busy or hung, or it is not an "
                      "orrb render server"]
        else:
            refused = " (connection refused)" if "refused" in seen and "connected" not in seen else ""
            causes = [f"nothing is listening at {address}{refused} (start one there: orrb serve --bind ... or "
                      "--port ...)", f"a firewall drops traffic to {host_port}"]
            if self.secret is not None:
                causes.append("the server uses another shared secret than this client (ORRB_SECRET / secret=)")
        return f"{head}. Likely causes: " + "; ".join(f"({i}) {c}" for i, c in enumerate(causes, 1))

    # -- receiving -----------------------------------------------------------------------------------
    def poll(self, timeout_ms: float, extra: list | None = None) -> tuple[list, set]:
        """Waits up to ``timeout_ms`` for replies (and for the file descriptors in ``extra``),
        handles handshakes, checks health.

        Returns:
            ``(events, ready_fds)``: what happened, in order, and which of ``extra`` are readable.
        """
        for fd in extra or []:
            if fd not in self._extra_registered:
                self.poller.register(fd, zmq.POLLIN)
                self._extra_registered.add(fd)
        polled = dict(self.poller.poll(timeout_ms))
        for monitor, server in list(self._by_monitor.items()):
            if monitor in polled:
                self._on_transport_events(server)
        for sock, server in list(self._by_socket.items()):
            if sock not in polled:
                continue
            while server.socket is sock:
                try:
                    frames = sock.recv_multipart(zmq.NOBLOCK, copy=False)
                except zmq.Again:
                    break
                self._on_message(server, frames)
        self.check_health()
        events, self._events = self._events, []
        return events, {fd for fd in (extra or []) if fd in polled}

    def _on_message(self, server: Server, frames: list) -> None:
        try:
            header, arrays = wire.decode(frames, max_array_bytes=MAX_REPLY_BYTES)
        except wire.ProtocolError as e:
            self._lost(server, f"sent a malformed reply ({e})")
            return
        req_id = header.get("id")
        pending = server.outstanding.pop(req_id, None) if type(req_id) is int else None
        if pending is None:
            log.info("%s: reply %s with unknown id %r ignored (a request from before a restart)", server.describe(),
                     str(header.get("type"))[:20], req_id)
            return
        server.head_since = time.monotonic()
        reply = header["type"]
        if reply == Kind.ERROR.value and wire.error_kind(header) in (ErrorKind.NO_SCENE, ErrorKind.STALE):
            self._diverged(server, str(header.get("message", ""))[:300])
            return
        if pending.kind is Kind.HELLO:
            self._on_hello(server, header)
        elif pending.kind is Kind.INIT:
            self._on_init(server, header)
        elif pending.kind is Kind.UPDATE:
            self._on_update(server, header)
        elif pending.kind is Kind.RENDER:
            if reply == Kind.RESULT.value:
                server.failures = 0
            self._events.append(RenderReply(server, pending.work, header, arrays))

    def remote_error(self, server: Server, header: dict[str, Any], what: str) -> BaseException:
        """The exception for an ``error`` reply, naming what failed and on which server."""
        kind = wire.error_kind(header)
        cls = wire.ERRORS[kind]
        text = f"{str(header.get('message', ''))[:4000]} ({what} on {server.describe()})"
        if kind is ErrorKind.UNAUTHORIZED:
            text += "; the server expects another token (RemoteRenderer(token=...) or ORRB_TOKEN)"
        if cls is RendererError:
            return server.error_for(text)
        return cls(text)

    def _on_hello(self, server: Server, header: dict[str, Any]) -> None:
        if header["type"] != Kind.HELLO.value:
            self._give_up(server, self.remote_error(server, header, "handshake"))
            return
        wanted, version = self.config.renderer_version, header.get("version")
        if wanted is not None and wanted != version:
            self._give_up(server, server.error_for(
                f"{server.describe()} runs renderer version {version!r}, but config.renderer_version asks for "
                f"{wanted!r}"))
            return
        self._stop_monitor(server)
        for field in ("pid", "max_entries", "max_message_bytes"):
            if type(header.get(field)) is int and header[field] > 0:
                server.info[field] = header[field]
        self._send_init(server)

    def _send_init(self, server: Server) -> None:
        server.state, server.since = ServerState.LOADING, time.monotonic()
        self._send(server, Kind.INIT, {"config": self.config.to_dict(), "renderer_config": self.history.base,
                                       "scene": self.scene_id})

    def _on_init(self, server: Server, header: dict[str, Any]) -> None:
        if header["type"] != Kind.READY.value:
            self._give_up(server, self.remote_error(server, header, "loading the scene"))
            return
        try:
            streams = wire.streams_from_wire(header.get("streams", {}))
        except wire.ProtocolError as e:
            self._lost(server, f"sent a malformed ready reply ({e})")
            return
        server.info.update(header)
        server.info["streams"] = streams
        self.history.streams.setdefault(0, streams)
        server.state, server.since = ServerState.READY, time.monotonic()
        self._events.append(Ready(server))

    def _on_update(self, server: Server, header: dict[str, Any]) -> None:
        stamp = header.get("stamp")
        if header["type"] != Kind.OK.value:
            self._give_up(server, self.remote_error(server, header, f"applying update {server.applied_stamp}"))
            return
        try:
            streams = wire.streams_from_wire(header.get("streams", {}))
        except wire.ProtocolError as e:
            self._lost(server, f"sent a malformed update reply ({e})")
            return
        if type(stamp) is int:
            self.history.streams.setdefault(stamp, streams)

    # -- health --------------------------------------------------------------------------------------
    def check_health(self) -> None:
        now = time.monotonic()
        for server in self.servers:
            if not server.alive or server.state is ServerState.NEW:
                continue
            if server.spawn and server.proc is not None and server.proc.poll() is not None:
                code = server.proc.returncode
                if self.stopping or code in _CLEAN_EXITS:
                    self._stopped(server, f"process {server.proc.pid} exited with code {code}")
                elif code == wire.EXIT_BIND_FAILED:
                    error = server.error_for(
                        f"{server.describe()} could not start: cannot bind port {server.port}: another program "
                        f"is using it; pass a free base port (orrb.utils.free_base_port(n) finds one)")
                    self._lost(server, "cannot bind", error=error)
                else:
                    self._lost(server, f"process {server.proc.pid} exited with code {code}")
                continue
            if server.state in (ServerState.CONNECTING, ServerState.LOADING):
                if server.by_hand or server.awaited:
                    limit = float("inf")
                elif server.spawn:
                    limit = self.start_timeout
                else:
                    limit = self.connect_timeout if server.state is ServerState.CONNECTING else self.start_timeout
                if now - server.since > limit:
                    if server.state is ServerState.CONNECTING:
                        self._lost(server, self._no_answer(server, limit))
                    else:
                        self._lost(server, f"did not load the scene within {limit:.0f} s (start_timeout)")
                continue
            if server.outstanding:
                limit = self.timeout + self.entry_timeout * next(iter(server.outstanding.values())).entries
                if now - server.head_since > limit:
                    self._lost(server, f"no answer within {limit:.1f} s (hung or overloaded)")

    # -- stopping ------------------------------------------------------------------------------------
    def close(self) -> None:
        """Tells every spawned server to stop, closes the sockets and the context (idempotent).
        Processes that were not serving are killed; the caller waits for the others."""
        self.stopping = True
        for server in self.servers:
            if server.socket is not None:
                if server.spawn and server.proc is not None and server.proc.poll() is None:
                    try:
                        header = {"id": 0} if server.token is None else {"id": 0, "token": server.token}
                        server.socket.send_multipart(wire.encode(Kind.SHUTDOWN, header), zmq.NOBLOCK)
                    except zmq.ZMQError:
                        pass
                    try:  # also between two queued requests: the stop message waits behind them
                        server.proc.terminate()
                    except OSError:
                        pass
                self._disconnect(server, linger=200)
            if server.spawn and server.proc is not None and server.proc.poll() is None \
                    and server.state is not ServerState.READY:
                server.proc.kill()  # not serving: no clean stop to wait for
        for fd in list(self._extra_registered):
            self._extra_registered.discard(fd)
        if not self.context.closed:
            self.context.term()


def safe_file_name(text: str) -> str:
    """``text`` with every character other than letters, digits, ``.``, ``_`` and ``-`` replaced."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", text)[:80] or "pool"
