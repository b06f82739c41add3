"""Per-entry setup: the model restored to a base snapshot, the entry's qpos and kinematics,
then the component chain with the entry's random streams."""

from __future__ import annotations

import dataclasses

import mujoco
import numpy as np

from orrb.components.base import BatchContext, Component, EntryContext

__all__ = ["BaseState", "EntrySetup"]

# Model arrays components may write per entry; restored from the compiled model before
# every entry so that entries never leak into each other (missing ones are skipped).
ENTRY_ARRAYS = (
    "cam_pos", "cam_quat", "cam_fovy", "cam_mode", "body_pos", "body_quat",
    "geom_rgba", "geom_matid", "geom_group", "geom_size", "geom_pos", "geom_quat", "geom_dataid",
    "site_group", "site_rgba", "site_size", "site_matid",
    "mat_rgba", "mat_emission", "mat_specular", "mat_shininess", "mat_reflectance", "mat_metallic",
    "mat_roughness", "mat_texid", "mat_texrepeat",
    "light_pos", "light_dir", "light_diffuse", "light_ambient", "light_specular", "light_active",
    "light_cutoff", "light_exponent", "light_castshadow", "light_intensity", "light_attenuation",
    "light_mode", "light_type", "light_directional",
)
_HEADLIGHT_FIELDS = ("active", "ambient", "diffuse", "specular")
_MAP_FIELDS = ("znear", "zfar")


@dataclasses.dataclass(frozen=True)
class BaseState:
    """The compiled model's per-entry values, taken once per model (read-only copies).

    Attributes:
        arrays: ``(name, array)`` of every non-empty model array in ``ENTRY_ARRAYS``.
        headlight: ``(field, value)`` of ``vis.headlight``.
        vis_map: ``(field, value)`` of the clip planes in ``vis.map``.
    """

    arrays: tuple[tuple[str, np.ndarray], ...]
    headlight: tuple[tuple[str, np.ndarray], ...]
    vis_map: tuple[tuple[str, float], ...]

    @classmethod
    def snapshot(cls, model: mujoco.MjModel) -> BaseState:
        """Copies ``model``'s per-entry values."""
        def frozen(value) -> np.ndarray:
            copy = np.copy(value)
            copy.flags.writeable = False
            return copy

        arrays = tuple((name, frozen(getattr(model, name))) for name in ENTRY_ARRAYS
                       if hasattr(model, name) and getattr(model, name).size)
        headlight = tuple((f, frozen(getattr(model.vis.headlight, f))) for f in _HEADLIGHT_FIELDS)
        vis_map = tuple((f, float(getattr(model.vis.map, f))) for f in _MAP_FIELDS)
        return cls(arrays, headlight, vis_map)

    def restore(self, model: mujoco.MjModel) -> None:
        """Writes the snapshot back into ``model``."""
        for name, base in self.arrays:
            np.copyto(getattr(model, name), base)
        headlight = model.vis.headlight
        for f, v in self.headlight:
            setattr(headlight, f, v)
        for f, v in self.vis_map:
            setattr(model.vis.map, f, v)


class EntrySetup:
    """Sets the model and data up for one entry of a batch: ``setup(i)`` restores the base
    state, applies ``qpos[i]`` (kinematics only), runs the active components with entry
    ``i``'s random streams and records the cameras' field of view.

    Runs on the engine's setup worker while the previous entry draws, so it holds the model,
    data and the batch's arrays, never the engine.

    Args:
        model, data: what to set up (the engine's; nothing else uses them meanwhile).
        base: the model's base state.
        camera_ids: ``int [C]`` model ids of the rendered cameras.
        qpos: ``float64 [B, nq]`` full model qpos per entry.
        seeds: ``uint64 [B]`` entry seeds.
        active: the enabled components, in chain order.
        batch: the batch's context (components keep their draws there).
        streams: ``{name: [B, k]}`` the components' stream outputs (rows written by ``emit``).
        fovy: ``{camera: float64 [B]}`` written with each entry's field of view (degrees).
    """

    def __init__(self, model: mujoco.MjModel, data: mujoco.MjData, base: BaseState, camera_ids: np.ndarray, *,
                 qpos: np.ndarray, seeds: np.ndarray, active: list[Component], batch: BatchContext,
                 streams: dict[str, np.ndarray], fovy: dict[str, np.ndarray]):
        self._model, self._data, self._base = model, data, base
        self._qpos, self._seeds, self._active = qpos, seeds, active
        self._entry = EntryContext(model, data, streams, camera_ids, batch)
        self._fovy = [(out, cam_id) for out, cam_id in zip(fovy.values(), camera_ids)]

    def __call__(self, i: int) -> None:
        model, data, entry = self._model, self._data, self._entry
        self._base.restore(model)
        data.qpos[:] = self._qpos[i]
        mujoco.mj_kinematics(model, data)
        mujoco.mj_comPos(model, data)  # subtree centres of mass: trackcom/targetbodycom cameras and lights
        mujoco.mj_camlight(model, data)
        entry.begin(i, int(self._seeds[i]))
        for component in self._active:
            entry.rng = np.random.default_rng([entry.seed, component.stream_key])
            component.run(entry)
        entry.kinematics()
        for out, cam_id in self._fovy:
            out[i] = model.cam_fovy[cam_id]
