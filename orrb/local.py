"""``LocalRenderer``: the render engine in the calling process, with the pool's API.

The engine (and its GL context) lives on one worker thread owned by the renderer, so
``render_batch`` and ``render_batch_async`` can be called from any thread; requests are
checked in the caller's thread before they are queued, and run in the order they were
queued (so an ``update()`` applies to the batches queued after it).
"""

from __future__ import annotations

import concurrent.futures
import os
import warnings
from typing import TYPE_CHECKING

import numpy as np

from orrb.config import RemoteRendererConfig, RendererConfig
from orrb.errors import RendererError, is_gl_load_error
from orrb.renderer import RendererBase, RendererInfo
from orrb.request import Request

if TYPE_CHECKING:
    from orrb.engine import EngineOptions

__all__ = ["LocalRenderer"]


class LocalRenderer(RendererBase):
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
        self._engine_options = engine_options
        super().__init__(config, renderer_config)

    def _start(self) -> RendererInfo:
        try:
            from orrb.engine import create_engine  # imports MuJoCo, which loads its GL backend ($MUJOCO_GL)
        except (ImportError, AttributeError, OSError) as e:
            if not is_gl_load_error(e):
                raise
            text = str(e)
            backend = os.environ.get("MUJOCO_GL", "egl")
            raise RendererError(
                f"cannot create an OpenGL context (MUJOCO_GL={backend!r}): MuJoCo cannot load its GL library "
                f"(libEGL for egl) ({text.splitlines()[0] if text else type(e).__name__}). On a headless Linux "
                "machine install EGL and Mesa (apt-get install libegl1 libegl-mesa0 libgl1 libgl1-mesa-dri)") from e

        executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="orrb-local")
        try:
            engine = executor.submit(create_engine, self.config, self._initial_renderer_config,
                                     self._engine_options).result()
        except BaseException:
            executor.shutdown(wait=True)
            raise
        self._executor, self._engine = executor, engine
        return self._engine_info()

    def _engine_info(self) -> RendererInfo:
        # Runs on the engine's thread or while it is idle (start, or inside update's wait).
        engine = self._engine
        return RendererInfo(engine.columns, tuple(engine.class_names), engine.model, dict(engine.streams()),
                            engine.renderer_config())

    def _shutdown(self) -> None:
        executor, engine = self._executor, self._engine
        self._executor = self._engine = None
        if executor is not None:
            if engine is not None:
                executor.submit(engine.close).result()
            executor.shutdown(wait=True)

    def _submit(self, request: Request, qpos: np.ndarray, seeds: np.ndarray) -> concurrent.futures.Future:
        return self._executor.submit(self._engine.render, qpos, seeds)

    def _update(self, renderer_config: RendererConfig) -> RendererInfo:
        def apply() -> RendererInfo:
            self._engine.update(renderer_config)
            return self._engine_info()

        return self._executor.submit(apply).result()

    def __del__(self):
        if getattr(self, "_engine", None) is not None:
            warnings.warn("LocalRenderer was not shut down; call shutdown() or use it as a context manager",
                          ResourceWarning, stacklevel=2)
            try:
                self.shutdown()
            except Exception:
                pass
