"""``CameraScenes``: one ``MjvScene`` per rendered camera and entry group, built from the model and data at once."""

from __future__ import annotations

import mujoco
import numpy as np

from orrb.components.base import HIDDEN_GROUP

__all__ = ["CameraScenes"]


class CameraScenes:
    """The scenes of an entry's cameras, one set per entry group (the entries drawn into one
    readback keep their scenes until it is read). :meth:`build` reads the model and data once
    per entry; afterwards they are free (the next entry can be set up while these scenes draw).

    Args:
        model: the compiled model.
        camera_ids: ``int [C]`` model ids of the cameras, in response order.
        shadows: the shadow flag of every scene, or None for MuJoCo's default.
    """

    def __init__(self, model: mujoco.MjModel, camera_ids: np.ndarray, shadows: bool | None):
        self._camera_ids = camera_ids
        self._model = model
        self._shadows = shadows
        self._sets: dict[int, list[mujoco.MjvScene]] = {}
        self._option = mujoco.MjvOption()
        self._option.geomgroup[HIDDEN_GROUP] = 0  # what Hide moved there is not drawn
        self._option.sitegroup[HIDDEN_GROUP] = 0
        self._camera = mujoco.MjvCamera()
        self._camera.type = mujoco.mjtCamera.mjCAMERA_FIXED

    def scenes(self, group: int = 0) -> list[mujoco.MjvScene]:
        """The scenes of entry group ``group``, one per camera (made on first use)."""
        scenes = self._sets.get(group)
        if scenes is None:
            model = self._model
            scenes = [mujoco.MjvScene(model, maxgeom=max(1000, 2 * (model.ngeom + model.nsite) + 100))
                      for _ in self._camera_ids]
            if self._shadows is not None:
                for scene in scenes:
                    scene.flags[mujoco.mjtRndFlag.mjRND_SHADOW] = self._shadows
            self._sets[group] = scenes
        return scenes

    def build(self, model: mujoco.MjModel, data: mujoco.MjData, group: int = 0) -> tuple[float, float]:
        """Builds every camera's scene of entry group ``group`` from ``model`` and ``data``;
        returns the clip planes ``(znear, zfar)`` (``vis.map``, units of the extent) they are
        drawn with."""
        for scene, camera_id in zip(self.scenes(group), self._camera_ids):
            self._camera.fixedcamid = camera_id
            mujoco.mjv_updateScene(model, data, self._option, None, self._camera, mujoco.mjtCatBit.mjCAT_ALL, scene)
        clip = model.vis.map
        return float(clip.znear), float(clip.zfar)
