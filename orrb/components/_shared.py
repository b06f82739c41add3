"""Helpers shared by several components: per-object material clones, colour and rotation maths.

Material clones
    MuJoCo draws a geom with its material's colour (``mat_rgba``) unless the geom's own
    ``rgba`` differs from the default (0.5, 0.5, 0.5, 1), and geoms often share one
    material. To randomize each geom (and site) independently with vectorized writes into
    ``mat_*`` arrays, :func:`clone_materials` gives every drawn geom and site its own
    material once, at ``edit_spec``: a copy of its material (or, for an object without
    one, a new material holding the object's colour), with the object's ``rgba`` reset to
    the default so that the material's colour is what is drawn. Rendering is unchanged.
    A clone is named ``<original material name>#orrb<k>`` so prefix matching on the
    original's name still works (:func:`original_material_name`).
"""

from __future__ import annotations

import mujoco
import numpy as np

CLONE_TAG = "#orrb"
_DEFAULT_RGBA = np.array([0.5, 0.5, 0.5, 1.0])
_MAT_FIELDS = ("rgba", "emission", "specular", "shininess", "reflectance", "metallic", "roughness",
               "texrepeat", "texuniform")


def clone_materials(spec: mujoco.MjSpec) -> None:
    """Gives every geom and site of ``spec`` its own material (idempotent; see module doc)."""
    if any(CLONE_TAG in m.name for m in spec.materials):
        return
    by_name = {m.name: m for m in spec.materials}
    k = 0
    for obj in list(spec.geoms) + list(spec.sites):
        source = by_name.get(obj.material) if obj.material else None
        clone = spec.add_material(name=f"{obj.material}{CLONE_TAG}{k}")
        k += 1
        if source is not None:
            for field in _MAT_FIELDS:
                setattr(clone, field, getattr(source, field))
            for role, tex in enumerate(source.textures):
                clone.textures[role] = tex
        else:
            clone.specular = 0.5
            clone.shininess = 0.5
            clone.rgba = np.array(obj.rgba)
        if source is None or not np.array_equal(np.asarray(obj.rgba), _DEFAULT_RGBA):
            clone.rgba = np.array(obj.rgba)  # a non-default object colour is what MuJoCo draws
        obj.rgba = _DEFAULT_RGBA.copy()
        obj.material = clone.name


def original_material_name(name: str) -> str:
    """``"cube:letter#orrb12"`` -> ``"cube:letter"``; other names unchanged."""
    return name.split(CLONE_TAG, 1)[0]


def object_materials(model: mujoco.MjModel, geoms: np.ndarray, sites: np.ndarray) -> np.ndarray:
    """Material ids of the given geoms then sites (``int [n]``; -1 where none)."""
    return np.concatenate([model.geom_matid[geoms], model.site_matid[sites]]).astype(int)


_HSV_OFFSETS = np.array([5.0, 3.0, 1.0])


def hsv_to_rgb(hsv: np.ndarray) -> np.ndarray:
    """``float [..., 3]`` HSV in [0, 1] -> RGB in [0, 1] (vectorized).

    Channel c is ``v - v s clip(min(k, 4 - k), 0, 1)`` with ``k = (n_c + 6 h) mod 6`` and
    ``n = (5, 3, 1)`` for (r, g, b): the piecewise-linear hue ramps without branches.
    """
    hsv = np.asarray(hsv, dtype=float)
    h, s, v = hsv[..., 0:1], hsv[..., 1:2], hsv[..., 2:3]
    k = (_HSV_OFFSETS + (h % 1.0) * 6.0) % 6.0
    return v - v * s * np.clip(np.minimum(k, 4.0 - k), 0.0, 1.0)


def rgb_to_hsv(rgb: np.ndarray) -> np.ndarray:
    """``float [..., 3]`` RGB in [0, 1] -> HSV in [0, 1] (vectorized)."""
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    mx = rgb.max(axis=-1)
    mn = rgb.min(axis=-1)
    delta = mx - mn
    safe = np.where(delta > 0, delta, 1.0)
    h = np.where(mx == r, ((g - b) / safe) % 6.0, np.where(mx == g, (b - r) / safe + 2.0, (r - g) / safe + 4.0))
    h = np.where(delta > 0, h / 6.0, 0.0) % 1.0
    s = np.where(mx > 0, delta / np.where(mx > 0, mx, 1.0), 0.0)
    return np.stack([h, s, mx], axis=-1)


def apply_surface(model: mujoco.MjModel, mats: np.ndarray, metallic: np.ndarray, glossiness: np.ndarray) -> None:
    """Maps metallic and glossiness in [0, 1] onto the classic renderer's material model.

    MuJoCo's classic (OpenGL fixed-function) renderer shades with ``specular`` (strength
    of the highlight), ``shininess`` (its tightness, exponent 128 * shininess) and
    ``reflectance`` (planar mirror reflections, an extra render pass: left untouched).
    The mapping: ``shininess = glossiness``; ``specular = 0.1 + 0.5 * metallic +
    0.3 * glossiness`` (metals and glossy surfaces have strong highlights); the diffuse
    colour is scaled by ``1 - 0.4 * metallic`` (metals reflect less diffusely).
    ``mat_metallic`` and ``mat_roughness = 1 - glossiness`` are written too, for
    backends that use them.
    """
    model.mat_shininess[mats] = glossiness
    model.mat_specular[mats] = np.clip(0.1 + 0.5 * metallic + 0.3 * glossiness, 0.0, 1.0)
    model.mat_metallic[mats] = metallic
    model.mat_roughness[mats] = 1.0 - glossiness
    model.mat_rgba[mats, :3] *= (1.0 - 0.4 * metallic)[:, None]


def quat_mul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Hamilton product of ``[..., 4]`` quaternions (w, x, y, z)."""
    aw, ax, ay, az = np.moveaxis(a, -1, 0)
    bw, bx, by, bz = np.moveaxis(b, -1, 0)
    return np.stack([
        aw * bw - ax * bx - ay * by - az * bz,
        aw * bx + ax * bw + ay * bz - az * by,
        aw * by - ax * bz + ay * bw + az * bx,
        aw * bz + ax * by - ay * bx + az * bw,
    ], axis=-1)


def axis_angle_quat(axis: np.ndarray, angle: np.ndarray) -> np.ndarray:
    """Quaternions ``[..., 4]`` for rotations by ``angle`` (radians) about unit ``axis [..., 3]``."""
    half = np.asarray(angle)[..., None] / 2.0
    return np.concatenate([np.cos(half), np.sin(half) * axis], axis=-1)


def mat_to_quat(mat: np.ndarray) -> np.ndarray:
    """A 3x3 rotation matrix (row-major) to a unit quaternion (w, x, y, z)."""
    q = np.empty(4)
    mujoco.mju_mat2Quat(q, np.ascontiguousarray(mat, dtype=np.float64).ravel())
    return q


def quat_to_mat(q: np.ndarray) -> np.ndarray:
    m = np.empty(9)
    mujoco.mju_quat2Mat(m, np.asarray(q, dtype=np.float64))
    return m.reshape(3, 3)


def random_unit_vectors(rng: np.random.Generator, n: int) -> np.ndarray:
    """``float [n, 3]`` uniformly distributed unit vectors (3 normal draws each)."""
    v = rng.standard_normal((n, 3))
    norm = np.linalg.norm(v, axis=1, keepdims=True)
    return np.where(norm > 1e-12, v / np.where(norm > 1e-12, norm, 1.0), np.array([0.0, 0.0, 1.0]))
