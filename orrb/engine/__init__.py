"""The in-process render engine: one MuJoCo model, one GL context, a component chain.

Parts, each in its own module:

- ``engine_base``: :class:`~orrb.engine.engine_base.EngineBase`, what every backend shares
  (config, chain, scene facts, ``update``).
- :class:`RenderEngine` (``render_engine``): the orchestration of a batch on OpenGL.
- :class:`EngineOptions` (``options``): threads, chunk sizes, readback (entries per readback
  moves frames between tiles: edge rounding only; the rest never changes outputs).
- ``entry_setup``: :class:`~orrb.engine.entry_setup.BaseState`, a frozen snapshot of the
  model's per-entry values, and :class:`~orrb.engine.entry_setup.EntrySetup`, which sets one
  entry up from it.
- ``camera_scenes``: one ``MjvScene`` per camera and entry group, built per entry.
- ``frames``: :class:`~orrb.engine.frames.FrameReader`, the GL side (tiles, readback,
  depth, segmentation pass), and its :class:`~orrb.engine.frames.TileLayout`.
- ``image_stage``: the components' ``end_batch`` on chunks of drawn entries.
- ``chain``: the component chain (build, merge on update, describe).
- ``compiled_scene``: the compiled model and what derives from it, replaced at once on a rebuild.
- ``outputs``: a batch's response arrays, allocated from the response layout.
- ``modalities``: pure array maths (depth in metres, normals, segmentation classes, alpha).
- ``gl``: low-level GL calls (context class, hardware check, one-blit read, pixel buffers).
- ``gl_post``: post-processing as GL shader passes on the drawn tiles before readback
  (``EngineOptions.gl_post_processing``; numpy's ``end_batch`` otherwise).
- ``warp_backend``: :class:`~orrb.engine.warp_backend.WarpRenderEngine`, the same interface on
  MuJoCo Warp's batch ray tracer (``config.backend == "warp"``, needs ``orrb[warp]``).

:func:`create_engine` builds the engine ``config.backend`` names.
"""

from __future__ import annotations

from orrb.components.base import BatchContext, Frames
from orrb.engine.modalities import linear_depth, normals_from_depth
from orrb.engine.options import EngineOptions
from orrb.engine.render_engine import RenderEngine

__all__ = ["BatchContext", "EngineOptions", "Frames", "RenderEngine", "create_engine", "linear_depth",
           "normals_from_depth"]


def create_engine(config, renderer_config=None, options: EngineOptions | None = None):
    """The render engine ``config.backend`` names: :class:`RenderEngine` for ``"gl"``,
    :class:`~orrb.engine.warp_backend.WarpRenderEngine` for ``"warp"`` (same arguments,
    methods and outputs).

    Raises:
        ValueError: an unknown backend (``config.validate()`` names it and the accepted ones).
        ModuleNotFoundError: ``"warp"`` without ``mujoco_warp`` installed (the message gives
            the pip line).
    """
    config.validate()
    if config.backend == "warp":
        from orrb.engine.warp_backend import WarpRenderEngine

        return WarpRenderEngine(config, renderer_config, options)
    return RenderEngine(config, renderer_config, options)
