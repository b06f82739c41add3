"""LookAt: turns a camera (or body) every entry to look at a point."""

from __future__ import annotations

import dataclasses

import numpy as np

from orrb.components._shared import mat_to_quat
from orrb.components.base import Component, register
from orrb.components.properties import Properties, prop
from orrb.errors import ConfigError


def look_rotation(eye: np.ndarray, target: np.ndarray) -> np.ndarray:
    """World rotation (3x3, columns = frame axes) of a frame at ``eye`` whose -z points at
    ``target`` with y as close to world +z as possible (world x when looking straight down/up)."""
    forward = target - eye
    forward = forward / max(np.linalg.norm(forward), 1e-12)
    up = np.array([0.0, 0.0, 1.0])
    right = np.cross(forward, up)
    if np.linalg.norm(right) < 1e-9:
        right = np.array([1.0, 0.0, 0.0])
    right /= np.linalg.norm(right)
    y = np.cross(right, forward)
    return np.stack([right, y, -forward], axis=1)


@register
class LookAt(Component):
    """Each entry, turns the ``path`` camera (or body) so that it looks at ``target_offset``.

    ``target_offset`` is a point in the world frame (metres). The camera looks along its
    -z with y up (world z up); a body is turned the same way (its -z towards the point).
    """

    type_name = "LookAt"

    @dataclasses.dataclass(frozen=True)
    class Properties(Properties):
        target_offset: tuple = prop((0.0, 0.0, 0.0), "point to look at (m, world)", kind="vector3",
                                     frame="world")

    def initialize(self, scene):
        scope = scene.scope(self.path, self.where)
        if scope.kind == "camera":
            self._kind, self._id = "camera", int(scope.cameras[0])
        elif scope.kind == "body" and len(scope.bodies) and scope.bodies[0] > 0:
            self._kind, self._id = "body", int(scope.bodies[0])
        else:
            raise ConfigError(f"{self.where}: path must name a camera or a body, got {self.path!r}")
        m = scene.model
        self._parent = int(m.cam_bodyid[self._id] if self._kind == "camera" else m.body_parentid[self._id])

    def run(self, entry):
        entry.kinematics()
        m, d = entry.model, entry.data
        target = np.asarray(self.props.target_offset, dtype=float)
        eye = d.cam_xpos[self._id] if self._kind == "camera" else d.xpos[self._id]
        world = look_rotation(eye, target)
        parent = d.xmat[self._parent].reshape(3, 3)
        if self._kind == "camera":
            # the camera frame is parent * cam_quat
            m.cam_quat[self._id] = mat_to_quat(parent.T @ world)
        else:
            m.body_quat[self._id] = mat_to_quat(parent.T @ world)
        entry.mark_dirty()
