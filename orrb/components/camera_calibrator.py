"""CameraCalibrator: fixed offsets of a camera's position, rotation and fovy."""

from __future__ import annotations

import dataclasses

import numpy as np

from orrb.components._shared import quat_mul, quat_to_mat
from orrb.components.base import Component, register
from orrb.components.properties import Properties, prop


@register
class CameraCalibrator(Component):
    """Offsets ``camera_name`` (or the ``path`` camera) by fixed deltas, every entry.

    ``local_position_delta`` is in the camera's own frame (x right, y up, z backwards;
    metres), ``local_rotation_delta`` (w, x, y, z) rotates the camera in its own frame,
    ``fov_delta`` is added to its vertical field of view (degrees): calibration of a
    simulated camera against a real one by config alone.
    """

    type_name = "CameraCalibrator"

    @dataclasses.dataclass(frozen=True)
    class Properties(Properties):
        camera_name: str = prop("", "camera to calibrate (empty: the path camera, or every camera in scope)")
        local_position_delta: tuple = prop((0.0, 0.0, 0.0), "position offset in the camera frame (m)",
                                           kind="vector3", frame="camera")
        local_rotation_delta: tuple = prop((1.0, 0.0, 0.0, 0.0), "rotation in the camera frame (w, x, y, z)",
                                           kind="quaternion", frame="camera")
        fov_delta: float = prop(0.0, "added to the vertical field of view (degrees)", span=(-20.0, 20.0))

    def initialize(self, scene):
        self._scene = scene
        self.update({"camera_name"})

    def update(self, changed):
        if self.props.camera_name:
            self._cams = np.array([self._scene.camera_id(self.props.camera_name, self.where)])
        else:
            self._cams = self._scene.scope(self.path, self.where).cameras
        q = np.asarray(self.props.local_rotation_delta, dtype=float)
        self._dq = q / max(np.linalg.norm(q), 1e-12)

    def run(self, entry):
        m, p = entry.model, self.props
        for c in self._cams:  # a handful of cameras at most
            rot = quat_to_mat(m.cam_quat[c])
            m.cam_pos[c] = m.cam_pos[c] + rot @ np.asarray(p.local_position_delta)
            m.cam_quat[c] = quat_mul(m.cam_quat[c], self._dq)
            m.cam_fovy[c] = m.cam_fovy[c] + p.fov_delta
        entry.mark_dirty()
