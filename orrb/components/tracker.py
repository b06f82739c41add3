"""Tracker: screen position and tight bounding box of tracked objects, per camera."""

from __future__ import annotations

import dataclasses

import mujoco
import numpy as np

from orrb.components.base import Component, register, split_names
from orrb.components.properties import Properties, prop
from orrb.errors import ConfigError, did_you_mean

_VISIBLE_GROUPS = 3  # the engine draws geom groups 0, 1, 2 (MuJoCo's default mjvOption)


_CORNER_SIGNS = np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)], dtype=float)

# Half-extents of a primitive's bounding box as a linear map of its geom_size: half = A @ size.
_T = mujoco.mjtGeom
_HALF_EXTENT = {  # keyed by the type's int value (model.geom_type holds ints)
    int(_T.mjGEOM_BOX): np.eye(3),
    int(_T.mjGEOM_ELLIPSOID): np.eye(3),
    int(_T.mjGEOM_SPHERE): np.array([[1.0, 0, 0], [1, 0, 0], [1, 0, 0]]),
    int(_T.mjGEOM_CAPSULE): np.array([[1.0, 0, 0], [1, 0, 0], [1, 1, 0]]),
    int(_T.mjGEOM_CYLINDER): np.array([[1.0, 0, 0], [1, 0, 0], [0, 1, 0]]),
}


def _geom_points(model: mujoco.MjModel, g: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Points in geom ``g``'s frame whose projections bound its drawn shape, as
    ``fixed + signs * (A @ geom_size[g])`` so that they follow a size changed per entry:
    ``(fixed [k, 3], signs [k, 3], A [3, 3])``.

    Boxes: the 8 corners (exact). Meshes: the mesh's vertices (exact; fixed). Spheres,
    capsules, cylinders and ellipsoids: the corners of their bounding box (a slightly
    loose box). Planes and others: the centre only.
    """
    t = int(model.geom_type[g])
    if t in _HALF_EXTENT:
        return np.zeros((8, 3)), _CORNER_SIGNS, _HALF_EXTENT[t]
    if t == int(_T.mjGEOM_MESH):
        mid = model.geom_dataid[g]
        start, count = model.mesh_vertadr[mid], model.mesh_vertnum[mid]
        vertices = model.mesh_vert[start:start + count].astype(np.float64)
        return vertices, np.zeros_like(vertices), np.zeros((3, 3))
    return np.zeros((1, 3)), np.zeros((1, 3)), np.zeros((3, 3))


@register
class Tracker(Component):
    """Emits where tracked objects appear in listed cameras, per entry.

    For every camera in ``camera_names`` (rendered or not) and every tracked object
    (a body, geom or site name; the original's ``(primitive)`` suffix is ignored):

    - ``tracker_<alias>_X_<camera>``: float32 [2], the object's origin (body, geom or
      site frame origin; a cube's centre) in normalized image coordinates: x right,
      y down, (0, 0) the top-left corner, (1, 1) the bottom-right; outside [0, 1] when
      off-screen.
    - ``tracker_<alias>_X_<camera>_bbox``: float32 [4] ``[x_min, x_max, y_min, y_max]``,
      the tight box of the object's drawn geometry. A geom or site name stands for its
      body; the box covers every drawn geom (groups 0-2, not hidden, alpha > 0) of that
      body's subtree: the cube's box covers its core, face and letter geoms, like its
      segmentation mask. Boxes and meshes project exactly (corners, vertices); other
      primitives through their bounding box, at their sizes in the entry (as a
      TranslateRotateScale earlier in the chain scales them). Geoms hidden by a Hide
      component earlier in the chain do not count.

    Both are NaN where they have no image position: the origin, or any point of the
    box, behind the camera (on or behind its image plane), where a pinhole projection
    would mirror it into the image.

    Projections follow MuJoCo's pinhole model (vertical fovy, square pixels, the
    camera looking along its -z with y up) and see the camera as perturbed by the
    components before the tracker. Aliases pair with names in order; a name without an
    alias uses its own name.
    """

    type_name = "Tracker"

    @dataclasses.dataclass(frozen=True)
    class Properties(Properties):
        camera_names: str = prop("", "comma-separated cameras to track in")
        tracked_object_names: str = prop("", "comma-separated body, geom or site names")
        tracked_object_aliases: str = prop("", "comma-separated aliases used in stream names")

    def initialize(self, scene):
        self._scene = scene
        self.update({"camera_names", "tracked_object_names", "tracked_object_aliases"})

    def update(self, changed):
        scene, m = self._scene, self._scene.model
        self._cam_names = split_names(self.props.camera_names)
        self._cam_ids = np.array([scene.camera_id(name, self.where) for name in self._cam_names], dtype=int)
        names = [n[: -len("(primitive)")] if n.endswith("(primitive)") else n
                 for n in split_names(self.props.tracked_object_names)]
        aliases = split_names(self.props.tracked_object_aliases)
        self._objects = []
        for k, name in enumerate(names):
            alias = aliases[k] if k < len(aliases) else name
            origin = self._resolve(name)
            body = {"body": lambda i: i, "geom": lambda i: m.geom_bodyid[i], "site": lambda i: m.site_bodyid[i]}[
                origin[0]](origin[1])
            bodies = np.zeros(m.nbody, dtype=bool)
            bodies[scene.subtree_bodies(int(body))] = True
            geoms = np.flatnonzero(bodies[m.geom_bodyid] & scene.scene_geoms)
            parts = [_geom_points(m, g) for g in geoms]
            owner = np.concatenate([np.full(len(p[0]), i) for i, p in enumerate(parts)]) if parts else np.zeros(0, int)
            fixed = np.concatenate([p[0] for p in parts]) if parts else np.zeros((0, 3))
            signs = np.concatenate([p[1] for p in parts]) if parts else np.zeros((0, 3))
            extent = np.stack([p[2] for p in parts]) if parts else np.zeros((0, 3, 3))  # per geom
            self._objects.append((alias, origin, geoms, owner, (fixed, signs, extent)))

    def _resolve(self, name: str) -> tuple[str, int]:
        m = self._scene.model
        for kind, objtype in (("body", mujoco.mjtObj.mjOBJ_BODY), ("geom", mujoco.mjtObj.mjOBJ_GEOM),
                              ("site", mujoco.mjtObj.mjOBJ_SITE)):
            i = mujoco.mj_name2id(m, objtype, name)
            if i >= 0:
                return kind, i
        candidates = [n for n in self._scene.body_names + self._scene.geom_names + self._scene.site_names if n]
        raise ConfigError(f"{self.where}: tracked object {name!r} names no body, geom or site"
                          f"{did_you_mean(name, candidates)}")

    def streams(self):
        out = {}
        for alias, *_ in self._objects:
            for cam in self._cam_names:
                out[f"tracker_{alias}_X_{cam}"] = (np.float32, 2)
                out[f"tracker_{alias}_X_{cam}_bbox"] = (np.float32, 4)
        return out

    def run(self, entry):
        if not len(self._cam_ids):
            return  # no camera to track in: no streams
        entry.kinematics()
        m, d = entry.model, entry.data
        w, h = self._scene.width, self._scene.height
        cams = self._cam_ids
        cam_pos, cam_mat = d.cam_xpos[cams], d.cam_xmat[cams].reshape(-1, 3, 3)
        fovy = m.cam_fovy[cams]
        for alias, (kind, idx), geoms, owner, (fixed, signs, extent) in self._objects:
            if kind == "body":
                origin = d.xpos[idx]
            elif kind == "geom":
                origin = d.geom_xpos[idx]
            else:
                origin = d.site_xpos[idx]
            drawn = (m.geom_group[geoms] < _VISIBLE_GROUPS) & (m.geom_rgba[geoms, 3] > 0)
            matid = m.geom_matid[geoms]
            drawn &= np.where(matid >= 0, m.mat_rgba[np.maximum(matid, 0), 3] > 0, True)
            keep = drawn[owner]
            gid = geoms[owner[keep]]
            half = np.einsum("gij,gj->gi", extent, m.geom_size[geoms])  # [geoms, 3] at this entry's sizes
            local = fixed[keep] + signs[keep] * half[owner[keep]]
            pts = d.geom_xpos[gid] + np.einsum("nij,nj->ni", d.geom_xmat[gid].reshape(-1, 3, 3), local)
            x, y = self._project(np.vstack([origin[None], pts]), cam_pos, cam_mat, fovy, w, h)  # [C, 1 + n] each
            uv = np.stack([x[:, 0], y[:, 0]], axis=1)
            if x.shape[1] > 1:
                x, y = x[:, 1:], y[:, 1:]
            boxes = np.stack([x.min(axis=1), x.max(axis=1), y.min(axis=1), y.max(axis=1)], axis=1)
            for k, cam in enumerate(self._cam_names):
                entry.emit(f"tracker_{alias}_X_{cam}", uv[k])
                entry.emit(f"tracker_{alias}_X_{cam}_bbox", boxes[k])

    @staticmethod
    def _project(points: np.ndarray, cam_pos: np.ndarray, cam_mat: np.ndarray, fovy: np.ndarray, w: int, h: int):
        """World points ``[n, 3]`` -> normalized image coordinates ``(x, y)``, each ``[C, n]``
        (x right, y down) in ``C`` cameras (positions ``[C, 3]``, frames ``[C, 3, 3]``, fovy
        ``[C]`` degrees)."""
        c = len(cam_pos)
        axes = cam_mat.transpose(0, 2, 1).reshape(3 * c, 3)  # rows: each camera's x, y, z axis in world
        rel = (axes @ points.T - np.einsum("cij,ci->cj", cam_mat, cam_pos).reshape(3 * c, 1)).reshape(c, 3, -1)
        depth = -rel[:, 2]  # the camera looks along its -z, y up
        # behind the camera (or on its plane) a point has no image position: NaN, not a mirrored one
        f = ((h / 2.0) / np.tan(np.radians(fovy) / 2.0))[:, None] / np.where(depth > 1e-9, depth, np.nan)
        return 0.5 + rel[:, 0] * f / w, 0.5 - rel[:, 1] * f / h
