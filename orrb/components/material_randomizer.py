"""MaterialRandomizer: random colour, surface and (optionally) procedural texture per geom."""

from __future__ import annotations

import dataclasses

import mujoco
import numpy as np

from orrb.components._shared import (apply_surface, clone_materials, hsv_to_rgb, object_materials,
                                     original_material_name)
from orrb.components.base import Component, prefix_mask, register, split_names
from orrb.components.properties import RandomizerProperties, prop

TEXTURE_TAG = "orrb_texbank:"
_TEX_SIZE = 64
_PATTERNS = ("checker", "stripes", "bars", "noise", "gradient")
_OFFSETS = 4  # pre-shifted copies per pattern (the classic renderer has no texture offset)


def _pattern(kind: str, shift: float, rng: np.random.Generator) -> np.ndarray:
    """``uint8 [S, S, 3]`` grey pattern in [90, 255] (the material colour tints it)."""
    s = _TEX_SIZE
    u = (np.arange(s)[None, :] / s + shift) % 1.0
    v = (np.arange(s)[:, None] / s + shift) % 1.0
    if kind == "checker":
        g = ((np.floor(u * 4) + np.floor(v * 4)) % 2).astype(float)
    elif kind == "stripes":
        g = (np.floor((u + v) * 6) % 2).astype(float) * np.ones_like(v)
    elif kind == "bars":
        g = (np.floor(u * 5) % 2).astype(float) * np.ones_like(v)
    elif kind == "noise":
        coarse = rng.uniform(size=(8, 8))
        g = np.kron(coarse, np.ones((s // 8, s // 8)))
        g = np.roll(g, (int(shift * s), int(shift * s)), axis=(0, 1))
    else:  # gradient
        g = (0.5 - 0.5 * np.cos(2 * np.pi * u)) * np.ones_like(v)
    grey = (90 + 165 * g).astype(np.uint8)
    return np.repeat(grey[..., None], 3, axis=2)


def add_texture_bank(spec: mujoco.MjSpec) -> None:
    """Adds the procedural texture bank (idempotent): ``len(_PATTERNS) * _OFFSETS`` 2D textures,
    each with a material ``orrb_texbank:<pattern><k>`` so the textures are uploaded once."""
    if any(t.name.startswith(TEXTURE_TAG) for t in spec.textures):
        return
    rng = np.random.default_rng(1234)
    for kind in _PATTERNS:
        for k in range(_OFFSETS):
            name = f"{TEXTURE_TAG}{kind}{k}"
            tex = spec.add_texture(name=name, type=mujoco.mjtTexture.mjTEXTURE_2D, width=_TEX_SIZE,
                                   height=_TEX_SIZE, nchannel=3)
            tex.data = _pattern(kind, k / _OFFSETS, rng).tobytes()


@register
class MaterialRandomizer(Component):
    """Random HSV colour, metallic and glossiness for every geom (and site) in scope.

    Objects whose material name starts with a ``blacklist_prefix`` are left alone; when
    ``whitelist_prefix`` is non-empty only objects whose material matches it are
    randomized (objects without a material have the name "", so a whitelist excludes
    them). Every object gets its own material at build time (see
    :mod:`orrb.components._shared`), so objects sharing a material are randomized
    independently with one vectorized write per array. Colour = HSV(uniform, uniform,
    uniform), alpha kept; metallic and glossiness uniform in their ranges, mapped onto the
    classic renderer as documented in :func:`orrb.components._shared.apply_surface`.

    ``randomize_textures``: each object also gets a texture from a bank of procedural
    textures (checker, stripes, bars, noise, gradient; 64x64, uploaded once when the
    model is built) with a tiling uniform in [0.4, 4] per axis; MuJoCo's classic renderer
    has no texture offset, so the offset is emulated by picking one of 4 pre-shifted
    copies of each pattern. Without it, textures of the objects in scope are removed.
    Changing ``randomize_textures`` rebuilds the model (the bank is only built when used).

    Streams with ``emit_values`` (float32; n objects in scope): ``<name>_color`` [3n] RGB,
    ``<name>_metallic`` [n], ``<name>_glossiness`` [n], ``<name>_texture`` [n] (bank index,
    -1 for none), ``<name>_texrepeat`` [2n].
    """

    type_name = "MaterialRandomizer"
    structural = frozenset({"randomize_textures"})

    @dataclasses.dataclass(frozen=True)
    class Properties(RandomizerProperties):
        blacklist_prefix: str = prop("cube", "comma-separated material name prefixes left alone")
        whitelist_prefix: str = prop("", "comma-separated material name prefixes (empty: all)")
        min_metallic: float = prop(0.05, "lower bound of metallic", low=0.0, high=1.0)
        max_metallic: float = prop(0.25, "upper bound of metallic", low=0.0, high=1.0)
        min_glossiness: float = prop(0.0, "lower bound of glossiness", low=0.0, high=1.0)
        max_glossiness: float = prop(1.0, "upper bound of glossiness", low=0.0, high=1.0)
        randomize_textures: bool = prop(False, "pick a procedural texture per object")

    def edit_spec(self, spec):
        clone_materials(spec)
        if self.props.randomize_textures:
            add_texture_bank(spec)

    def initialize(self, scene):
        self._scene = scene
        self._scope = scene.scope(self.path, self.where)
        m = scene.model
        tex_names = [mujoco.mj_id2name(m, mujoco.mjtObj.mjOBJ_TEXTURE, i) or "" for i in range(m.ntex)]
        self._bank = np.array([i for i, n in enumerate(tex_names) if n.startswith(TEXTURE_TAG)], dtype=int)
        self.update({"blacklist_prefix", "whitelist_prefix"})

    def update(self, changed):
        scene, scope = self._scene, self._scope
        m = scene.model
        visible_geoms = scope.geoms[m.geom_group[scope.geoms] < 3]
        visible_sites = scope.sites[m.site_group[scope.sites] < 3]
        mats = object_materials(m, visible_geoms, visible_sites)
        mats = mats[mats >= 0]
        names = [original_material_name(scene.material_names[i]) for i in mats]
        keep = ~prefix_mask(names, split_names(self.props.blacklist_prefix))
        white = split_names(self.props.whitelist_prefix)
        if white:
            keep &= prefix_mask(names, white)
        self._mats = np.unique(mats[keep])

    def streams(self):
        if not self.props.emit_values:
            return {}
        n = len(self._mats)
        return {f"{self.name}_color": (np.float32, 3 * n), f"{self.name}_metallic": (np.float32, n),
                f"{self.name}_glossiness": (np.float32, n), f"{self.name}_texture": (np.float32, n),
                f"{self.name}_texrepeat": (np.float32, 2 * n)}

    def run(self, entry):
        mats, p, m = self._mats, self.props, entry.model
        n = len(mats)
        rng = entry.rng
        hsv = rng.uniform(size=(n, 3))
        metallic = rng.uniform(p.min_metallic, p.max_metallic, n)
        gloss = rng.uniform(p.min_glossiness, p.max_glossiness, n)
        tex_pick = rng.uniform(size=n)
        repeat = rng.uniform(0.4, 4.0, (n, 2))
        rgb = hsv_to_rgb(hsv)
        m.mat_rgba[mats, :3] = rgb
        apply_surface(m, mats, metallic, gloss)
        textured = p.randomize_textures and len(self._bank) > 0
        tex = np.full(n, -1)
        m.mat_texid[mats] = -1
        if textured:
            tex = self._bank[(tex_pick * len(self._bank)).astype(int)]
            m.mat_texid[mats, int(mujoco.mjtTextureRole.mjTEXROLE_RGB)] = tex
            m.mat_texrepeat[mats] = repeat
        if p.emit_values:
            entry.emit(f"{self.name}_color", rgb.ravel())
            entry.emit(f"{self.name}_metallic", metallic)
            entry.emit(f"{self.name}_glossiness", gloss)
            entry.emit(f"{self.name}_texture", np.where(tex >= 0, tex - (self._bank[0] if textured else 0), -1))
            entry.emit(f"{self.name}_texrepeat", repeat.ravel() if textured else np.zeros(2 * n))
