"""CameraRandomizer: jitters and/or orbits the cameras in scope, per entry."""

from __future__ import annotations

import dataclasses

import numpy as np

from orrb.components._shared import axis_angle_quat, quat_mul, random_unit_vectors
from orrb.components.base import Component, register
from orrb.components.properties import RandomizerProperties, prop


@register
class CameraRandomizer(Component):
    """Perturbs the pose and vertical field of view of every camera in scope.

    Each entry starts from the camera's model pose. ``Jitter``: fovy plus
    uniform[-fov_radius/2, fov_radius/2] degrees; position plus a per-axis
    uniform[-r/2, r/2] offset (metres, in the camera's parent frame: the world for
    fixed cameras); orientation rotated by uniform[-q/2, q/2] radians about a uniformly
    random axis of the camera's own frame. ``Orbit``: rotation about the vertical axis
    through ``orbit_center`` (parent frame) by uniform[0, 360) degrees. ``Both``: orbit,
    then jitter. The radii are full widths, as in the original.

    Streams with ``emit_values`` (float32, one row per entry, cameras in scope in model
    order): ``<name>_fov_delta`` [n] degrees, ``<name>_position_delta`` [3n] metres,
    ``<name>_rotation`` [4n] (unit axis x, y, z and angle in radians), ``<name>_orbit_angle``
    [n] degrees (0 in Jitter mode).
    """

    type_name = "CameraRandomizer"

    @dataclasses.dataclass(frozen=True)
    class Properties(RandomizerProperties):
        mode: str = prop("Jitter", "Jitter, Orbit or Both", choices=("Jitter", "Orbit", "Both"))
        position_radius: float = prop(0.02, "full width of the per-axis position jitter (m)", low=0.0, span=(0.0, 0.2))
        fov_radius: float = prop(1.0, "full width of the fovy jitter (degrees)", low=0.0, span=(0.0, 10.0))
        quat_radius: float = prop(0.03, "full width of the rotation jitter angle (radians)", low=0.0, span=(0.0, 0.5))
        orbit_center: tuple = prop((0.0, 0.0, 0.0), "point the vertical orbit axis passes through (m)",
                                   kind="vector3", frame="world")

    def initialize(self, scene):
        self._cams = scene.scope(self.path, self.where).cameras

    def streams(self):
        if not self.props.emit_values:
            return {}
        n = len(self._cams)
        return {f"{self.name}_fov_delta": (np.float32, n), f"{self.name}_position_delta": (np.float32, 3 * n),
                f"{self.name}_rotation": (np.float32, 4 * n), f"{self.name}_orbit_angle": (np.float32, n)}

    def run(self, entry):
        cams, p, m = self._cams, self.props, entry.model
        n = len(cams)
        if n == 0:
            return
        rng = entry.rng
        # fixed draws per camera: orbit 1, fov 1, position 3, angle 1, axis 3 (normals)
        orbit_u = rng.uniform(0.0, 360.0, n)
        fov_u = rng.uniform(-0.5, 0.5, n)
        pos_u = rng.uniform(-0.5, 0.5, (n, 3))
        ang_u = rng.uniform(-0.5, 0.5, n)
        axis = random_unit_vectors(rng, n)
        orbit = p.mode in ("Orbit", "Both")
        jitter = p.mode in ("Jitter", "Both")
        pos = m.cam_pos[cams].copy()
        quat = m.cam_quat[cams].copy()
        orbit_deg = np.zeros(n)
        if orbit:
            orbit_deg = orbit_u
            a = np.radians(orbit_u)
            center = np.asarray(p.orbit_center)
            rel = pos - center
            c, s = np.cos(a), np.sin(a)
            pos = center + np.stack([c * rel[:, 0] - s * rel[:, 1], s * rel[:, 0] + c * rel[:, 1], rel[:, 2]], axis=1)
            quat = quat_mul(axis_angle_quat(np.array([0.0, 0.0, 1.0]), a), quat)
        fov_d = fov_u * p.fov_radius if jitter else np.zeros(n)
        pos_d = pos_u * p.position_radius if jitter else np.zeros((n, 3))
        angle = ang_u * p.quat_radius if jitter else np.zeros(n)
        if jitter:
            pos = pos + pos_d
            quat = quat_mul(quat, axis_angle_quat(axis, angle))  # about an axis of the camera's frame
            m.cam_fovy[cams] = m.cam_fovy[cams] + fov_d
        if orbit or jitter:
            m.cam_pos[cams] = pos
            m.cam_quat[cams] = quat
            entry.mark_dirty()
        if p.emit_values:
            entry.emit(f"{self.name}_fov_delta", fov_d)
            entry.emit(f"{self.name}_position_delta", pos_d.ravel())
            entry.emit(f"{self.name}_rotation", np.concatenate([axis, angle[:, None]], axis=1).ravel())
            entry.emit(f"{self.name}_orbit_angle", orbit_deg)
