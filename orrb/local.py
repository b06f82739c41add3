"""``LocalRenderer``: the render engine in the calling process, with the pool's API.

The engine (and its GL context) lives on one worker thread owned by the renderer,
so ``render_batch`` and ``render_batch_async`` can be called from any thread;
requests are checked in the caller's thread before they are queued, and run in
the order they were queued (so an ``update()`` applies to the batches queued after it).
"""

from __future__ import annotations

import concurrent.futures
import queue as queue_module
import threading
import warnings
from typing import TYPE_CHECKING, Any

from orrb.config import RemoteRendererConfig, RendererConfig
from orrb.errors import RendererError
from orrb.request import Request, Response, check_request, put_result_on_queue

if TYPE_CHECKING:
    from orrb.engine import EngineOptions

__all__ = ["LocalRenderer"]


class LocalRenderer:
    """Renders in this process; the same methods as :class:`orrb.RemoteRenderer`.

    Args:
        config: what to render (:class:`orrb.RemoteRendererConfig`).
        renderer_config: a component chain overriding ``config.renderer_config_path``.
        engine_options: how the engine schedules its work (:class:`orrb.engine.EngineOptions`).

    Example::

        with orrb.LocalRenderer(config) as renderer:
            result = renderer.render_batch({'qpos': qpos, 'seed': 7})
        result['vision_cam_left']            # uint8 [B, H, W, 3]
        result['vision_cam_left_depth']      # float32 [B, H, W] (render_depth)
    """

    def __init__(self, config: RemoteRendererConfig, renderer_config: RendererConfig | None = None,
                 engine_options: EngineOptions | None = None):
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._engine = None
        self._closed = False
        self._lock = threading.Lock()
        if not isinstance(config, RemoteRendererConfig):
            raise TypeError(f"LocalRenderer takes an orrb.RemoteRendererConfig, got {type(config).__name__}")
        config.validate()
        self.config = config.copy()
        self._initial_renderer_config = renderer_config.copy() if renderer_config is not None else None
        self._engine_options = engine_options
        self._columns = None
        self._class_names: list[str] | None = None
        self._model = None
        self._renderer_config: RendererConfig | None = None

    # -- lifecycle ---------------------------------------------------------------------------------
    def start(self) -> LocalRenderer:
        """Builds the engine on the renderer's thread (idempotent); raises its errors here."""
        with self._lock:
            if self._closed:
                raise RendererError("LocalRenderer.start() after shutdown()")
            if self._engine is not None:
                return self
            self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="orrb-local")
            from orrb.engine import RenderEngine

            future = self._executor.submit(RenderEngine, self.config, self._initial_renderer_config,
                                           self._engine_options)
            try:
                self._engine = future.result()
            except BaseException:
                self._executor.shutdown(wait=True)
                self._executor = None
                raise
            self._columns = self._engine.columns
            self._class_names = list(self._engine.class_names)
            self._model = self._engine.model
            self._renderer_config = self._engine.renderer_config()
        return self

    def shutdown(self) -> None:
        """Finishes queued batches, frees the GL context and stops the thread. Idempotent."""
        with self._lock:
            self._closed = True
            executor, engine = self._executor, self._engine
            self._executor = self._engine = None
        if executor is not None:
            if engine is not None:
                executor.submit(engine.close).result()
            executor.shutdown(wait=True)

    close = shutdown

    def __enter__(self) -> LocalRenderer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.shutdown()

    def __del__(self):
        if getattr(self, "_engine", None) is not None:
            warnings.warn("LocalRenderer was not shut down; call shutdown() or use it as a context manager",
                          ResourceWarning, stacklevel=2)
            try:
                self.shutdown()
            except Exception:
                pass

    # -- info ------------------------------------------------------------------------------------
    @property
    def columns(self) -> int:
        """How many qpos columns a request needs."""
        if self._columns is None:
            self.start()
        return self._columns

    @property
    def class_names(self) -> list[str]:
        """Segmentation class names by id (0 = background)."""
        if self._class_names is None:
            self.start()
        return list(self._class_names)

    @property
    def model(self):
        """The engine's compiled ``mujoco.MjModel`` (read it; do not edit it).

        An ``update()`` that rebuilds the model (e.g. a new light count) replaces it.
        """
        if self._model is None:
            self.start()
        return self._model

    # -- rendering -------------------------------------------------------------------------------
    def _submit(self, batch: Request) -> concurrent.futures.Future:
        self.start()
        qpos, seeds = check_request(batch, self._columns)
        engine = self._engine

        def work() -> Response:
            images = engine.render(qpos, seeds)
            response = dict(batch)
            response.update(images)
            return response

        return self._executor.submit(work)

    def render_batch(self, batch: Request) -> Response:
        """Renders a batch and returns the response (SPEC §4).

        Args:
            batch: ``{'qpos': [B, K], 'seed': int}`` or ``{'qpos': ..., 'seeds': [B]}``;
                other keys are passed through.

        Returns:
            the request's keys plus, per camera ``c``: ``c`` uint8 ``[B, H, W, 3]``
            (4 channels with ``render_alpha``), ``c_depth`` float32 ``[B, H, W]`` (m),
            ``c_normals`` float32 ``[B, H, W, 3]`` in [0, 1], ``c_segmentation`` uint8
            ``[B, H, W]``, and the components' auxiliary streams ``[B, k]``.

        Raises:
            ValueError / TypeError: a bad request (in the caller's thread).
            RendererError: rendering failed.
        """
        return self._submit(batch).result()

    def render_batch_async(self, batch: Request, queue: queue_module.Queue | None = None) -> concurrent.futures.Future:
        """Queues a batch; returns a ``Future`` of the response at once.

        When ``queue`` is given the response dict (or, on failure, the exception) is
        put on it too, so a consumer never waits forever. A bad request raises here,
        in the caller's thread.
        """
        future = self._submit(batch)
        if queue is not None:
            put_result_on_queue(future, queue)
        return future

    def update(self, renderer_config: RendererConfig) -> None:
        """Merges ``renderer_config`` into the chain for all batches queued after this call (SPEC §6)."""
        if not isinstance(renderer_config, RendererConfig):
            raise TypeError(f"update() takes an orrb.RendererConfig, got {type(renderer_config).__name__}")
        self.start()
        merged = self._renderer_config.merged(renderer_config)  # validates in the caller's thread
        snapshot = renderer_config.copy()
        self._executor.submit(self._engine.update, snapshot).result()
        self._renderer_config = merged
        self._model = self._engine.model  # a structural change rebuilds the model
        self._class_names = list(self._engine.class_names)

    def mutable_renderer_config(self) -> RendererConfig:
        """A copy of the current component chain, to edit and pass to ``update()``."""
        self.start()
        return self._executor.submit(self._engine.renderer_config).result()

    def _engine_call(self, fn, *args: Any):
        """Runs ``fn(engine, *args)`` on the renderer's thread (used by envs and tests)."""
        self.start()
        return self._executor.submit(fn, self._engine, *args).result()
