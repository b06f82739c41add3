"""TranslateRotateScale: offsets a body's or camera's pose and scales its geoms, for rendering only."""

from __future__ import annotations

import dataclasses

import numpy as np

from orrb.components._shared import quat_mul
from orrb.components.base import Component, register
from orrb.components.properties import Properties, prop
from orrb.errors import ConfigError


@register
class TranslateRotateScale(Component):
    """Offsets the ``path`` body's or camera's pose and scales the body's geoms.

    Position plus ``translate`` (metres, parent frame), orientation times ``rotate``
    (w, x, y, z), and the body's own geoms (not its children's) drawn with their sizes
    and offsets multiplied per axis by ``scale``. Primitive geoms scale exactly; a mesh's
    vertices are fixed in the compiled model, so meshes are moved but keep their size.
    Rendering only: the engine never steps physics.
    """

    type_name = "TranslateRotateScale"

    @dataclasses.dataclass(frozen=True)
    class Properties(Properties):
        translate: tuple = prop((0.0, 0.0, 0.0), "position offset (m, parent frame)", kind="vector3")
        rotate: tuple = prop((1.0, 0.0, 0.0, 0.0), "orientation offset (w, x, y, z)", kind="quaternion")
        scale: tuple = prop((1.0, 1.0, 1.0), "per-axis scale of the body's geoms", kind="vector3")

    def initialize(self, scene):
        scope = scene.scope(self.path, self.where)
        m = scene.model
        if scope.kind == "camera":
            self._kind, self._id = "camera", int(scope.cameras[0])
            self._geoms = np.zeros(0, dtype=int)
        elif scope.kind == "body" and scope.bodies[0] > 0:
            self._kind, self._id = "body", int(scope.bodies[0])
            self._geoms = np.flatnonzero((m.geom_bodyid == self._id) & scene.scene_geoms)
        else:
            raise ConfigError(f"{self.where}: path must name a body or a camera, got {self.path!r}")

    def run(self, entry):
        m, p = entry.model, self.props
        q = np.asarray(p.rotate, dtype=float)
        q /= max(np.linalg.norm(q), 1e-12)
        if self._kind == "camera":
            m.cam_pos[self._id] += np.asarray(p.translate)
            m.cam_quat[self._id] = quat_mul(m.cam_quat[self._id], q)
        else:
            m.body_pos[self._id] += np.asarray(p.translate)
            m.body_quat[self._id] = quat_mul(m.body_quat[self._id], q)
            scale = np.asarray(p.scale)
            if np.any(scale != 1.0) and len(self._geoms):
                m.geom_size[self._geoms] *= scale
                m.geom_pos[self._geoms] *= scale
        entry.mark_dirty()
