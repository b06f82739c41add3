"""``EngineBase``: what every render engine shares, whatever draws the pixels.

The config check and copy, the component chain (loaded from ``config.renderer_config_path``
unless given), the compiled scene's read-only facts (``model``, ``columns``,
``class_names``, ``camera_names``), ``renderer_config()``, ``streams()`` and ``update()``.
A backend implements ``_build`` (compile the scene and bind its drawing side to it),
``render`` and ``close``; :class:`~orrb.engine.render_engine.RenderEngine` draws with
OpenGL, :class:`~orrb.engine.warp_backend.WarpRenderEngine` with MuJoCo Warp's ray tracer.
"""

from __future__ import annotations

import abc
from typing import NamedTuple

import mujoco
import numpy as np

from orrb.components.base import BatchContext, Component
from orrb.config import RemoteRendererConfig, RendererConfig
from orrb.engine.chain import ComponentChain
from orrb.engine.compiled_scene import CompiledScene
from orrb.engine.entry_setup import EntrySetup
from orrb.engine.options import EngineOptions
from orrb.engine.outputs import BatchOutputs
from orrb.errors import RendererError

__all__ = ["BatchPlan", "EngineBase"]


class BatchPlan(NamedTuple):
    """What a backend needs to render one batch (``EngineBase.plan_batch``).

    Attributes:
        active: the enabled components, in chain order.
        wants_depth: whether the depth buffer is read (an output or a component needs it).
        arrays: the batch's output arrays (:class:`~orrb.engine.outputs.BatchOutputs`).
        context: the per-batch :class:`~orrb.components.base.BatchContext` of the components.
        setup: sets entry ``i`` up on the host model (:class:`~orrb.engine.entry_setup.EntrySetup`).
    """

    active: list[Component]
    wants_depth: bool
    arrays: BatchOutputs
    context: BatchContext
    setup: EntrySetup


class EngineBase(abc.ABC):
    """The backend-independent part of a render engine.

    Args:
        config: what to render (cameras, size, modalities, scene files, render settings).
        renderer_config: the component chain; defaults to ``config.renderer_config_path``
            (none when that is unset).
        options: how to schedule the work (:class:`EngineOptions`; only its tiling of entries and
            its post-processing path can change output bits, by rounding).

    Raises:
        TypeError: ``config`` or ``options`` of the wrong kind.
        FileNotFoundError / ConfigError: a missing or malformed renderer config file.

    A subclass sets its own handles before calling this ``__init__`` (so its ``close()`` is
    safe whatever fails), then calls ``_build()``.
    """

    def __init__(self, config: RemoteRendererConfig, renderer_config: RendererConfig | None = None,
                 options: EngineOptions | None = None):
        self._scene: CompiledScene | None = None
        kind = type(self).__name__
        if not isinstance(config, RemoteRendererConfig):
            raise TypeError(f"{kind} takes an orrb.RemoteRendererConfig, got {type(config).__name__}")
        if options is None:
            options = EngineOptions()
        elif not isinstance(options, EngineOptions):
            raise TypeError(f"{kind} options must be an orrb.engine.EngineOptions, got {type(options).__name__}")
        config.validate()
        self.config = config.copy()
        self._options = options
        self._xml_path = config.resolve(config.model_xml_path)
        self._mapping_path = config.resolve(config.model_mapping_path)
        if renderer_config is None and config.renderer_config_path:
            renderer_config = RendererConfig.load(config.resolve(config.renderer_config_path))
        self._chain = ComponentChain(renderer_config)

    # -- to implement ------------------------------------------------------------------------------
    @abc.abstractmethod
    def _build(self) -> None:
        """Compiles the model with every component's structural edits (sets ``self._scene``),
        binds the drawing side to it and initializes the chain."""

    @abc.abstractmethod
    def render(self, qpos: np.ndarray, seeds: np.ndarray) -> dict[str, np.ndarray]:
        """Renders a checked batch (``qpos`` float64 ``[B, K]``, ``seeds`` uint64 ``[B]``);
        returns every output of the response layout, ``[B, ...]``."""

    @abc.abstractmethod
    def close(self) -> None:
        """Frees the drawing side (idempotent, safe on a half-built engine)."""

    def plan_batch(self, qpos: np.ndarray, seeds: np.ndarray) -> BatchPlan:
        """Allocates a checked batch's outputs and prepares its entries' setup.

        Args:
            qpos: ``float64 [B, K]`` request states (K >= ``columns``).
            seeds: ``uint64 [B]`` one seed per entry.

        Raises:
            RendererError: the engine is closed.
        """
        if self._closed:
            raise RendererError("render() called after close()")
        cfg, n = self.config, qpos.shape[0]
        active = self._chain.active()
        wants_depth = cfg.render_depth or cfg.render_normals or cfg.render_alpha or any(c.needs_depth for c in active)
        arrays = BatchOutputs.allocate(cfg, self._chain.streams(), n, wants_depth)
        context = BatchContext(n)
        scene = self._scene
        setup = EntrySetup(scene.model, scene.data, scene.base, scene.camera_ids, qpos=scene.mapping.apply(qpos),
                           seeds=seeds, active=active, batch=context, streams=arrays.streams, fovy=arrays.fovy)
        return BatchPlan(active, wants_depth, arrays, context, setup)

    def _check_update(self, renderer_config: RendererConfig) -> None:
        """Refuses a chain change the backend cannot draw (before anything changes)."""

    # -- what the engine knows ---------------------------------------------------------------------
    @property
    def model(self) -> mujoco.MjModel:
        """The compiled model (read it; an ``update()`` that rebuilds replaces it)."""
        return self._scene.model

    @property
    def camera_names(self) -> list[str]:
        return list(self.config.camera_names)

    @property
    def columns(self) -> int:
        """How many qpos columns a request needs."""
        return self._scene.mapping.columns

    @property
    def class_names(self) -> list[str]:
        """Segmentation class names by id (0 = background)."""
        return list(self._scene.class_names)

    @property
    def components(self) -> list[Component]:
        """The component chain, in order (a new list of the running components)."""
        return self._chain.components

    @property
    def options(self) -> EngineOptions:
        return self._options

    def renderer_config(self) -> RendererConfig:
        """The running chain as a :class:`RendererConfig` (properties that differ from defaults)."""
        return self._chain.renderer_config()

    def streams(self) -> dict[str, tuple[type, int]]:
        """Auxiliary streams of the enabled components: ``{name: (dtype, k)}``."""
        return self._chain.streams()

    # -- update ------------------------------------------------------------------------------------
    def update(self, renderer_config: RendererConfig) -> None:
        """Merges a renderer config into the running chain.

        Same-named components get the given properties merged in; new names are appended;
        the model is rebuilt only when a structural property changed or a structural
        component was added.

        An update that fails (a property the scene refuses, such as an unknown camera)
        changes nothing: the engine goes on with the chain it had.

        Raises:
            TypeError: not a :class:`RendererConfig`.
            ConfigError: a component name given with another type, a component the
                backend cannot draw, or a property value the scene refuses.
        """
        if not isinstance(renderer_config, RendererConfig):
            raise TypeError(f"update() takes an orrb.RendererConfig, got {type(renderer_config).__name__}")
        self._check_update(renderer_config)
        previous = self._chain.renderer_config()
        # components read their scene's values (base colours, sizes) at update: the base ones,
        # not what the last entry's randomization left in the model
        self._scene.base.restore(self._scene.model)
        try:
            if self._chain.update(renderer_config):
                self._build()
        except BaseException:
            # components may be half-changed: rebuild the chain as it was and the scene on it
            self._chain = ComponentChain(previous)
            self._build()
            raise

    # -- lifecycle ---------------------------------------------------------------------------------
    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()
