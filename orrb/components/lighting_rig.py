"""LightingRig: spot lights placed around a target each entry; the model's own lights off."""

from __future__ import annotations

import dataclasses

import mujoco
import numpy as np

from orrb.components.base import Component, register
from orrb.components.properties import Properties, prop

# Light names the rig adds: "<component name>:rig_head<i>" (LightRandomizer recognises them).
RIG_TAG = ":rig_head"
# Default per-head diffuse colour when no LightRandomizer follows (split over the heads).
_TOTAL_DIFFUSE = 0.9
# Soft ambient term of the whole rig (added over all heads), so unlit sides are not black.
_TOTAL_AMBIENT = 0.45
_SPECULAR_FRACTION = 0.3


@register
class LightingRig(Component):
    """Replaces the scene's lighting by ``light_head_count`` spot lights around ``target``.

    The lights are added to the model once (``edit_spec``; inactive unless the rig runs),
    so changing ``light_head_count`` rebuilds the model and nothing else does. Each entry
    every head is placed at an azimuth uniform in [0, 360) degrees about the vertical axis
    through ``target``, at a horizontal distance and a height above the target uniform in
    their ranges (metres), and aimed at the target. While the rig runs, the model's own
    lights and the headlight are off and the rig adds a soft ambient term.

    ``cast_shadows`` (not in the original, whose lights always cast soft shadows) is off
    by default: on a CPU (llvmpipe) one shadow-casting light costs about +30 ms per frame,
    up to 5x a plain render; on a GPU it is cheap.

    Without a LightRandomizer after it, each head has diffuse ``0.9 / light_head_count``
    (white), a 35 degree cutoff and a soft falloff.
    """

    type_name = "LightingRig"
    structural = frozenset({"light_head_count"})

    @dataclasses.dataclass(frozen=True)
    class Properties(Properties):
        light_head_count: int = prop(6, "number of spot lights (MuJoCo draws at most 100 lights in all)", low=0,
                                     high=mujoco.mjMAXLIGHT, span=(0, 12))
        min_light_distance: float = prop(1.0, "lower bound of a head's horizontal distance to the target (m)",
                                         low=0.0, span=(0.0, 5.0))
        max_light_distance: float = prop(1.5, "upper bound of a head's horizontal distance to the target (m)",
                                         low=0.0, span=(0.0, 5.0))
        min_light_height: float = prop(0.5, "lower bound of a head's height above the target (m)", span=(-1.0, 3.0))
        max_light_height: float = prop(1.5, "upper bound of a head's height above the target (m)", span=(-1.0, 3.0))
        target: tuple = prop((0.0, 0.0, 0.0), "point the heads aim at (m, world)", kind="vector3",
                              frame="world")
        cast_shadows: bool = prop(False, "heads cast shadows (costly on a CPU: up to 5x a plain render)")

    def edit_spec(self, spec):
        count = self.props.light_head_count
        if count < 0:
            from orrb.errors import ConfigError

            raise ConfigError(f"{self.where}: light_head_count must be >= 0, got {count}")
        for i in range(count):
            light = spec.worldbody.add_light()
            light.name = f"{self.name}{RIG_TAG}{i}"
            light.type = mujoco.mjtLightType.mjLIGHT_SPOT
            light.active = False
            light.castshadow = False
            light.pos = [0.0, 0.0, 3.0]
            light.dir = [0.0, 0.0, -1.0]
            light.cutoff = 35.0
            light.exponent = 1.0
            light.diffuse = [_TOTAL_DIFFUSE / count] * 3
            light.specular = [_SPECULAR_FRACTION * _TOTAL_DIFFUSE / count] * 3
            light.ambient = [_TOTAL_AMBIENT / count] * 3

    def initialize(self, scene):
        names = scene.light_names
        prefix = f"{self.name}{RIG_TAG}"
        self._heads = np.array([i for i, n in enumerate(names) if n.startswith(prefix)], dtype=int)
        mine = np.zeros(len(names), dtype=bool)
        mine[self._heads] = True
        self._others = np.flatnonzero(~mine)

    @property
    def head_ids(self) -> np.ndarray:
        """Light ids of the rig's heads in the compiled model (``int [light_head_count]``)."""
        return self._heads

    def run(self, entry):
        heads, p, m = self._heads, self.props, entry.model
        n = len(heads)
        rng = entry.rng
        azimuth = rng.uniform(0.0, 2 * np.pi, n)
        distance = rng.uniform(p.min_light_distance, p.max_light_distance, n)
        height = rng.uniform(p.min_light_height, p.max_light_height, n)
        target = np.asarray(p.target)
        pos = target + np.stack([distance * np.cos(azimuth), distance * np.sin(azimuth), height], axis=1)
        direction = target - pos
        direction /= np.maximum(np.linalg.norm(direction, axis=1, keepdims=True), 1e-9)
        m.light_pos[heads] = pos
        m.light_dir[heads] = direction
        m.light_active[heads] = 1
        m.light_castshadow[heads] = int(p.cast_shadows)
        m.light_active[self._others] = 0
        m.vis.headlight.active = 0
        entry.mark_dirty()
