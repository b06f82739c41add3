"""CameraProperties: clip planes and vertical field of view of one camera."""

from __future__ import annotations

import dataclasses

from orrb.components.base import Component, register
from orrb.components.properties import Properties, prop
from orrb.errors import ConfigError


@register
class CameraProperties(Component):
    """Sets the ``path`` camera's vertical field of view (degrees) and clip planes (metres).

    MuJoCo has one pair of clip planes for all cameras (``model.vis.map.znear/zfar``, in
    units of the model's extent): they are set for the whole entry, so with several
    rendered cameras the last CameraProperties in the chain sets them for all.
    """

    type_name = "CameraProperties"

    @dataclasses.dataclass(frozen=True)
    class Properties(Properties):
        near_clip: float = prop(0.1, "near clip plane (m; the warp backend does not clip there)", low=0.0,
                                low_open=True, span=(0.001, 1.0))
        far_clip: float = prop(20.0, "far clip plane (m)", low=0.0, low_open=True, span=(1.0, 100.0))
        field_of_view: float = prop(20.0, "vertical field of view (degrees)",
                                    low=0.0, low_open=True, high=180.0, span=(1.0, 120.0))

    def initialize(self, scene):
        scope = scene.scope(self.path, self.where)
        if scope.kind != "camera":
            raise ConfigError(f"{self.where}: path must name a camera, got {self.path!r}; "
                              f"the model's cameras: {scene.camera_list}")
        self._cam = int(scope.cameras[0])
        self._extent = float(scene.model.stat.extent)
        self.update(set())

    def update(self, changed):
        p = self.props
        if not (0 < p.near_clip < p.far_clip):
            raise ConfigError(f"{self.where}: expected 0 < near_clip < far_clip, got {p.near_clip}, {p.far_clip}")
        if not (0 < p.field_of_view < 180):
            raise ConfigError(f"{self.where}: field_of_view must be in (0, 180) degrees, got {p.field_of_view}")

    def run(self, entry):
        p, m = self.props, entry.model
        m.cam_fovy[self._cam] = p.field_of_view
        m.vis.map.znear = p.near_clip / self._extent
        m.vis.map.zfar = p.far_clip / self._extent
