"""``RemoteRenderer``: a pool of render server processes behind one batch API (SPEC §7).

One background I/O thread owns every ZeroMQ socket. A batch is checked in the
caller's thread, split into contiguous shards (one per healthy server, each with
its entries' own seeds, so sharding never changes pixels), every shard is sent
before any reply is read, and the replies are copied into the batch's output
arrays in order. Each server's replies come in the order of its requests; every
request carries an id, so replies of a replaced server can never be mistaken for
those of its successor.

Config stamps (SPEC §6): ``update()`` appends to a history; a shard carries the
number of updates that existed when its batch was queued, and a server is brought
to that stamp (updates replayed in order) just before the shard is sent, so a
batch always renders with the config current at its queue time, also after a
restart (a fresh server starts from the base config and replays the history).

Faults: a server whose process exits or that stays silent past its deadline is
killed, restarted on the same port and sent its unfinished shards again; after
``max_restarts`` consecutive failures its batches fail with a ``RendererError``
naming the server, its port and its log file.
"""

from __future__ import annotations

import atexit
import collections
import concurrent.futures
import dataclasses
import fcntl
import logging
import os
import queue as queue_module
import subprocess
import sys
import tempfile
import threading
import time
import warnings
import weakref
from typing import Any

import numpy as np
import zmq

from orrb import protocol
from orrb.config import RemoteRendererConfig, RendererConfig
from orrb.errors import ConfigError, RendererError
from orrb.request import Request, Response, check_request, put_result_on_queue

__all__ = ["RemoteRenderer"]

# Servers run side by side, several per machine: one BLAS/OpenMP thread each. A numpy product
# that reaches a multithreaded BLAS starts a thread per core in every server (measured: 8
# servers on 16 cores, 4x less throughput).
_ONE_THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")

log = logging.getLogger("orrb.client")

_ERROR_KINDS: dict[str, type[Exception]] = {
    "ValueError": ValueError, "TypeError": TypeError, "ConfigError": ConfigError,
    "FileNotFoundError": FileNotFoundError, "KeyError": KeyError, "AttributeError": AttributeError,
}
_LOOP_TICK_S = 0.1
_MAX_REPLY_BYTES = 1 << 31


def _log_tail(path: str | None, lines: int = 8) -> str:
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


@dataclasses.dataclass(eq=False)
class _Batch:
    future: concurrent.futures.Future
    request: Request
    n: int
    remaining: int = 0
    outputs: dict[str, np.ndarray] | None = None
    render_s: float = 0.0
    done: bool = False


@dataclasses.dataclass(eq=False)
class _Shard:
    batch: _Batch
    lo: int
    hi: int
    stamp: int
    qpos: np.ndarray
    seeds: np.ndarray
    req_id: int | None = None


class _Slot:
    """One server: its address, process, socket and unfinished work (I/O thread only)."""

    def __init__(self, index: int, device: int | None, port: int | None, address: str, spawn: bool, log_file: str | None):
        self.index, self.device, self.port, self.address = index, device, port, address
        self.spawn, self.log_file = spawn, log_file
        self.proc: subprocess.Popen | None = None
        self.socket: zmq.Socket | None = None
        self.state = "new"  # new -> hello -> init -> ready; or dead
        self.state_since = time.monotonic()
        self.applied_stamp = 0
        self.failures = 0
        self.spawns = 0
        self.error: BaseException | None = None
        self.shards: list[_Shard] = []  # unfinished, in queue order
        self.outstanding: collections.OrderedDict[int, tuple[str, _Shard | None]] = collections.OrderedDict()
        self.head_since = time.monotonic()
        self.info: dict[str, Any] = {}

    def describe(self) -> str:
        port = f", port {self.port}" if self.port is not None else ""
        log_file = f", log {self.log_file}" if self.log_file else ""
        return f"server {self.address}{port}{log_file}"


class RemoteRenderer:
    """Renders batches on a pool of server processes; the same methods as :class:`orrb.LocalRenderer`.

    Args:
        name: a name for logs and log files (``orrb-<name>-<port>.log`` in the temp dir).
        server_configs: one entry per server: ``[device, port]`` (a server spawned by
            ``start()`` on ``127.0.0.1:port``, rendering on GPU ``device`` when there is
            one) or ``"tcp://host:port"`` (a server started with ``orrb serve``).
        config: what to render (:class:`orrb.RemoteRendererConfig`).
        renderer_config: a component chain overriding ``config.renderer_config_path``.
        timeout: seconds a busy server may stay silent (plus ``entry_timeout`` per state
            of the request it is working on) before it is declared hung and replaced.
        entry_timeout: seconds allowed per state of a render request, added to ``timeout``.
        start_timeout: seconds a server may take to answer the handshake and load the scene.
        max_restarts: consecutive failures of one server tolerated before its batches fail.
        secret: shared secret of servers started with ``orrb serve --secret-file``
            (default: the ``ORRB_SECRET`` environment variable).

    Environment: ``ORRB_DETACHED=1`` makes ``start()`` print the server commands and
    wait for servers started by hand; ``ORRB_MINIMAL=N`` uses only the first N entries.
    Spawned servers get ``OMP_NUM_THREADS``, ``OPENBLAS_NUM_THREADS`` and ``MKL_NUM_THREADS``
    set to 1 unless already set: several run side by side, and each one's math libraries
    starting a thread per core would slow them all.

    Example::

        configs = orrb.utils.build_server_configs(1, 2, 5000)
        with orrb.RemoteRenderer('pool', configs, config) as renderer:
            result = renderer.render_batch({'qpos': qpos, 'seed': 0})
        result['vision_cam_left']        # uint8 [B, H, W, 3]
    """

    def __init__(self, name: str, server_configs, config: RemoteRendererConfig,
                 renderer_config: RendererConfig | None = None, *, timeout: float = 30.0,
                 entry_timeout: float = 1.0, start_timeout: float = 120.0, max_restarts: int = 3,
                 secret: str | bytes | None = None):
        self._thread: threading.Thread | None = None
        self._closed = False
        self._started = False
        self._slots: list[_Slot] = []
        self._lock = threading.RLock()
        self._wake_r = self._wake_w = None
        if not isinstance(name, str) or not name:
            raise TypeError(f"RemoteRenderer name must be a non-empty str, got {name!r}")
        if not isinstance(config, RemoteRendererConfig):
            raise TypeError(f"RemoteRenderer takes an orrb.RemoteRendererConfig, got {type(config).__name__}")
        if renderer_config is not None and not isinstance(renderer_config, RendererConfig):
            raise TypeError(f"renderer_config must be an orrb.RendererConfig, got {type(renderer_config).__name__}")
        for label, value in (("timeout", timeout), ("entry_timeout", entry_timeout), ("start_timeout", start_timeout)):
            if not isinstance(value, (int, float)) or value < 0:
                raise ValueError(f"{label} must be a number of seconds >= 0, got {value!r}")
        if not isinstance(max_restarts, int) or max_restarts < 0:
            raise ValueError(f"max_restarts must be an int >= 0, got {max_restarts!r}")
        self.name = name
        self.config = config.copy()
        self._entries = self._parse_server_configs(server_configs)
        self._initial_renderer_config = renderer_config.copy() if renderer_config is not None else None
        self.timeout, self.entry_timeout, self.start_timeout = float(timeout), float(entry_timeout), float(start_timeout)
        self.max_restarts = max_restarts
        self._secret = secret if secret is not None else os.environ.get("ORRB_SECRET") or None
        self._commands: collections.deque = collections.deque()
        self._updates: list[dict[str, Any]] = []
        self._renderer_config: RendererConfig | None = None
        self._base_config_json: dict[str, Any] | None = None
        self._columns: int | None = None
        self._class_names: list[str] = []
        self._started_event = threading.Event()
        self._next_id = 0
        self.stats = {"batches": 0, "server_render_s": 0.0, "restarts": 0}

    @staticmethod
    def _parse_server_configs(server_configs) -> list[tuple[int | None, int | None, str | None]]:
        if isinstance(server_configs, (str, bytes)) or not hasattr(server_configs, "__iter__"):
            raise TypeError(f"server_configs must be a list of [device, port] pairs or 'tcp://host:port' strings, "
                            f"got {server_configs!r}")
        entries = []
        for i, entry in enumerate(server_configs):
            if isinstance(entry, str):
                if not entry.startswith(("tcp://", "ipc://")) or (entry.startswith("tcp://") and ":" not in entry[6:]):
                    raise ValueError(f"server_configs[{i}] = {entry!r}: an address must look like 'tcp://host:port'")
                entries.append((None, None, entry))
                continue
            if (not isinstance(entry, (list, tuple)) or len(entry) != 2
                    or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in entry)):
                raise TypeError(f"server_configs[{i}] = {entry!r}: expected [device, port] (two ints) or 'tcp://host:port'")
            device, port = int(entry[0]), int(entry[1])
            if not 0 < port < 65536 or device < 0:
                raise ValueError(f"server_configs[{i}] = {entry!r}: port must be in [1, 65535] and device >= 0")
            entries.append((device, port, None))
        if not entries:
            raise ValueError("server_configs is empty: give at least one [device, port] or 'tcp://host:port'")
        return entries

    # -- lifecycle ---------------------------------------------------------------------------------
    def start(self) -> RemoteRenderer:
        """Starts (or connects to) every server and waits until each answers the handshake.

        Idempotent. Raises:
            RendererError: a server could not start, did not answer, or runs another
                renderer version (the message names the port, the reason and the log).
            ConfigError / FileNotFoundError / ValueError: the scene could not be loaded
                (as the server reported it).
        """
        with self._lock:
            if self._closed:
                raise RendererError("RemoteRenderer.start() after shutdown()")
            if self._started:
                return self
            self.config.validate()
            if self._initial_renderer_config is not None:
                base = self._initial_renderer_config
            elif self.config.renderer_config_path:
                base = RendererConfig.load(self.config.resolve(self.config.renderer_config_path))
            else:
                base = RendererConfig()
            self._base_config_json = base.to_dict()
            entries = list(self._entries)
            minimal = os.environ.get("ORRB_MINIMAL")
            if minimal:
                if not minimal.isdigit() or int(minimal) < 1:
                    raise ValueError(f"ORRB_MINIMAL must be a positive int (the most servers to use), got {minimal!r}")
                entries = entries[: int(minimal)]
            detached = os.environ.get("ORRB_DETACHED", "") not in ("", "0")
            spawn = self.config.spawn_servers and not detached
            for i, (device, port, address) in enumerate(entries):
                if address is None:
                    address = f"tcp://127.0.0.1:{port}"
                    log_file = os.path.join(tempfile.gettempdir(), f"orrb-{self.name}-{port}.log") if spawn else None
                    self._slots.append(_Slot(i, device, port, address, spawn, log_file))
                else:
                    port = int(address.rsplit(":", 1)[1]) if address.rsplit(":", 1)[1].isdigit() else None
                    self._slots.append(_Slot(i, None, port, address, False, None))
            if detached:
                print(f"ORRB_DETACHED: start these servers, RemoteRenderer {self.name!r} waits for them:", flush=True)
                for slot in self._slots:
                    if slot.device is not None:
                        print("  " + " ".join(self._server_command(slot, detached=True)), flush=True)
            self._wake_r, self._wake_w = os.pipe()
            fcntl.fcntl(self._wake_r, fcntl.F_SETFL, os.O_NONBLOCK)
            self._thread = threading.Thread(target=self._io_loop, name=f"orrb-{self.name}-io", daemon=True)
            self._thread.start()
            _register_atexit(self)
            self._started_event.wait()
            failed = [s for s in self._slots if s.state != "ready"]
            if failed:
                errors = [s.error for s in failed if s.error is not None]
                self._started = True
                self.shutdown()
                err = errors[0] if errors else RendererError("servers did not start")
                raise err
            first = self._slots[0].info
            self._columns = int(first["columns"])
            self._class_names = list(first.get("class_names", []))
            self._renderer_config = RendererConfig.from_json(first.get("renderer_config") or {"components": []})
            self._started = True
        return self

    def _server_command(self, slot: _Slot, detached: bool = False) -> list[str]:
        cmd = [sys.executable, "-m", "orrb.server", "--port", str(slot.port), "--device", str(slot.device)]
        from orrb.egl_device import nvidia_gpu_present

        if not nvidia_gpu_present():
            # llvmpipe in the server's own thread, no rasterizer threads: single-threaded servers
            # scale best side by side, and 0 is ~9% faster than one rasterizer thread (1) here
            cmd += ["--lp-threads", "0"]
        if not detached:
            cmd += ["--log-file", slot.log_file, "--parent-pid", str(os.getpid())]
        return cmd

    def shutdown(self) -> None:
        """Finishes in-flight batches (up to ``timeout`` s), stops every spawned server and waits
        until its process is gone. Idempotent; also runs at interpreter exit."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            thread = self._thread
        if thread is not None:
            self._command(("stop",))
            thread.join()
        procs = [s.proc for s in self._slots if s.proc is not None]
        deadline = time.monotonic() + 3.0
        for proc in procs:
            try:
                proc.wait(timeout=max(0.05, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for fd in (self._wake_r, self._wake_w):
            if fd is not None:
                os.close(fd)
        self._wake_r = self._wake_w = None

    close = shutdown

    def __enter__(self) -> RemoteRenderer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.shutdown()

    def __del__(self):
        if getattr(self, "_thread", None) is not None and not getattr(self, "_closed", True):
            warnings.warn(f"RemoteRenderer {self.name!r} was not shut down; call shutdown() or use it as a "
                          "context manager", ResourceWarning, stacklevel=2)
            try:
                self.shutdown()
            except Exception:
                pass

    # -- info --------------------------------------------------------------------------------------
    @property
    def columns(self) -> int:
        """How many qpos columns a request needs."""
        self.start()
        return self._columns

    @property
    def class_names(self) -> list[str]:
        """Segmentation class names by id (0 = background)."""
        self.start()
        return list(self._class_names)

    @property
    def server_pids(self) -> list[int | None]:
        """The process id of each spawned server (``None`` for servers not spawned here)."""
        return [s.proc.pid if s.proc is not None else None for s in self._slots]

    @property
    def log_files(self) -> list[str | None]:
        return [s.log_file for s in self._slots]

    # -- requests ------------------------------------------------------------------------------------
    def _command(self, command: tuple) -> None:
        self._commands.append(command)
        try:
            os.write(self._wake_w, b"x")
        except (OSError, TypeError):
            pass

    def _submit(self, batch: Request) -> concurrent.futures.Future:
        self.start()
        qpos, seeds = check_request(batch, self._columns)
        qpos = np.array(qpos, dtype=np.float64, order="C", copy=True)  # the caller may reuse its array
        future: concurrent.futures.Future = concurrent.futures.Future()
        future.set_running_or_notify_cancel()
        with self._lock:
            if self._closed:
                raise RendererError(f"RemoteRenderer {self.name!r}: render after shutdown()")
            self._command(("render", _Batch(future, batch, qpos.shape[0]), qpos, seeds, len(self._updates)))
        return future

    def render_batch(self, batch: Request) -> Response:
        """Renders a batch over all healthy servers and returns the response (SPEC §4).

        Args:
            batch: ``{'qpos': [B, K], 'seed': int}`` or ``{'qpos': ..., 'seeds': [B]}``;
                other keys are passed through.

        Returns:
            the request's keys plus, per camera ``c``: ``c`` uint8 ``[B, H, W, 3]``
            (4 channels with ``render_alpha``), ``c_depth`` float32 ``[B, H, W]`` (m),
            ``c_normals`` float32 ``[B, H, W, 3]`` in [0, 1], ``c_segmentation`` uint8
            ``[B, H, W]``, and the components' auxiliary streams ``[B, k]``; bit-identical
            to :class:`orrb.LocalRenderer` whatever the number of servers.

        Raises:
            ValueError / TypeError: a bad request (in the caller's thread).
            RendererError: a server failed repeatedly, or the request failed on the server.
        """
        return self._submit(batch).result()

    def render_batch_async(self, batch: Request, queue: queue_module.Queue | None = None) -> concurrent.futures.Future:
        """Queues a batch; returns a ``concurrent.futures.Future`` of the response at once.

        When ``queue`` is given the response dict (or, on failure, the exception object)
        is put on it, so a consumer never waits forever. A bad request raises here, in
        the caller's thread. Many batches may be in flight.
        """
        future = self._submit(batch)
        if queue is not None:
            put_result_on_queue(future, queue)
        return future

    def update(self, renderer_config: RendererConfig) -> None:
        """Merges ``renderer_config`` into the chain for every batch queued after this call (SPEC §6).

        Batches already queued render with the config of their queue time. The
        update is validated here, in the caller's thread.
        """
        if not isinstance(renderer_config, RendererConfig):
            raise TypeError(f"update() takes an orrb.RendererConfig, got {type(renderer_config).__name__}")
        self.start()
        with self._lock:
            merged = self._renderer_config.merged(renderer_config)
            self._updates.append(renderer_config.to_dict())
            self._renderer_config = merged
            self._command(("update", len(self._updates)))

    def mutable_renderer_config(self) -> RendererConfig:
        """A copy of the current component chain (with all updates so far), to edit and pass to ``update()``."""
        self.start()
        with self._lock:
            return self._renderer_config.copy()

    # -- the I/O thread ------------------------------------------------------------------------------
    def _new_id(self) -> int:
        self._next_id += 1
        return self._next_id

    def _send(self, slot: _Slot, kind: str, fields: dict[str, Any] | None = None,
              arrays: dict[str, np.ndarray] | None = None, shard: _Shard | None = None) -> int:
        req_id = self._new_id()
        if not slot.outstanding:
            slot.head_since = time.monotonic()
        slot.outstanding[req_id] = (kind, shard)
        slot.socket.send_multipart(protocol.encode(kind, {"id": req_id, **(fields or {})}, arrays), copy=False)
        return req_id

    def _connect(self, slot: _Slot) -> None:
        if slot.socket is not None:
            slot.socket.close(linger=0)
        sock = self._context.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.MAXMSGSIZE, _MAX_REPLY_BYTES)
        sock.setsockopt(zmq.SNDHWM, 0)
        sock.setsockopt(zmq.RCVHWM, 0)
        if self._secret is not None:
            from orrb.server import curve_keys

            keys = curve_keys(self._secret)
            sock.curve_serverkey = keys["server"][0]
            sock.curve_publickey, sock.curve_secretkey = keys["client"]
        sock.connect(slot.address)
        slot.socket = sock
        self._poller.register(sock, zmq.POLLIN)
        self._socket_slot[sock] = slot

    def _launch(self, slot: _Slot) -> None:
        """(Re)starts a slot: spawns its process if it is ours, connects, sends hello."""
        if slot.socket is not None:
            self._poller.unregister(slot.socket)
            self._socket_slot.pop(slot.socket, None)
        if slot.spawn:
            if slot.proc is not None and slot.proc.poll() is None:
                slot.proc.kill()
                slot.proc.wait()
            env = dict(os.environ, MUJOCO_GL=os.environ.get("MUJOCO_GL", "egl"))
            for var in _ONE_THREAD_VARS:  # unless the user set them
                env.setdefault(var, "1")
            mode = "a" if slot.spawns else "w"
            with open(slot.log_file, mode) as log_handle:
                slot.proc = subprocess.Popen(self._server_command(slot), env=env, stdin=subprocess.DEVNULL,
                                             stdout=log_handle, stderr=subprocess.STDOUT)
            slot.spawns += 1
        self._connect(slot)
        slot.outstanding.clear()
        for shard in slot.shards:
            shard.req_id = None
        slot.applied_stamp = 0
        slot.state, slot.state_since = "hello", time.monotonic()
        self._send(slot, "hello")

    def _sync(self, slot: _Slot, stamp: int) -> None:
        while slot.applied_stamp < stamp:
            k = slot.applied_stamp + 1
            self._send(slot, "update", {"stamp": k, "renderer_config": self._updates[k - 1]})
            slot.applied_stamp = k

    def _dispatch(self, slot: _Slot) -> None:
        """Sends a ready slot every shard not sent yet (after bringing it to the shard's stamp)."""
        if slot.state != "ready":
            return
        for shard in slot.shards:
            if shard.req_id is None and not shard.batch.done:
                if slot.applied_stamp > shard.stamp:  # cannot happen: stamps only grow per server
                    self._fail_batch(shard.batch, RendererError(
                        f"{slot.describe()}: internal error: server config is newer than the batch's"))
                    continue
                self._sync(slot, shard.stamp)
                shard.req_id = self._send(slot, "render", {"stamp": shard.stamp},
                                          {"qpos": shard.qpos, "seeds": shard.seeds}, shard)
        slot.shards = [s for s in slot.shards if not s.batch.done or s.req_id is not None]

    def _fail_batch(self, batch: _Batch, error: BaseException) -> None:
        if batch.done:
            return
        batch.done = True
        batch.outputs = None
        batch.future.set_exception(error)

    def _new_batch(self, batch: _Batch, qpos: np.ndarray, seeds: np.ndarray, stamp: int) -> None:
        live = [s for s in self._slots if s.state != "dead"]
        if not live:
            self._fail_batch(batch, RendererError(
                f"RemoteRenderer {self.name!r}: no server left; failed: " + "; ".join(
                    f"{s.describe()}: {s.error}" for s in self._slots)))
            return
        n = batch.n
        if n == 0:
            batch.done = True
            batch.future.set_result(dict(batch.request))
            return
        parts = min(len(live), n)
        bounds = [(i * n) // parts for i in range(parts + 1)]
        batch.remaining = parts
        for slot, lo, hi in zip(live, bounds[:-1], bounds[1:]):
            slot.shards.append(_Shard(batch, lo, hi, stamp, qpos[lo:hi], seeds[lo:hi]))
        for slot in live[:parts]:
            self._dispatch(slot)

    def _on_result(self, slot: _Slot, shard: _Shard, header: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        slot.shards.remove(shard)
        batch = shard.batch
        if batch.done:
            return
        m = shard.hi - shard.lo
        cfg = self.config
        h, w = cfg.image_height, cfg.image_width
        try:
            for key, array in arrays.items():
                if array.ndim < 1 or array.shape[0] != m:
                    raise RendererError(f"{slot.describe()}: reply array {key!r} has shape {array.shape}, "
                                        f"expected {m} entries")
                if key in cfg.camera_names or key.rsplit("_", 1)[0] in cfg.camera_names:
                    if array.shape[1:3] != (h, w):
                        raise RendererError(f"{slot.describe()}: reply image {key!r} has shape {array.shape}, "
                                            f"expected [{m}, {h}, {w}, ...]")
                if batch.outputs is None:
                    batch.outputs = {}
                out = batch.outputs.get(key)
                if out is None:
                    out = batch.outputs[key] = np.empty((batch.n,) + array.shape[1:], array.dtype)
                elif out.shape[1:] != array.shape[1:] or out.dtype != array.dtype:
                    raise RendererError(f"{slot.describe()}: reply array {key!r} is {array.dtype}{array.shape}, "
                                        f"other shards gave {out.dtype}{out.shape}")
                out[shard.lo:shard.hi] = array
        except RendererError as e:
            self._fail_batch(batch, e)
            return
        render_s = header.get("render_s")
        if isinstance(render_s, (int, float)):
            batch.render_s += float(render_s)
        batch.remaining -= 1
        if batch.remaining == 0:
            batch.done = True
            response = dict(batch.request)
            response.update(batch.outputs or {})
            batch.outputs = None
            self.stats["batches"] += 1
            self.stats["server_render_s"] += batch.render_s
            batch.future.set_result(response)

    def _remote_error(self, slot: _Slot, header: dict[str, Any], what: str) -> BaseException:
        kind = header.get("error_type")
        message = str(header.get("message", ""))[:4000]
        cls = _ERROR_KINDS.get(kind, RendererError)
        text = f"{message} ({what} on {slot.describe()})"
        if cls is RendererError:
            return RendererError(f"{kind}: {text}" if kind and kind != "RendererError" else text,
                                 server=slot.address, log_file=slot.log_file)
        return cls(text)

    def _on_message(self, slot: _Slot, frames: list) -> None:
        try:
            header, arrays = protocol.decode(frames, max_array_bytes=_MAX_REPLY_BYTES)
        except protocol.ProtocolError as e:
            self._slot_failed(slot, f"sent a malformed reply ({e})")
            return
        req_id = header.get("id")
        entry = slot.outstanding.pop(req_id, None) if type(req_id) is int else None
        if entry is None:
            log.warning("%s: reply %s with unknown id %r ignored", slot.describe(), header.get("type"), req_id)
            return
        slot.head_since = time.monotonic()
        kind, shard = entry
        reply = header["type"]
        if kind == "hello":
            if reply != "hello":
                self._slot_fatal(slot, self._remote_error(slot, header, "handshake"))
                return
            wanted, version = self.config.renderer_version, header.get("version")
            if wanted is not None and wanted != version:
                self._slot_fatal(slot, RendererError(
                    f"{slot.describe()} runs renderer version {version!r}, but config.renderer_version asks for "
                    f"{wanted!r}", server=slot.address, log_file=slot.log_file))
                return
            slot.info["pid"] = header.get("pid")
            slot.state, slot.state_since = "init", time.monotonic()
            self._send(slot, "init", {"config": self.config.to_dict(), "renderer_config": self._base_config_json})
        elif kind == "init":
            if reply != "ready":
                self._slot_fatal(slot, self._remote_error(slot, header, "loading the scene"))
                return
            slot.info.update(header)
            slot.state = "ready"
            self._check_started()
            self._dispatch(slot)
        elif kind == "update":
            if reply != "ok":
                self._slot_failed(slot, f"could not apply update {header.get('stamp')}: {header.get('message')}")
        elif kind == "render":
            if reply == "result":
                slot.failures = 0
                self._on_result(slot, shard, header, arrays)
            else:
                if shard in slot.shards:
                    slot.shards.remove(shard)
                self._fail_batch(shard.batch, self._remote_error(slot, header, "rendering"))

    def _check_started(self) -> None:
        if not self._started_event.is_set() and all(s.state in ("ready", "dead") for s in self._slots):
            self._started_event.set()

    def _slot_fatal(self, slot: _Slot, error: BaseException) -> None:
        """A failure that a restart cannot fix (wrong version, scene that does not load)."""
        slot.state, slot.error = "dead", error
        log.error("%s", error)
        self._kill(slot)
        for shard in slot.shards:
            self._fail_batch(shard.batch, error)
        slot.shards = []
        slot.outstanding.clear()
        if not self._started_event.is_set():
            # at start one failure fails start(): stop waiting for the others
            self._started_event.set()
        self._check_started()

    def _kill(self, slot: _Slot) -> None:
        if slot.proc is not None and slot.proc.poll() is None:
            try:
                slot.proc.kill()
            except OSError:
                pass
            slot.proc.wait()

    def _slot_failed(self, slot: _Slot, reason: str) -> None:
        """A server died or hung: restart it and resend its work, or give up after repeated failures."""
        slot.failures += 1
        starting = not self._started_event.is_set()
        if starting or slot.failures > self.max_restarts:
            times = f" ({slot.failures} consecutive failures)" if not starting else ""
            what = "failed to start" if starting else "failed"
            self._slot_fatal(slot, RendererError(
                f"{slot.describe()} {what}: {reason}{times}{_log_tail(slot.log_file)}",
                server=slot.address, log_file=slot.log_file))
            return
        log.warning("%s: %s; restarting it (failure %d of %d allowed)", slot.describe(), reason,
                    slot.failures, self.max_restarts)
        self.stats["restarts"] += 1
        self._kill(slot)
        self._launch(slot)

    def _check_health(self) -> None:
        now = time.monotonic()
        for slot in self._slots:
            if slot.state == "dead":
                continue
            if slot.spawn and slot.proc is not None and slot.proc.poll() is not None:
                self._slot_failed(slot, f"process {slot.proc.pid} exited with code {slot.proc.returncode}")
                continue
            if slot.state in ("hello", "init"):
                limit = self.start_timeout
                if not slot.spawn and os.environ.get("ORRB_DETACHED", "") not in ("", "0"):
                    limit = float("inf")
                if now - slot.state_since > limit:
                    secret_hint = ("" if self._secret else
                                   "; a server started with a shared secret refuses clients without it")
                    self._slot_failed(slot, f"no answer to the handshake within {limit:.0f} s{secret_hint}")
                continue
            if slot.outstanding:
                _, head = next(iter(slot.outstanding.values()))
                entries = (head.hi - head.lo) if head is not None else 0
                limit = self.timeout + self.entry_timeout * entries
                if now - slot.head_since > limit:
                    self._slot_failed(slot, f"no answer within {limit:.1f} s (hung or overloaded)")

    def _io_loop(self) -> None:
        self._context = zmq.Context()
        self._poller = zmq.Poller()
        self._socket_slot: dict[zmq.Socket, _Slot] = {}
        self._poller.register(self._wake_r, zmq.POLLIN)
        stopping = False
        stop_deadline = None
        try:
            for slot in self._slots:
                try:
                    self._launch(slot)
                except Exception as e:
                    self._slot_fatal(slot, RendererError(f"{slot.describe()} could not be launched: {e}",
                                                         server=slot.address, log_file=slot.log_file))
            while True:
                while self._commands:
                    command = self._commands.popleft()
                    if command[0] == "render":
                        self._new_batch(*command[1:])
                    elif command[0] == "update":
                        for slot in self._slots:
                            if slot.state == "ready":
                                self._sync(slot, command[1])
                    elif command[0] == "stop":
                        stopping = True
                        stop_deadline = time.monotonic() + max(self.timeout, 1.0)
                        self._started_event.set()
                if stopping and (not any(s.shards for s in self._slots) or time.monotonic() > stop_deadline):
                    break
                events = dict(self._poller.poll(_LOOP_TICK_S * 1000))
                if self._wake_r in events:
                    try:
                        while os.read(self._wake_r, 4096):
                            pass
                    except BlockingIOError:
                        pass
                for sock, slot in list(self._socket_slot.items()):
                    if sock not in events:
                        continue
                    while slot.socket is sock:
                        try:
                            frames = sock.recv_multipart(zmq.NOBLOCK, copy=False)
                        except zmq.Again:
                            break
                        self._on_message(slot, frames)
                self._check_health()
                self._check_started()
        except BaseException as e:  # never leave a caller waiting forever
            log.exception("RemoteRenderer %r: I/O thread failed", self.name)
            error = RendererError(f"RemoteRenderer {self.name!r}: I/O thread failed: {e!r}")
            for slot in self._slots:
                slot.error = slot.error or error
        finally:
            closing = RendererError(f"RemoteRenderer {self.name!r} was shut down before the batch completed")
            while self._commands:
                command = self._commands.popleft()
                if command[0] == "render":
                    self._fail_batch(command[1], closing)
            for slot in self._slots:
                for shard in slot.shards:
                    self._fail_batch(shard.batch, slot.error or closing)
                slot.shards = []
                if slot.socket is not None:
                    if slot.spawn and slot.proc is not None and slot.proc.poll() is None:
                        try:
                            slot.socket.send_multipart(protocol.encode("shutdown", {"id": 0}), zmq.NOBLOCK)
                        except zmq.ZMQError:
                            pass
                    slot.socket.close(linger=200)
                    slot.socket = None
            for slot in self._slots:
                if slot.spawn and slot.proc is not None and slot.proc.poll() is None and slot.state != "ready":
                    slot.proc.kill()  # not serving: no clean shutdown to wait for
            self._context.term()
            self._started_event.set()


_live_renderers: weakref.WeakSet = weakref.WeakSet()


def _register_atexit(renderer: RemoteRenderer) -> None:
    if not _live_renderers and not getattr(_register_atexit, "done", False):
        atexit.register(_shutdown_all)
        _register_atexit.done = True
    _live_renderers.add(renderer)


def _shutdown_all() -> None:
    for renderer in list(_live_renderers):
        try:
            renderer.shutdown()
        except Exception:
            pass

