"""``CompiledScene``: the compiled model and everything derived from it, replaced at once on a rebuild."""

from __future__ import annotations

import dataclasses

import mujoco
import numpy as np

from orrb.config import RenderSettings
from orrb.engine.camera_scenes import CameraScenes
from orrb.engine.chain import ComponentChain
from orrb.engine.entry_setup import BaseState
from orrb.engine.frames import TileLayout
from orrb.errors import ConfigError, did_you_mean
from orrb.scene import Mapping, compile_spec, load_spec, segmentation_classes

__all__ = ["CompiledScene"]


@dataclasses.dataclass(frozen=True)
class CompiledScene:
    """A model compiled with the chain's structural edits, and what the engine derives from it.

    Attributes:
        model: the compiled model (render settings applied, offscreen buffer sized to the tiles).
        data: its data (the engine's; one entry at a time).
        mapping: request qpos columns -> model qpos.
        camera_ids: ``int [C]`` model ids of the rendered cameras, in response order.
        geom_class: ``uint8 [ngeom]`` segmentation class of every geom.
        class_names: segmentation class names by id (0 = background).
        scenes: one scene per rendered camera.
        base: the model's per-entry values before any entry ran.
    """

    model: mujoco.MjModel
    data: mujoco.MjData
    mapping: Mapping
    camera_ids: np.ndarray
    geom_class: np.ndarray
    class_names: list[str]
    scenes: CameraScenes
    base: BaseState

    @classmethod
    def compile(cls, xml_path: str, mapping_path: str | None, chain: ComponentChain, camera_names: list[str],
                settings: RenderSettings, layout: TileLayout) -> CompiledScene:
        """Loads ``xml_path``, applies the chain's structural edits and compiles it.

        Raises:
            FileNotFoundError / ConfigError: a missing or malformed model or mapping file,
                an unknown camera (the message names it and lists the model's cameras).
        """
        spec = load_spec(xml_path)
        chain.edit_spec(spec)
        model = compile_spec(spec, xml_path)
        if settings.msaa_samples is not None:
            model.vis.quality.offsamples = settings.msaa_samples
        if settings.shadow_size is not None:
            model.vis.quality.shadowsize = settings.shadow_size
        # the offscreen framebuffer is sized to the tiles (grown past what the model allows when needed)
        model.vis.global_.offwidth, model.vis.global_.offheight = layout.framebuffer
        mapping = Mapping(model, mapping_path)
        camera_ids = _camera_ids(model, camera_names, xml_path)
        geom_class, class_names = segmentation_classes(model)
        return cls(model, mujoco.MjData(model), mapping, camera_ids, geom_class, class_names,
                   CameraScenes(model, camera_ids, settings.shadows), BaseState.snapshot(model))


def _camera_ids(model: mujoco.MjModel, names: list[str], xml_path: str) -> np.ndarray:
    """``int [C]`` model ids of cameras ``names``; ConfigError names an unknown one."""
    camera_list = [mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_CAMERA, i) or "" for i in range(model.ncam)]
    ids = []
    for name in names:
        cid = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_CAMERA, name)
        if cid < 0:
            raise ConfigError(
                f"unknown camera {name!r}{did_you_mean(name, camera_list)}; the model {xml_path} has cameras {camera_list}"
            )
        ids.append(cid)
    return np.array(ids, dtype=int)
