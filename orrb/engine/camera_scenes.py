"""``CameraScenes``: one ``MjvScene`` per rendered camera, built from the model and data at once."""

from __future__ import annotations

import mujoco
import numpy as np

from orrb.components.base import HIDDEN_GROUP

__all__ = ["CameraScenes"]


class CameraScenes:
    """The scenes of an entry's cameras. :meth:`build` reads the model and data once per
    entry; afterwards they are free (the next entry can be set up while these scenes draw).

    Args:
        model: the compiled model.
        camera_ids: ``int [C]`` model ids of the cameras, in response order.
        shadows: the shadow flag of every scene, or None for MuJoCo's default.
    """

    def __init__(self, model: mujoco.MjModel, camera_ids: np.ndarray, shadows: bool | None):
        self._camera_ids = camera_ids
        self.scenes = [mujoco.MjvScene(model, maxgeom=max(1000, 2 * (model.ngeom + model.nsite) + 100))
                       for _ in camera_ids]
        if shadows is not None:
            for scene in self.scenes:
                scene.flags[mujoco.mjtRndFlag.mjRND_SHADOW] = shadows
        self._option = mujoco.MjvOption()
        self._option.geomgroup[HIDDEN_GROUP] = 0  # what Hide moved there is not drawn
        self._option.sitegroup[HIDDEN_GROUP] = 0
        self._camera = mujoco.MjvCamera()
        self._camera.type = mujoco.mjtCamera.mjCAMERA_FIXED

    def build(self, model: mujoco.MjModel, data: mujoco.MjData) -> tuple[float, float]:
        """Builds every camera's scene from ``model`` and ``data``; returns the clip planes
        ``(znear, zfar)`` (``vis.map``, units of the extent) they are drawn with."""
        for scene, camera_id in zip(self.scenes, self._camera_ids):
            self._camera.fixedcamid = camera_id
            mujoco.mjv_updateScene(model, data, self._option, None, self._camera, mujoco.mjtCatBit.mjCAT_ALL, scene)
        clip = model.vis.map
        return float(clip.znear), float(clip.zfar)
