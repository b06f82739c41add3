"""MaterialFixedHueRandomizer: perturbs calibrated colours around their base; blinking emissive materials."""

from __future__ import annotations

import dataclasses

import numpy as np

from orrb.components._shared import (apply_surface, clone_materials, hsv_to_rgb, object_materials,
                                     original_material_name, rgb_to_hsv)
from orrb.components.base import Component, prefix_mask, register, split_names
from orrb.components.properties import RandomizerProperties, prop


@register
class MaterialFixedHueRandomizer(Component):
    """Randomizes colours near their calibrated base, per geom (and site) in scope.

    An object is selected when its material name starts with a ``material_prefix`` and
    with no ``material_blacklist_prefix``; every object has its own material (see
    :mod:`orrb.components._shared`), so objects sharing a material vary independently.
    With base colour (h0, s0, v0) and base emission e0 (MuJoCo's ``emission``, a multiple
    of the colour, so the glow is tinted by the new hue): hue uniform in
    [h0 - hue_radius, h0 + hue_radius] wrapped to [0, 1); saturation uniform in
    [max(min_saturation, s0 - saturation_radius), min(max_saturation, s0 + saturation_radius)];
    value likewise; alpha kept; metallic and glossiness uniform in their absolute ranges
    (mapped as :func:`orrb.components._shared.apply_surface` documents). An emissive object
    (e0 > 0) glows with probability ``emission_probability`` with emission uniform in
    [max(min_emission, e0 - emission_radius), min(max_emission, e0 + emission_radius)]
    and is dark (emission 0) otherwise: blinking LEDs.

    Streams with ``emit_values`` (float32; n selected objects): ``<name>_hsv`` [3n],
    ``<name>_metallic`` [n], ``<name>_glossiness`` [n], ``<name>_emission`` [n].
    """

    type_name = "MaterialFixedHueRandomizer"

    @dataclasses.dataclass(frozen=True)
    class Properties(RandomizerProperties):
        material_prefix: str = prop("cube", "comma-separated material name prefixes to randomize")
        material_blacklist_prefix: str = prop("", "comma-separated material name prefixes left alone")
        hue_radius: float = prop(0.02, "hue half-range around the base hue (hue in [0, 1))", low=0.0, span=(0.0, 0.5))
        saturation_radius: float = prop(0.15, "saturation half-range around the base", low=0.0, span=(0.0, 1.0))
        value_radius: float = prop(0.15, "value half-range around the base", low=0.0, span=(0.0, 1.0))
        emission_radius: float = prop(0.0, "emission half-range around the base", low=0.0, span=(0.0, 10.0))
        min_saturation: float = prop(0.5, "lower clamp of saturation", low=0.0, high=1.0)
        max_saturation: float = prop(1.0, "upper clamp of saturation", low=0.0, high=1.0)
        min_value: float = prop(0.5, "lower clamp of value", low=0.0, high=1.0)
        max_value: float = prop(1.0, "upper clamp of value", low=0.0, high=1.0)
        min_metallic: float = prop(0.05, "lower bound of metallic", low=0.0, high=1.0)
        max_metallic: float = prop(0.15, "upper bound of metallic", low=0.0, high=1.0)
        min_glossiness: float = prop(0.05, "lower bound of glossiness", low=0.0, high=1.0)
        max_glossiness: float = prop(0.15, "upper bound of glossiness", low=0.0, high=1.0)
        min_emission: float = prop(0.0, "lower clamp of emission", low=0.0, span=(0.0, 10.0))
        max_emission: float = prop(0.0, "upper clamp of emission", low=0.0, span=(0.0, 10.0))
        emission_probability: float = prop(0.25, "probability that an emissive material glows", low=0.0, high=1.0)

    def edit_spec(self, spec):
        clone_materials(spec)

    def initialize(self, scene):
        self._scene = scene
        self._scope = scene.scope(self.path, self.where)
        self.update({"material_prefix", "material_blacklist_prefix"})

    def update(self, changed):
        scene, scope = self._scene, self._scope
        m = scene.model
        mats = object_materials(m, scope.geoms, scope.sites)
        mats = mats[mats >= 0]
        names = [original_material_name(scene.material_names[i]) for i in mats]
        keep = prefix_mask(names, split_names(self.props.material_prefix))
        keep &= ~prefix_mask(names, split_names(self.props.material_blacklist_prefix))
        self._mats = np.unique(mats[keep])
        self._base_hsv = rgb_to_hsv(m.mat_rgba[self._mats, :3].astype(np.float64))
        self._base_emission = m.mat_emission[self._mats].astype(np.float64)

    def streams(self):
        if not self.props.emit_values:
            return {}
        n = len(self._mats)
        return {f"{self.name}_hsv": (np.float32, 3 * n), f"{self.name}_metallic": (np.float32, n),
                f"{self.name}_glossiness": (np.float32, n), f"{self.name}_emission": (np.float32, n)}

    def run(self, entry):
        mats, p, m = self._mats, self.props, entry.model
        n = len(mats)
        rng = entry.rng
        u = rng.uniform(size=(n, 7))  # hue, saturation, value, metallic, glossiness, glow?, emission
        h0, s0, v0 = self._base_hsv[:, 0], self._base_hsv[:, 1], self._base_hsv[:, 2]

        def between(lo, hi, t):
            hi = np.maximum(lo, hi)
            return lo + (hi - lo) * t

        hue = (h0 + p.hue_radius * (2 * u[:, 0] - 1)) % 1.0
        sat = between(np.maximum(p.min_saturation, s0 - p.saturation_radius),
                      np.minimum(p.max_saturation, s0 + p.saturation_radius), u[:, 1])
        val = between(np.maximum(p.min_value, v0 - p.value_radius),
                      np.minimum(p.max_value, v0 + p.value_radius), u[:, 2])
        metallic = between(p.min_metallic, p.max_metallic, u[:, 3])
        gloss = between(p.min_glossiness, p.max_glossiness, u[:, 4])
        e0 = self._base_emission
        glow = between(np.maximum(p.min_emission, e0 - p.emission_radius),
                       np.minimum(p.max_emission, e0 + p.emission_radius), u[:, 6])
        emission = np.where(e0 > 0, np.where(u[:, 5] < p.emission_probability, glow, 0.0), glow)
        hsv = np.stack([hue, sat, val], axis=1)
        m.mat_rgba[mats, :3] = hsv_to_rgb(hsv)
        apply_surface(m, mats, metallic, gloss)
        m.mat_emission[mats] = emission
        if p.emit_values:
            entry.emit(f"{self.name}_hsv", hsv.ravel())
            entry.emit(f"{self.name}_metallic", metallic)
            entry.emit(f"{self.name}_glossiness", gloss)
            entry.emit(f"{self.name}_emission", emission)
