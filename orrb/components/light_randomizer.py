"""LightRandomizer: total scene intensity, per-light weights, spot angles and colours."""

from __future__ import annotations

import dataclasses

import numpy as np

from orrb.components._shared import hsv_to_rgb
from orrb.components.base import Component, register
from orrb.components.lighting_rig import RIG_TAG
from orrb.components.properties import RandomizerProperties, prop

#: Response of the scene's lights: a total scene intensity ``S`` gives the lights a total
#: diffuse colour ``MAX_SCENE_DIFFUSE * S / (S + HALF_SCENE_INTENSITY)`` (MuJoCo's classic
#: renderer sums the lights' diffuse terms and saturates at 1). It rises like
#: ``INTENSITY_TO_DIFFUSE * S`` for dim scenes and compresses bright ones, as an exposure
#: would, so the original's scene ranges, from 1-10 (its dactyl config) to 19-21 (its
#: update_2), all give exposed images: no entry black or saturated.
MAX_SCENE_DIFFUSE = 3.0
HALF_SCENE_INTENSITY = 10.0
#: Diffuse colour per unit of intensity of a dim scene (the slope of the response at 0).
INTENSITY_TO_DIFFUSE = MAX_SCENE_DIFFUSE / HALF_SCENE_INTENSITY


def diffuse_per_intensity(scene_intensity: float) -> float:
    """Diffuse colour per unit of a light's intensity when the scene's total is ``scene_intensity``."""
    return MAX_SCENE_DIFFUSE / (max(scene_intensity, 0.0) + HALF_SCENE_INTENSITY)


#: Specular colour as a fraction of the diffuse colour.
SPECULAR_FRACTION = 0.3


@register
class LightRandomizer(Component):
    """Randomizes the intensity, spot angle and colour of the lights in scope.

    Lights in scope: with an empty ``path``, the heads of the LightingRigs of the chain
    when there are any, otherwise the model's own lights; with a ``path``, the lights of
    that body's subtree or the named light. Only lights active in the entry are lit.

    Per entry: total intensity ``S`` uniform in the scene range; each light a weight ``w``
    uniform in the light range, a spot angle uniform in its range (degrees, the full
    cone: MuJoCo's ``cutoff`` is half of it) and a colour (white, or with
    ``randomize_hue`` HSV(h in [0, 1], s in [0, 0.3], v in [0.9, 1])). A light's
    intensity is ``w * S / sum(w)`` over the active lights, and its diffuse colour
    ``diffuse_per_intensity(S) * intensity * colour`` (specular 0.3 of that): the lights
    share a total diffuse ``3 S / (S + 10)``, which saturates for bright scenes as an
    exposure would (the original's scene ranges reach 19-21).

    Streams with ``emit_values`` (float32; n lights in scope, in model order):
    ``<name>_scene_intensity`` [1], ``<name>_intensity`` [n], ``<name>_spot_angle`` [n],
    ``<name>_color`` [3n].
    """

    type_name = "LightRandomizer"

    @dataclasses.dataclass(frozen=True)
    class Properties(RandomizerProperties):
        min_scene_intensity: float = prop(1.0, "lower bound of the total intensity", low=0.0, span=(0.0, 30.0))
        max_scene_intensity: float = prop(15.0, "upper bound of the total intensity", low=0.0, span=(0.0, 30.0))
        min_light_intensity: float = prop(1.0, "lower bound of a light's weight", low=0.0, span=(0.0, 10.0))
        max_light_intensity: float = prop(3.0, "upper bound of a light's weight", low=0.0, span=(0.0, 10.0))
        min_spotlight_angle: float = prop(27.0, "lower bound of the spot cone angle (degrees, full cone)",
                                          low=0.0, low_open=True, high=180.0, span=(1.0, 120.0))
        max_spotlight_angle: float = prop(33.0, "upper bound of the spot cone angle (degrees, full cone)",
                                          low=0.0, low_open=True, high=180.0, span=(1.0, 120.0))
        randomize_hue: bool = prop(False, "random light colours instead of white")

    def initialize(self, scene):
        scope = scene.scope(self.path, self.where)
        lights = scope.lights
        if not self.path:
            rig = np.array([i for i, n in enumerate(scene.light_names) if RIG_TAG in n], dtype=int)
            if len(rig):
                lights = rig
        self._lights = np.asarray(lights, dtype=int)

    def streams(self):
        if not self.props.emit_values:
            return {}
        n = len(self._lights)
        return {f"{self.name}_scene_intensity": (np.float32, 1), f"{self.name}_intensity": (np.float32, n),
                f"{self.name}_spot_angle": (np.float32, n), f"{self.name}_color": (np.float32, 3 * n)}

    def run(self, entry):
        lights, p, m = self._lights, self.props, entry.model
        n = len(lights)
        rng = entry.rng
        scene_intensity = rng.uniform(p.min_scene_intensity, p.max_scene_intensity)
        weights = rng.uniform(p.min_light_intensity, p.max_light_intensity, n)
        angles = rng.uniform(p.min_spotlight_angle, p.max_spotlight_angle, n)
        hsv = rng.uniform(size=(n, 3)) * np.array([1.0, 0.3, 0.1]) + np.array([0.0, 0.0, 0.9])
        colors = hsv_to_rgb(hsv) if p.randomize_hue else np.ones((n, 3))
        active = m.light_active[lights].astype(bool)
        total = weights[active].sum()
        intensity = np.where(active, weights * scene_intensity / total if total > 0 else 0.0, 0.0)
        diffuse = diffuse_per_intensity(scene_intensity) * intensity[:, None] * colors
        m.light_diffuse[lights] = diffuse
        m.light_specular[lights] = SPECULAR_FRACTION * diffuse
        m.light_intensity[lights] = intensity
        m.light_cutoff[lights] = angles / 2.0
        if p.emit_values:
            entry.emit(f"{self.name}_scene_intensity", [scene_intensity])
            entry.emit(f"{self.name}_intensity", intensity)
            entry.emit(f"{self.name}_spot_angle", angles)
            entry.emit(f"{self.name}_color", colors.ravel())
