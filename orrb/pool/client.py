"""``RemoteRenderer``: a pool of render server processes behind one batch API.

A batch goes through named steps. The caller's thread checks it
(:func:`orrb.request.check_request`) and queues a :class:`RenderCommand`; the pool's
I/O thread splits it into contiguous shards (one per live server, each with its
entries' own seeds, so sharding never changes pixels), sends every shard before it
reads any reply (:meth:`Supervisor.render`), checks each reply against the response
layout and copies it into the batch's output arrays. Each server's replies come in
the order of its requests and every request carries an id, so the replies of a
replaced server are never mistaken for its successor's.

Config stamps: ``update()`` appends to a history; a batch carries the number of updates
that existed when it was queued, and a server is brought to that stamp (updates
replayed in order) before its shard is sent, so a batch renders with the config
current at its queue time, also after a restart.

Faults are the :class:`~orrb.pool.supervisor.Supervisor`'s: it restarts a server that
died or hung and re-initializes one that lost its scene, and reports :class:`Lost` (the
server's shards are sent again once it is :class:`Ready`), :class:`Stopped` (a server
that exited cleanly: its shards go to the others) or :class:`Failed` (its batches fail
with a ``RendererError`` naming the server, its port and its log file).
"""

from __future__ import annotations

import atexit
import bisect
import collections
import concurrent.futures
import dataclasses
import fcntl
import itertools
import logging
import os
import re
import subprocess
import sys
import threading
import time
import warnings
import weakref

import numpy as np

from orrb.config import RemoteRendererConfig, RendererConfig
from orrb.errors import RendererError
from orrb.pool import supervisor as sup
from orrb.pool import wire
from orrb.pool.supervisor import Failed, History, Lost, Ready, RenderReply, Server, ServerState, Stopped, Supervisor
from orrb.renderer import RendererBase, RendererInfo, ResponseLayout
from orrb.request import Request

__all__ = ["RemoteRenderer"]

log = logging.getLogger("orrb.pool")

_LOOP_TICK_S = 0.1
_STOP_WAIT_S = 1.5  # how long shutdown() waits for a spawned server to exit before it kills it
_REQUEST_MARGIN_BYTES = 4096  # kept below a server's largest inbound frame when sizing a request's qpos


# -- the work ----------------------------------------------------------------------------------------
@dataclasses.dataclass(eq=False)
class _Batch:
    seq: int
    future: concurrent.futures.Future  # of {key: array} for every output of the layout
    n: int
    stamp: int
    remaining: int = 0
    outputs: dict[str, np.ndarray] | None = None
    render_s: float = 0.0
    done: bool = False


@dataclasses.dataclass(eq=False)
class _Shard:
    batch: _Batch
    lo: int
    hi: int
    qpos: np.ndarray
    seeds: np.ndarray
    req_id: int | None = None  # None: not sent to its current server yet

    def key(self) -> tuple[int, int]:
        return (self.batch.seq, self.lo)


_TCP_ADDRESS = re.compile(r"tcp://(\[[^\]]+\]|[^:/\s\[\]]+):(\d{1,5})")


def _is_tcp_address(address: object) -> bool:
    """Whether ``address`` is ``tcp://host:port`` with a port in [1, 65535]."""
    match = _TCP_ADDRESS.fullmatch(address) if isinstance(address, str) else None
    return match is not None and 1 <= int(match.group(2)) <= 65535


# -- commands from the caller's thread to the I/O thread --------------------------------------------------
@dataclasses.dataclass(frozen=True)
class RenderCommand:
    """Render ``qpos`` (float64 ``[B, K]``, a private copy) with ``seeds`` (uint64 ``[B]``)."""
    batch: _Batch
    qpos: np.ndarray
    seeds: np.ndarray


@dataclasses.dataclass(frozen=True)
class UpdateCommand:
    """Bring the ready servers to config stamp ``stamp`` (the update is in the history)."""
    stamp: int


@dataclasses.dataclass(frozen=True)
class ServerGoneCommand:
    """Server ``index`` is gone (``for_good``: it will not come back), as whoever started it says."""
    index: int
    reason: str
    for_good: bool


@dataclasses.dataclass(frozen=True)
class ServerMovedCommand:
    """Server ``index`` is (back) at ``address``."""
    index: int
    address: str


@dataclasses.dataclass(frozen=True)
class StopCommand:
    """Stop: after the batches in flight when ``drain`` (up to the pool's timeout), else at once."""
    drain: bool


def compile_model(config: RemoteRendererConfig, chain: RendererConfig):
    """The scene's ``mujoco.MjModel`` with the chain's structural edits, compiled without GL.

    The same model the servers compile (names, sizes, ``nq``, materials and lights);
    its offscreen framebuffer size is the model's own.

    Raises:
        FileNotFoundError / ConfigError: the model or a component's edit fails.
    """
    from orrb.components.base import registry
    from orrb.scene import compile_spec, load_spec

    xml_path = config.resolve(config.model_xml_path)
    spec = load_spec(xml_path)
    known = registry()
    for component in chain.components:
        known[component.type](component.name, component.path, dict(component.properties)).edit_spec(spec)
    model = compile_spec(spec, xml_path)
    settings = config.render_settings
    if settings.msaa_samples is not None:
        model.vis.quality.offsamples = settings.msaa_samples
    if settings.shadow_size is not None:
        model.vis.quality.shadowsize = settings.shadow_size
    return model


class RemoteRenderer(RendererBase):
    """Renders batches on a pool of server processes; the same methods as :class:`orrb.LocalRenderer`.

    Args:
        name: a name for logs and log files (``orrb-<name>-<port>.log`` in the per-user log
            folder, :func:`orrb.pool.supervisor.log_dir`, which keeps the newest 64).
        server_configs: one entry per server: ``[device, port]`` (a server spawned by
            ``start()`` on ``127.0.0.1:port``, rendering on GPU ``device`` when there is
            one) or ``"tcp://host:port"`` (a server started with ``orrb serve``).
        config: what to render (:class:`orrb.RemoteRendererConfig`).
        renderer_config: a component chain overriding ``config.renderer_config_path``.
        timeout: seconds a busy server may stay silent (plus ``entry_timeout`` per state
            of the request it is working on) before it is declared hung and replaced.
        entry_timeout: seconds allowed per state of a render request, added to ``timeout``.
        start_timeout: seconds a spawned server may take to answer and load the scene.
        connect_timeout: seconds a server given by address may take to answer the handshake;
            past it ``start()`` fails naming the address and the likely causes.
        max_restarts: consecutive failures of one server tolerated before its batches fail.
        secret: CURVE shared secret of the pool's connections (default: the ``ORRB_SECRET``
            environment variable): servers started by hand need the same one (``orrb serve
            --secret-file``); spawned servers are given it through their environment.
        token: token of servers started with ``orrb serve --token-file`` (default: the
            ``ORRB_TOKEN`` environment variable). Spawned servers always get a fresh random
            token of their own (through their environment) and refuse every other process.

    Environment: ``ORRB_DETACHED=1`` makes ``start()`` print the server commands and
    wait for servers started by hand; ``ORRB_MINIMAL=N`` uses only the first N entries.
    Spawned servers get ``OMP_NUM_THREADS``, ``OPENBLAS_NUM_THREADS`` and ``MKL_NUM_THREADS``
    set to 1 unless already set: several run side by side, and each one's math libraries
    starting a thread per core would slow them all.

    Example::

        configs = orrb.utils.build_server_configs(1, 2, orrb.utils.free_base_port(2))
        with orrb.RemoteRenderer('pool', configs, config) as renderer:
            result = renderer.render_batch({'qpos': qpos, 'seed': 0})
        result['vision_cam_left']        # uint8 [B, H, W, 3]
    """

    def __init__(self, name: str, server_configs, config: RemoteRendererConfig,
                 renderer_config: RendererConfig | None = None, *, timeout: float = 30.0,
                 entry_timeout: float = 1.0, start_timeout: float = 120.0, connect_timeout: float = 20.0,
                 max_restarts: int = 3, secret: str | bytes | None = None, token: str | None = None):
        self._thread: threading.Thread | None = None
        self._servers: list[Server] = []
        self._supervisor: Supervisor | None = None
        self._wake_r = self._wake_w = None
        if not isinstance(name, str) or not name:
            raise TypeError(f"RemoteRenderer name must be a non-empty str, got {name!r}")
        super().__init__(config, renderer_config)
        for label, value in (("timeout", timeout), ("entry_timeout", entry_timeout), ("start_timeout", start_timeout),
                             ("connect_timeout", connect_timeout)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise ValueError(f"{label} must be a number of seconds >= 0, got {value!r}")
        if isinstance(max_restarts, bool) or not isinstance(max_restarts, int) or max_restarts < 0:
            raise ValueError(f"max_restarts must be an int >= 0, got {max_restarts!r}")
        if token is not None and (not isinstance(token, str) or not token):
            raise TypeError(f"token must be a non-empty str, got {token!r}")
        self.name = name
        self._entries = self._parse_server_configs(server_configs)
        self.timeout, self.entry_timeout = float(timeout), float(entry_timeout)
        self.start_timeout, self.connect_timeout = float(start_timeout), float(connect_timeout)
        self.max_restarts = max_restarts
        self._secret = secret if secret is not None else os.environ.get(wire.SECRET_ENV) or None
        self._token = token if token is not None else os.environ.get(wire.TOKEN_ENV) or None
        self._lock = threading.Lock()  # orders stamps and commands between caller threads
        self._io_stopped = False  # the I/O thread has ended: nothing reads commands any more
        self._reap_on_exit = False  # shut down from the I/O thread itself: it reaps the servers as it ends
        self._commands: collections.deque = collections.deque()
        self._history: History | None = None
        self._renderer_config: RendererConfig | None = None
        self._model = None
        self._model_stamp = -1
        self._drain = True
        self._started_event = threading.Event()
        self._streams_changed = threading.Condition()  # the servers reported a stamp's streams
        self._seq = itertools.count()
        self._work: dict[int, list[_Shard]] = {}
        self._entries_per_request = 1
        self.stats.update({"server_render_s": 0.0})

    @staticmethod
    def _parse_server_configs(server_configs) -> list[tuple[int | None, int | None, str | None]]:
        if isinstance(server_configs, (str, bytes)) or not hasattr(server_configs, "__iter__"):
            raise TypeError(f"server_configs must be a list of [device, port] pairs or 'tcp://host:port' strings, "
                            f"got {server_configs!r}")
        entries = []
        for i, entry in enumerate(server_configs):
            if isinstance(entry, str):
                if not entry.startswith(("tcp://", "ipc://")) or (entry.startswith("tcp://") and not _is_tcp_address(entry)):
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
        """Starts (or connects to) every server and waits until each has loaded the scene.

        Idempotent. Raises:
            RendererError: a server could not start (its port is taken, it exited), did not
                answer (the message names the address and the likely causes), or runs
                another renderer version; the message names the port and the log file.
            ConfigError / FileNotFoundError / ValueError: the scene could not be loaded
                (as the server reported it).
        """
        return super().start()

    def _start(self) -> RendererInfo:
        if self._supervisor is not None:
            raise RendererError(f"RemoteRenderer {self.name!r}: start() failed before (see that error); "
                                "make a new RemoteRenderer")
        if self._initial_renderer_config is not None:
            base = self._initial_renderer_config
        elif self.config.renderer_config_path:
            base = RendererConfig.load(self.config.resolve(self.config.renderer_config_path))
        else:
            base = RendererConfig()
        self._renderer_config = base.copy()
        self._history = History(base.to_dict())
        entries = list(self._entries)
        minimal = os.environ.get("ORRB_MINIMAL")
        if minimal:
            if not minimal.isdigit() or int(minimal) < 1:
                raise ValueError(f"ORRB_MINIMAL must be a positive int (the most servers to use), got {minimal!r}")
            entries = entries[: int(minimal)]
        detached = os.environ.get("ORRB_DETACHED", "") not in ("", "0")
        ours = self.config.spawn_servers  # [device, port] entries are this pool's own servers
        own_token = wire.new_token() if ours else None
        logs = sup.log_dir() if ours and not detached else None
        token_file = self._write_token_file(own_token) if ours and detached else None
        for i, (device, port, address) in enumerate(entries):
            if address is None:
                log_file = os.path.join(logs, f"orrb-{sup.safe_file_name(self.name)}-{port}.log") if logs else None
                self._servers.append(Server(
                    i, f"tcp://127.0.0.1:{port}", device=device, port=port, spawn=ours and not detached,
                    log_file=log_file, token=own_token if ours else self._token, by_hand=ours and detached))
            else:
                tail = address.rsplit(":", 1)[1]
                self._servers.append(Server(i, address, device=None, port=int(tail) if tail.isdigit() else None,
                                            spawn=False, log_file=None, token=self._token))
        self._work = {s.index: [] for s in self._servers}
        self._supervisor = Supervisor(
            self.name, self._servers, self.config, self._history, scene_id=wire.new_token()[:16],
            secret=self._secret, timeout=self.timeout, entry_timeout=self.entry_timeout,
            start_timeout=self.start_timeout, connect_timeout=self.connect_timeout,
            max_restarts=self.max_restarts, token_file=token_file)
        if detached:
            print(f"ORRB_DETACHED: start these servers, RemoteRenderer {self.name!r} waits for them:", flush=True)
            for server in self._servers:
                if server.by_hand:
                    print("  " + " ".join(self._supervisor.server_command(server)), flush=True)
        self._wake_r, self._wake_w = os.pipe()
        fcntl.fcntl(self._wake_r, fcntl.F_SETFL, os.O_NONBLOCK)
        self._thread = threading.Thread(target=self._io_loop, name=f"orrb-{self.name}-io", daemon=True)
        self._thread.start()
        _live_renderers.add(self)
        self._started_event.wait()
        failed = [s for s in self._servers if s.state is not ServerState.READY]
        if failed:
            self._stop(drain=False)
            raise next((s.error for s in failed if s.error is not None), RendererError("servers did not start"))
        largest = max(int(np.prod(o.shape)) * o.dtype.itemsize for o in ResponseLayout.from_config(self.config))
        self._entries_per_request = max(1, sup.MAX_REPLY_BYTES // 2 // largest)  # a reply array stays in bounds
        first = self._servers[0].info
        return RendererInfo(int(first["columns"]), tuple(first.get("class_names", [])), None,
                            dict(self._history.streams.get(0, {})), self._renderer_config.copy())

    @staticmethod
    def _write_token_file(token: str) -> str:
        """Writes the pool's token where servers started by hand read it (mode 600)."""
        path = os.path.join(sup.private_dir(), f"token-{os.getpid()}-{wire.new_token()[:8]}")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(token + "\n")
        return path

    def shutdown(self) -> None:
        """Finishes the batches in flight (up to ``timeout`` s; none when called while an
        exception such as ``KeyboardInterrupt`` propagates), stops every spawned server and
        waits until its process is gone (killing it after 1.5 s). Idempotent; also runs at
        interpreter exit."""
        self._drain = self._drain and sys.exc_info()[0] is None
        super().shutdown()

    def __exit__(self, exc_type, *exc) -> None:
        self._drain = exc_type is None
        self.shutdown()

    def _shutdown_now(self) -> None:
        """Shuts down without finishing the batches in flight (their callers get an error)."""
        self._drain = False
        self.shutdown()

    def _shutdown(self) -> None:
        self._stop(self._drain)

    def _stop(self, drain: bool) -> None:
        thread, self._thread = self._thread, None
        if thread is not None:
            self._command(StopCommand(drain))
            if thread is threading.current_thread():
                # shut down from a done callback, which runs on the I/O thread: it cannot wait for
                # itself, so it stops once the callback returns and then reaps the servers
                self._reap_on_exit = True
                return
            thread.join()
        self._reap()

    def _reap(self) -> None:
        """Waits for the spawned servers to exit (killing those that do not), removes the token
        file and closes the wake pipe: the last step of a shutdown, once the I/O thread has ended."""
        procs = [s.proc for s in self._servers if s.proc is not None]
        deadline = time.monotonic() + _STOP_WAIT_S
        for proc in procs:
            try:
                proc.wait(timeout=max(0.05, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        token_file = self._supervisor.token_file if self._supervisor is not None else None
        if token_file:
            try:
                os.unlink(token_file)
            except OSError:
                pass
        fds, self._wake_r, self._wake_w = (self._wake_r, self._wake_w), None, None
        for fd in fds:
            if fd is not None:
                os.close(fd)

    def __del__(self):
        if getattr(self, "_thread", None) is not None and not getattr(self, "_closed", True):
            warnings.warn(f"RemoteRenderer {self.name!r} was not shut down; call shutdown() or use it as a "
                          "context manager", ResourceWarning, stacklevel=2)
            try:
                self._shutdown_now()
            except Exception:
                pass

    # -- servers managed by someone else -------------------------------------------------------------
    def server_gone(self, index: int, reason: str, *, for_good: bool = False) -> None:
        """Says that server ``index`` (a ``"tcp://host:port"`` entry) is gone, e.g. its host or
        container died, so the pool need not wait for its timeout: its requests in flight are
        rendered again by the other servers; as the last server, its work waits for
        :meth:`server_moved` (or fails, with ``for_good``). Thread-safe.

        Raises:
            IndexError: no server ``index``. ValueError: a server this pool spawned (it
            restarts those itself).
        """
        self._check_index(index, "server_gone")
        self._command(ServerGoneCommand(index, str(reason), bool(for_good)))

    def server_moved(self, index: int, address: str) -> None:
        """Says that server ``index`` now listens at ``address`` (``"tcp://host:port"``), e.g.
        restarted on another host: the pool connects there, loads the scene and gives it work
        again (also after :meth:`server_gone`). Thread-safe.

        Raises:
            IndexError: no server ``index``. ValueError: not a ``tcp://host:port`` address,
            or a server this pool spawned.
        """
        self._check_index(index, "server_moved")
        if not _is_tcp_address(address):
            raise ValueError(f"server_moved: address must look like 'tcp://host:port' (port 1-65535), got {address!r}")
        self._command(ServerMovedCommand(index, address))

    def _check_index(self, index: int, hook: str) -> None:
        self._started_info()
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < len(self._servers):
            raise IndexError(f"RemoteRenderer {self.name!r}: server index must be in [0, {len(self._servers)}), "
                             f"got {index!r}")
        if self._servers[index].spawn:
            raise ValueError(f"RemoteRenderer {self.name!r}: {hook}({index}): {self._servers[index].describe()} was "
                             "spawned by this pool, which restarts it itself; the hook is for 'tcp://host:port' "
                             "entries")

    # -- info --------------------------------------------------------------------------------------
    @property
    def model(self):
        """The scene's compiled ``mujoco.MjModel`` with the chain's structural edits (read it; do
        not edit it), compiled in this process without GL, as the servers compile it; an
        ``update()`` that changes the chain replaces it."""
        self._started_info()
        with self._lock:
            stamp = self._history.stamp
            if self._model_stamp != stamp:
                self._model = compile_model(self.config, self._renderer_config)
                self._model_stamp = stamp
            return self._model

    @property
    def layout(self) -> ResponseLayout:
        """Every output key of the batches queued now: the config's images plus the streams the
        servers report for the current chain (after an ``update()``, waits for that report)."""
        self._started_info()
        return self._layout_for(self._history.stamp, wait=True)

    @property
    def server_pids(self) -> list[int | None]:
        """The process id of each spawned server (``None`` for servers not spawned here)."""
        return [s.proc.pid if s.proc is not None else None for s in self._servers]

    @property
    def log_files(self) -> list[str | None]:
        """The log file of each spawned server (``None`` for servers not spawned here)."""
        return [s.log_file for s in self._servers]

    def _layout_for(self, stamp: int, wait: bool = False) -> ResponseLayout:
        streams = self._history.streams.get(stamp)
        if streams is None and wait:
            deadline = time.monotonic() + self.timeout
            with self._streams_changed:
                while (streams := self._history.streams.get(stamp)) is None and time.monotonic() < deadline:
                    if not any(s.alive for s in self._servers):
                        break
                    self._streams_changed.wait(0.1)
        if streams is None:
            raise RendererError(f"RemoteRenderer {self.name!r}: no server reported the outputs of config stamp {stamp}")
        return ResponseLayout.from_config(self.config, streams)

    # -- requests ------------------------------------------------------------------------------------
    def _command(self, command) -> None:
        self._commands.append(command)
        try:
            os.write(self._wake_w, b"x")
        except (OSError, TypeError):
            pass

    def _submit(self, request: Request, qpos: np.ndarray, seeds: np.ndarray) -> concurrent.futures.Future:
        future: concurrent.futures.Future = concurrent.futures.Future()
        future.set_running_or_notify_cancel()
        with self._lock:
            self._check_serving()
            stamp = self._history.stamp
            if qpos.shape[0] > 0:
                if self._info is not None and qpos.shape[1] > self._info.columns:  # the servers read no more
                    qpos = np.ascontiguousarray(qpos[:, :self._info.columns])
                self._command(RenderCommand(_Batch(next(self._seq), future, qpos.shape[0], stamp), qpos, seeds))
                return future
        # Nothing to send: the outputs of the batch's config stamp, with no entries, once a server
        # has reported them (right after an update() none may have yet; the caller is not held).
        def answer() -> None:
            try:
                future.set_result(self._layout_for(stamp, wait=True).allocate(0))
            except BaseException as e:
                future.set_exception(e)

        threading.Thread(target=answer, name=f"orrb-{self.name}-empty", daemon=True).start()
        return future

    def _check_serving(self) -> None:
        """Raises in the caller's thread when nothing would read a queued command (call under ``_lock``)."""
        if self._closed:
            raise RendererError(f"RemoteRenderer {self.name!r}: render after shutdown()")
        if self._io_stopped:
            errors = [s.error for s in self._servers if s.error is not None]
            raise RendererError(f"RemoteRenderer {self.name!r} no longer renders"
                                + (f": {errors[0]}" if errors else ""))

    def _update(self, renderer_config: RendererConfig) -> RendererInfo:
        from orrb.components.base import SceneContext, registry

        with self._lock:
            current = self._renderer_config
            merged = current.merged(renderer_config)
            known = registry()
            built = {spec.name: known[spec.type](spec.name, spec.path, dict(spec.properties))
                     for spec in merged.components}  # property names and values, as the servers check them
            placed = [spec.name for spec in renderer_config.components
                      if spec.name not in current or (spec.path and spec.path != current[spec.name].path)]
            structural = any(set(spec.properties) & built[spec.name].structural for spec in renderer_config.components)
            if placed or structural or self._model_stamp != self._history.stamp:
                model = compile_model(self.config, merged)
            else:  # the same scene as before the update
                model = self._model
            # every component the update names must find its bodies, cameras and lights in the scene,
            # here, as the servers will: a value they refuse would fail the pool after update() returned
            scene = SceneContext(model, list(self.config.camera_names), self.config.image_width,
                                 self.config.image_height)
            for spec in renderer_config.components:
                built[spec.name].initialize(scene)
            self._history.updates.append(renderer_config.to_dict())
            self._renderer_config = merged
            self._model, self._model_stamp = model, self._history.stamp
            self._command(UpdateCommand(self._history.stamp))
        return dataclasses.replace(self._info, renderer_config=merged.copy())

    # -- the I/O thread: dispatching -------------------------------------------------------------------
    def _fail_batch(self, batch: _Batch, error: BaseException) -> None:
        if batch.done:
            return
        batch.done = True
        batch.outputs = None
        batch.future.set_exception(error)

    def _assign(self, server: Server, shard: _Shard) -> None:
        """Adds a shard to a server's work, in queue order (a server renders stamps in order)."""
        work = self._work[server.index]
        keys = [s.key() for s in work]
        work.insert(bisect.bisect(keys, shard.key()), shard)

    def _dispatch(self, server: Server) -> None:
        """Sends a ready server every shard of its work not sent yet."""
        if server.state is not ServerState.READY:
            return
        work = self._work[server.index]
        for shard in work:
            if shard.req_id is None and not shard.batch.done:
                if server.applied_stamp > shard.batch.stamp:
                    # work moved here from a stopped server, older than what this one runs: start it over
                    self._supervisor.reinitialize(server, "work from an older config stamp moved here")
                    return
                shard.req_id = self._supervisor.render(server, shard, shard.batch.stamp, shard.qpos, shard.seeds)
        self._work[server.index] = [s for s in work if not s.batch.done or s.req_id is not None]

    def _new_batch(self, command: RenderCommand) -> None:
        batch = command.batch
        live = [s for s in self._servers if s.alive]
        if not live:
            self._fail_batch(batch, RendererError(
                f"RemoteRenderer {self.name!r}: no server left; " + "; ".join(
                    f"{s.describe()}: {s.error}" for s in self._servers)))
            return
        n = batch.n
        if n == 0:
            batch.done = True
            batch.future.set_result(self._layout_for(batch.stamp).allocate(0))
            return
        # one shard per server, more when a shard would exceed what one request may carry: the
        # servers' state count, and their largest inbound frame (the qpos array; a margin for the rest)
        row_bytes = command.qpos.shape[1] * command.qpos.itemsize
        cap = min([self._entries_per_request] + [s.info.get("max_entries", n) for s in live]
                  + [(s.info["max_message_bytes"] - _REQUEST_MARGIN_BYTES) // row_bytes
                     for s in live if "max_message_bytes" in s.info])
        parts = max(min(len(live), n), -(-n // max(1, cap)))
        bounds = [(i * n) // parts for i in range(parts + 1)]
        batch.remaining = parts
        for i, (lo, hi) in enumerate(zip(bounds[:-1], bounds[1:])):
            shard = _Shard(batch, lo, hi, command.qpos[lo:hi], command.seeds[lo:hi])
            self._work[live[i % len(live)].index].append(shard)
        for server in live[:parts]:
            self._dispatch(server)

    def _on_reply(self, reply: RenderReply) -> None:
        server, shard = reply.server, reply.work
        work = self._work[server.index]
        if shard in work:
            work.remove(shard)
        batch = shard.batch
        if batch.done:
            return
        if reply.header["type"] != wire.Kind.RESULT.value:
            self._fail_batch(batch, self._supervisor.remote_error(server, reply.header, "rendering"))
            return
        m = shard.hi - shard.lo
        try:
            layout = self._layout_for(batch.stamp)
            layout.check(reply.arrays, m, where=f"reply of {server.describe()}")
        except RendererError as e:
            self._fail_batch(batch, e)
            return
        if batch.outputs is None:
            batch.outputs = layout.allocate(batch.n)
        for key, out in batch.outputs.items():
            out[shard.lo:shard.hi] = reply.arrays[key]
        render_s = reply.header.get("render_s")
        if isinstance(render_s, (int, float)):
            batch.render_s += float(render_s)
        batch.remaining -= 1
        if batch.remaining == 0:
            batch.done = True
            outputs, batch.outputs = batch.outputs, None
            self.stats["server_render_s"] += batch.render_s
            batch.future.set_result(outputs)

    def _on_event(self, event) -> None:
        if isinstance(event, RenderReply):
            self._on_reply(event)
        elif isinstance(event, Ready):
            self._dispatch(event.server)
        elif isinstance(event, Lost):
            for shard in self._work[event.server.index]:
                shard.req_id = None  # sent again once the server is ready
        elif isinstance(event, Stopped):
            orphans, self._work[event.server.index] = self._work[event.server.index], []
            live = [s for s in self._servers if s.alive]
            for i, shard in enumerate(orphans):
                shard.req_id = None
                if not live:
                    self._fail_batch(shard.batch, RendererError(
                        f"RemoteRenderer {self.name!r}: no server left; {event.server.describe()} stopped "
                        f"({event.reason})", server=event.server.address, log_file=event.server.log_file))
                    continue
                self._assign(live[i % len(live)], shard)
            for server in live:
                self._dispatch(server)
        elif isinstance(event, Failed):
            for shard in self._work[event.server.index]:
                self._fail_batch(shard.batch, event.error)
            self._work[event.server.index] = []
        self.stats["restarts"] = self._supervisor.restarts

    def _check_started(self) -> None:
        if self._started_event.is_set():
            return
        if any(s.state in (ServerState.FAILED, ServerState.STOPPED) for s in self._servers) or all(
                s.state is ServerState.READY for s in self._servers):
            self._supervisor.start_complete()
            self._started_event.set()

    def _run_command(self, command) -> None:
        if isinstance(command, RenderCommand):
            self._new_batch(command)
        elif isinstance(command, UpdateCommand):
            for server in self._servers:
                if server.state is ServerState.READY:
                    self._supervisor.sync(server, command.stamp)
        elif isinstance(command, ServerGoneCommand):
            self._supervisor.server_gone(self._servers[command.index], command.reason, for_good=command.for_good)
        elif isinstance(command, ServerMovedCommand):
            self._supervisor.server_moved(self._servers[command.index], command.address)

    def _io_loop(self) -> None:
        supervisor = self._supervisor
        stop: StopCommand | None = None
        stop_deadline = 0.0
        known_streams = 0
        try:
            supervisor.launch_all()
            while True:
                while self._commands:
                    command = self._commands.popleft()
                    if isinstance(command, StopCommand):
                        stop = command
                        stop_deadline = time.monotonic() + max(self.timeout, 1.0)
                        self._started_event.set()
                        continue
                    try:
                        self._run_command(command)
                    except Exception as e:  # one command's failure fails that command, not the pool
                        log.exception("RemoteRenderer %r: %s failed", self.name, type(command).__name__)
                        if isinstance(command, RenderCommand):
                            self._fail_batch(command.batch, RendererError(
                                f"RemoteRenderer {self.name!r}: the batch could not be dispatched: {e!r}"))
                if stop is not None and (not stop.drain or not any(self._work.values())
                                         or time.monotonic() > stop_deadline):
                    break
                events, readable = supervisor.poll(_LOOP_TICK_S * 1000, [self._wake_r])
                if readable:
                    try:
                        while os.read(self._wake_r, 4096):
                            pass
                    except BlockingIOError:
                        pass
                for event in events:
                    self._on_event(event)
                if len(self._history.streams) != known_streams:
                    known_streams = len(self._history.streams)
                    with self._streams_changed:
                        self._streams_changed.notify_all()
                self._check_started()
        except BaseException as e:  # never leave a caller waiting forever
            log.exception("RemoteRenderer %r: I/O thread failed", self.name)
            error = RendererError(f"RemoteRenderer {self.name!r}: I/O thread failed: {e!r}")
            for server in self._servers:
                server.error = server.error or error
        finally:
            with self._lock:  # from here on _submit refuses: nothing would read its command
                self._io_stopped = True
            closing = RendererError(f"RemoteRenderer {self.name!r} was shut down before the batch completed")
            while self._commands:
                command = self._commands.popleft()
                if isinstance(command, RenderCommand):
                    self._fail_batch(command.batch, closing)
            for server in self._servers:
                for shard in self._work.get(server.index, []):
                    self._fail_batch(shard.batch, server.error or closing)
                self._work[server.index] = []
            supervisor.close()
            self._started_event.set()
            if self._reap_on_exit:
                self._reap()


_live_renderers: weakref.WeakSet = weakref.WeakSet()


@atexit.register
def _shutdown_all() -> None:
    # at exit nobody waits for a batch in flight: stop at once
    for renderer in list(_live_renderers):
        try:
            renderer._shutdown_now()
        except Exception:
            pass
