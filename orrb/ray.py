"""Render servers and dataset rendering on a Ray cluster (the ``ray`` extra).

:class:`RayRenderer` starts its render servers as Ray actors, one
:class:`orrb.pool.server.RenderServer` per actor, placed with a placement group and
bound to the actor's node address; it is otherwise a :class:`orrb.RemoteRenderer`
reaching them at ``tcp://host:port`` (the same methods, sharding and fault handling).
The ZeroMQ data plane is the pool's own: Ray only places, starts, restarts and stops
the servers.

- **Secret.** Every renderer makes a fresh random shared secret (or takes ``secret=``)
  and hands it to its actors as a constructor argument; servers and the client derive
  CURVE keys from it, so all render traffic is encrypted and a client without the secret
  is refused.
- **GPUs.** With ``gpus_per_server=1`` each actor gets a GPU from Ray
  (``ray.get_gpu_ids()``, listed in its ``CUDA_VISIBLE_DEVICES``); the server renders on
  the EGL device of that GPU, found as ``orrb serve --device`` finds it (Ray's
  ``CUDA_VISIBLE_DEVICES`` alone does not choose the EGL device).
- **Faults.** An actor that dies is restarted by Ray (``max_restarts``). A restarted
  actor binds a new port, possibly on another node, so the renderer tells the pool the
  new address (:meth:`orrb.RemoteRenderer.server_moved`): binding the old port again
  cannot work when Ray restarts the actor elsewhere. While it is away its shards are
  rendered by the other servers (the pool is told at once, through the actor's death,
  not after a timeout); an actor that does not come back (its node is gone for good,
  ``max_restarts`` used up, not placed within ``restart_timeout``) leaves the pool
  smaller. ``shutdown()`` kills every actor and frees the placement group; the actors
  are not detached, so Ray also removes them when the driver dies.

:func:`render_dataset` renders an ``orrb dataset`` with worker actors, each with its own
:class:`orrb.LocalRenderer`, writing shards into the dataset folder (which every node must
see: a shared file system).
"""

from __future__ import annotations

import logging
import os
import re
import secrets
import threading
import time
from typing import Any

from orrb.config import RemoteRendererConfig, RendererConfig
from orrb.engine.options import ENTRIES_PER_READBACK_ENV
from orrb.errors import RendererError
from orrb.extras import import_optional
from orrb.pool.client import RemoteRenderer

ray = import_optional("ray", "orrb.ray")

__all__ = ["RayRenderer", "render_dataset"]

log = logging.getLogger("orrb.ray")

PLACEMENTS = ("PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD")
_WATCH_TICK_S = 0.2
_KILL_WAIT_S = 10.0  # how long shutdown() waits for killed actors to be reported dead


def _remote_error(error: BaseException) -> str:
    """The line of a Ray error (which carries the remote traceback) that says what went wrong."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    raised = [line for line in lines if re.match(r"^[\w.]+(Error|Exception): ", line)]
    return (raised[-1] if raised else lines[0] if lines else type(error).__name__)[:500]


def _prepare_device() -> tuple[list, str]:
    """Chooses this actor's GL device before any GL context exists: the GPU Ray assigned it
    (the first one), as ``orrb serve --device`` does, else CPU rendering with one llvmpipe
    thread. Returns ``(ray GPU ids, a line for the log)``."""
    from orrb.egl_device import nvidia_gpu_present
    from orrb.pool.server import _setup_device

    gpu_ids = list(ray.get_gpu_ids())
    if gpu_ids:
        # Ray lists the assigned GPUs in CUDA_VISIBLE_DEVICES: CUDA index 0 is the first of them
        return gpu_ids, _setup_device(0, None)
    return gpu_ids, _setup_device(None, None if nvidia_gpu_present() else 0)


def _actor_log(name: str, index: int) -> str | None:
    """Sends orrb's log of this actor to ``orrb-ray-<name>-<index>.log`` in the node's orrb log folder."""
    from orrb.pool.supervisor import log_dir, prune_logs, safe_file_name

    try:
        folder = log_dir()
        prune_logs(folder)
        path = os.path.join(folder, f"orrb-ray-{safe_file_name(name)}-{index}.log")
        handler = logging.FileHandler(path, mode="a")
    except Exception:
        return None
    handler.setFormatter(logging.Formatter("%(asctime)s orrb-server[%(process)d] %(levelname)s %(message)s"))
    logger = logging.getLogger("orrb")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    return path


class _RenderServerActor:
    """A Ray actor serving one :class:`RenderServer` on its node's address (a port the OS picks)."""

    def __init__(self, name: str, index: int, secret: bytes, token: str | None):
        gpu_ids, device_line = _prepare_device()
        log_file = _actor_log(name, index)
        import zmq

        from orrb.pool.server import RenderServer

        host = ray.util.get_node_ip_address()
        self.server = RenderServer(f"tcp://{host}:*", secret=secret, token=token)
        address = self.server.socket.getsockopt_string(zmq.LAST_ENDPOINT)
        logging.getLogger("orrb.pool.server").info("Ray actor %s of %r listening on %s; %s", index, name, address,
                                                   device_line)
        self._info = {"address": address, "node_id": ray.get_runtime_context().get_node_id(), "host": host,
                      "pid": os.getpid(), "gpu_ids": gpu_ids, "device": device_line, "log_file": log_file,
                      "entries_per_readback": os.environ.get(ENTRIES_PER_READBACK_ENV)}
        self._thread = threading.Thread(target=self._serve, name="orrb-render-server", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        try:
            self.server.serve()  # the engine is built, used and freed in this thread
        finally:
            self.server.close()

    def info(self) -> dict[str, Any]:
        """``address`` (``tcp://host:port``), ``node_id``, ``host``, ``pid``, ``gpu_ids``, ``device``, ``log_file``
        and ``entries_per_readback`` (the actor's ``ORRB_ENTRIES_PER_READBACK``, or None)."""
        return dict(self._info)

    def wait(self) -> int:
        """Returns when the server has stopped (the renderer's lifeline to this actor)."""
        self._thread.join()
        return 0


class RayRenderer(RemoteRenderer):
    """A :class:`orrb.RemoteRenderer` whose servers are Ray actors on the cluster Ray is connected to.

    Calls ``ray.init()`` when Ray is not initialized (joining the cluster of ``RAY_ADDRESS`` or
    a local ``ray start``, else starting Ray on this machine).

    Args:
        name: a name for logs (each actor logs to ``orrb-ray-<name>-<index>.log`` in its node's
            orrb log folder, :attr:`log_files`).
        config: what to render (:class:`orrb.RemoteRendererConfig`).
        num_servers: how many render servers (actors).
        renderer_config: a component chain overriding ``config.renderer_config_path``.
        gpus_per_server: GPUs Ray reserves for each actor (0: render on the CPU; 1: the server
            renders on the GPU Ray assigned; fractions share a GPU between servers).
        cpus_per_server: CPUs Ray reserves for each actor (a server uses one or two).
        placement: placement group strategy of the servers' bundles: ``"PACK"`` (few nodes),
            ``"SPREAD"`` (many nodes), or ``"STRICT_PACK"`` / ``"STRICT_SPREAD"``.
        secret: shared secret for the CURVE encryption of render traffic (default: a fresh random
            one per renderer, handed to the actors through Ray).
        max_restarts: how often Ray restarts each actor, and the consecutive failures the pool
            tolerates per server.
        restart_timeout: seconds a dead actor may take to come back (placed and listening)
            before the pool goes on without it.
        resources: extra Ray resources per server (e.g. ``{"render_node": 1}``).
        **pool_options: ``timeout``, ``entry_timeout``, ``start_timeout``, ``connect_timeout``
            and ``token``, as for :class:`orrb.RemoteRenderer`; ``start_timeout`` also bounds the
            wait for the placement group and the actors.

    Example::

        with orrb.ray.RayRenderer("pool", config, 4, gpus_per_server=1) as renderer:
            result = renderer.render_batch({"qpos": qpos, "seed": 0})
        result["vision_cam_left"]        # uint8 [B, H, W, 3]
    """

    def __init__(self, name: str, config: RemoteRendererConfig, num_servers: int,
                 renderer_config: RendererConfig | None = None, *, gpus_per_server: float = 0,
                 cpus_per_server: float = 1, placement: str = "PACK", secret: str | bytes | None = None,
                 max_restarts: int = 3, restart_timeout: float = 60.0, resources: dict[str, float] | None = None,
                 **pool_options):
        self._actors: list = []
        self._infos: list[dict[str, Any]] = []
        self._placement_group = None
        self._watcher: threading.Thread | None = None
        self._stopping = threading.Event()
        if isinstance(num_servers, bool) or not isinstance(num_servers, int):
            raise TypeError(f"num_servers must be an int, got {type(num_servers).__name__}")
        if num_servers < 1:
            raise ValueError(f"num_servers must be >= 1, got {num_servers}")
        for label, value in (("gpus_per_server", gpus_per_server), ("cpus_per_server", cpus_per_server),
                             ("restart_timeout", restart_timeout)):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise TypeError(f"{label} must be a number, got {type(value).__name__}")
            if value < 0:
                raise ValueError(f"{label} must be >= 0, got {value}")
        if placement not in PLACEMENTS:
            raise ValueError(f"placement must be one of {list(PLACEMENTS)}, got {placement!r}")
        if resources is not None and (not isinstance(resources, dict) or not all(
                isinstance(k, str) and isinstance(v, (int, float)) and v >= 0 for k, v in resources.items())):
            raise TypeError(f"resources must be a dict of resource name -> amount >= 0, got {resources!r}")
        if secret is None:
            secret = secrets.token_urlsafe(32)
        elif not isinstance(secret, (str, bytes)) or not secret:
            raise TypeError(f"secret must be a non-empty str or bytes, got {type(secret).__name__}")
        unknown = set(pool_options) - {"timeout", "entry_timeout", "start_timeout", "connect_timeout", "token"}
        if unknown:
            raise TypeError(f"RayRenderer got unexpected options {sorted(unknown)}; accepted: timeout, entry_timeout, "
                            "start_timeout, connect_timeout, token")
        # the servers' addresses are known once the actors run (start()): well-formed placeholders,
        # never connected to, until then
        super().__init__(name, [f"tcp://ray-actor-{i}:1" for i in range(num_servers)], config, renderer_config,
                         secret=secret, max_restarts=max_restarts, **pool_options)
        self.num_servers = num_servers
        self.gpus_per_server, self.cpus_per_server = gpus_per_server, cpus_per_server
        self.placement, self.restart_timeout = placement, float(restart_timeout)
        self.resources = dict(resources or {})

    # -- lifecycle ---------------------------------------------------------------------------------
    def _start(self):
        from ray.util.placement_group import placement_group
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

        if not ray.is_initialized():
            ray.init()
        bundle = {"CPU": float(self.cpus_per_server), "GPU": float(self.gpus_per_server), **self.resources}
        bundle = {k: v for k, v in bundle.items() if v > 0}
        try:
            self._placement_group = placement_group([dict(bundle) for _ in range(self.num_servers)],
                                                    strategy=self.placement, name=f"orrb-{self.name}")
            ready, _ = ray.wait([self._placement_group.ready()], timeout=self.start_timeout)
            if not ready:
                raise RendererError(
                    f"RayRenderer {self.name!r}: the cluster did not provide {self.num_servers} x {bundle} "
                    f"({self.placement}) within {self.start_timeout:g} s (start_timeout); available now: "
                    f"{ray.available_resources()}")
            secret = self._secret.encode() if isinstance(self._secret, str) else self._secret
            actor_class = ray.remote(_RenderServerActor)
            # the engine settings a spawned pool's servers inherit from this process's environment
            env = {k: os.environ[k] for k in (ENTRIES_PER_READBACK_ENV,) if k in os.environ}
            for i in range(self.num_servers):
                self._actors.append(actor_class.options(
                    num_cpus=self.cpus_per_server, num_gpus=self.gpus_per_server, resources=self.resources or None,
                    max_restarts=self.max_restarts, max_task_retries=0, max_concurrency=4,
                    name=None, lifetime=None,  # owned by this driver: gone when it is
                    scheduling_strategy=PlacementGroupSchedulingStrategy(self._placement_group, i),
                    runtime_env={"env_vars": env} if env else None,
                ).remote(self.name, i, secret, self._token))
            try:
                self._infos = ray.get([a.info.remote() for a in self._actors], timeout=self.start_timeout)
            except ray.exceptions.GetTimeoutError:
                raise RendererError(f"RayRenderer {self.name!r}: the server actors did not start within "
                                    f"{self.start_timeout:g} s (start_timeout)") from None
            except ray.exceptions.RayError as e:
                raise RendererError(f"RayRenderer {self.name!r}: a server actor failed to start: {e}") from None
            # followed from here on: a death while the pool connects is seen too
            lifelines = {actor.wait.remote(): i for i, actor in enumerate(self._actors)}
            self._entries = [(None, None, info["address"]) for info in self._infos]
            info = super()._start()
        except BaseException:
            self._kill_actors()
            raise
        self._watcher = threading.Thread(target=self._watch, args=(lifelines,), name=f"orrb-{self.name}-ray-watch",
                                         daemon=True)
        self._watcher.start()
        log.info("RayRenderer %r: %d servers at %s", self.name, self.num_servers,
                 ", ".join(i["address"] for i in self._infos))
        return info

    def _shutdown(self) -> None:
        self._stopping.set()
        super()._shutdown()
        watcher, self._watcher = self._watcher, None
        if watcher is not None:
            watcher.join()
        self._kill_actors()

    def _kill_actors(self) -> None:
        """Kills every actor (no restart), waits until Ray reports them dead, frees the placement group."""
        from ray.util.placement_group import remove_placement_group

        self._stopping.set()
        actors, self._actors = self._actors, []
        waits = []
        for actor in actors:
            try:
                ray.kill(actor, no_restart=True)
                waits.append(actor.wait.remote())
            except Exception:
                pass
        deadline = time.monotonic() + _KILL_WAIT_S
        for ref in waits:
            try:
                ray.get(ref, timeout=max(0.1, deadline - time.monotonic()))
            except Exception:
                pass
        group, self._placement_group = self._placement_group, None
        if group is not None:
            try:
                remove_placement_group(group)
            except Exception:
                pass

    # -- faults ------------------------------------------------------------------------------------
    def _watch(self, lifelines: dict) -> None:
        """Follows each actor (``lifelines``: its ``wait()`` call -> its index): a death tells the
        pool at once, a restart tells it the new address."""
        returns: dict[Any, tuple[int, float]] = {}  # info() of a restarting actor -> (index, deadline)
        while not self._stopping.is_set():
            refs = list(lifelines) + list(returns)
            try:
                ready, _ = ray.wait(refs, num_returns=1, timeout=_WATCH_TICK_S) if refs else ([], [])
            except Exception as e:  # Ray itself went away (ray.shutdown() before ours): nothing left to follow
                if not self._stopping.is_set():
                    log.warning("RayRenderer %r: stopped following its actors: %r", self.name, e)
                return
            if self._stopping.is_set():
                return
            for ref in ready:
                if ref in lifelines:
                    i = lifelines.pop(ref)
                    try:
                        ray.get(ref)
                        reason = "its server stopped"
                    except ray.exceptions.RayError as e:
                        reason = f"Ray actor died: {str(e).splitlines()[0][:200]}"
                    self.server_gone(i, reason)
                    returns[self._actors[i].info.remote()] = (i, time.monotonic() + self.restart_timeout)
                else:
                    i, deadline = returns.pop(ref)
                    try:
                        info = ray.get(ref)
                    except ray.exceptions.ActorUnavailableError:
                        returns[self._actors[i].info.remote()] = (i, deadline)  # still restarting
                        continue
                    except ray.exceptions.RayError as e:
                        self.server_gone(i, f"Ray actor not restarted: {str(e).splitlines()[0][:200]}", for_good=True)
                        continue
                    self._infos[i] = info
                    self.server_moved(i, info["address"])
                    lifelines[self._actors[i].wait.remote()] = i
            now = time.monotonic()
            for ref, (i, deadline) in list(returns.items()):
                if now > deadline:
                    del returns[ref]
                    self.server_gone(i, f"Ray actor not back within {self.restart_timeout:g} s (restart_timeout)",
                                     for_good=True)
                    try:
                        ray.kill(self._actors[i], no_restart=True)
                    except Exception:
                        pass

    # -- info --------------------------------------------------------------------------------------
    @property
    def addresses(self) -> list[str]:
        """Each server's current address (``tcp://node-ip:port``)."""
        self._started_info()
        return [info["address"] for info in self._infos]

    @property
    def actors(self) -> list:
        """The Ray actor handles of the servers."""
        return list(self._actors)

    @property
    def node_ids(self) -> list[str]:
        """The Ray node id each server runs on."""
        self._started_info()
        return [info["node_id"] for info in self._infos]

    @property
    def server_pids(self) -> list[int | None]:
        """The process id of each server's actor (on its node)."""
        return [info["pid"] for info in self._infos]

    @property
    def log_files(self) -> list[str | None]:
        """Each actor's orrb log file, on its node."""
        return [info.get("log_file") for info in self._infos]

    @property
    def gpu_ids(self) -> list[list]:
        """The GPU ids Ray assigned each server (empty lists on the CPU)."""
        return [list(info["gpu_ids"]) for info in self._infos]


# -- datasets --------------------------------------------------------------------------------------
class _DatasetActor:
    """A dataset worker: a LocalRenderer and a DatasetWriter that renders and writes whole shards."""

    def __init__(self, config: RemoteRendererConfig, chain_json: dict, directory: str, count: int, shard_size: int,
                 seed: int, object_name: str):
        _prepare_device()
        from orrb.dataset import DatasetWriter
        from orrb.local import LocalRenderer

        chain = RendererConfig.from_json(chain_json)
        self.renderer = LocalRenderer(config, chain).start()
        self.writer = DatasetWriter(self.renderer, config, directory, count, shard_size, seed,
                                    object_name=object_name, renderer_config_json=chain_json,
                                    class_names=self.renderer.class_names)

    def class_names(self) -> list[str]:
        return list(self.renderer.class_names)

    def write(self, shard: int) -> dict:
        """Renders and writes shard ``shard``; returns its arrays cut to 0 items (names, dtypes, shapes)."""
        arrays = self.writer.shard_arrays(shard, self.renderer.render_batch(self.writer.shard_request(shard)))
        self.writer.write_shard(shard, arrays)
        return {key: value[:0] for key, value in arrays.items()}


def render_dataset(config: RemoteRendererConfig, chain: RendererConfig, directory: str, count: int, *,
                   shard_size: int = 64, seed: int = 0, object_name: str = "cube", workers: int = 2,
                   gpus_per_worker: float = 0, cpus_per_worker: float = 1, progress: bool = True,
                   stop_after: int | None = None) -> tuple[int, Any]:
    """Renders (or resumes) an ``orrb dataset`` with ``workers`` Ray actors writing shards in parallel.

    The result is the dataset a single-machine ``orrb dataset`` writes with the same
    arguments, array for array: shard ``s`` is a pure function of the arguments and ``s``.
    Shards already in ``directory`` are skipped; a progress bar counts items in the driver.

    Args:
        config / chain: what to render (the dataset's config and component chain).
        directory: the dataset folder; every node must see it (a shared file system).
        count / shard_size / seed / object_name: as for :class:`orrb.dataset.DatasetWriter`.
        workers: number of worker actors (each renders with its own LocalRenderer).
        gpus_per_worker / cpus_per_worker: Ray resources of each worker.
        progress: show the progress bar.
        stop_after: write at most this many new shards.

    Returns:
        ``(shards written, the driver's DatasetWriter)`` (its ``pending_shards()`` says what is left).

    Raises:
        RendererError: a worker failed (the error names it); shards written so far stay.
    """
    from tqdm import tqdm

    from orrb.dataset import DatasetWriter

    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be an int >= 1, got {workers!r}")
    if not ray.is_initialized():
        ray.init()
    chain_json = chain.to_dict()
    directory = os.path.abspath(os.fspath(directory))
    # checked here first (the object, a different dataset in the folder), not in every worker
    writer = DatasetWriter(None, config, directory, count, shard_size, seed, object_name=object_name,
                           renderer_config_json=chain_json)
    writer.check_folder()
    actor_class = ray.remote(_DatasetActor).options(num_cpus=cpus_per_worker, num_gpus=gpus_per_worker,
                                                    max_restarts=1, max_task_retries=2)
    actors = [actor_class.remote(config, chain_json, directory, count, shard_size, seed, object_name)
              for _ in range(workers)]
    try:
        try:
            writer.manifest["class_names"] = list(ray.get(actors[0].class_names.remote()))
        except ray.exceptions.RayError as e:
            raise RendererError(f"orrb dataset on Ray: worker 0 could not start: {_remote_error(e)}") from None
        writer.open()  # the manifest before any shard
        pending = writer.pending_shards()
        if stop_after is not None:
            pending = pending[:max(0, int(stop_after))]
        done_items = count - sum(min(shard_size, count - s * shard_size) for s in writer.pending_shards())
        written = 0
        with tqdm(total=count, initial=done_items, unit=" states", desc="orrb dataset (ray)", disable=not progress,
                  dynamic_ncols=True) as bar:
            todo = list(pending)
            running: dict[Any, tuple[int, int]] = {}  # ref -> (worker, shard)
            for w in range(workers):  # two shards queued per worker: one rendering, one next
                for _ in range(2):
                    if todo:
                        shard = todo.pop(0)
                        running[actors[w].write.remote(shard)] = (w, shard)
            while running:
                ready, _ = ray.wait(list(running), num_returns=1)
                w, shard = running.pop(ready[0])
                try:
                    empty = ray.get(ready[0])
                except ray.exceptions.RayError as e:
                    raise RendererError(f"orrb dataset on Ray: worker {w} failed on shard {shard}: {e}") from None
                if "arrays" not in writer.manifest:
                    writer.write_manifest(empty)
                written += 1
                bar.update(min(shard_size, count - shard * shard_size))
                if todo:
                    shard = todo.pop(0)
                    running[actors[w].write.remote(shard)] = (w, shard)
        return written, writer
    finally:
        for actor in actors:
            try:
                ray.kill(actor, no_restart=True)
            except Exception:
                pass

