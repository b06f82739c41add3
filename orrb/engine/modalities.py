"""The modality maths: pure array functions from what the GL pass read back to the outputs.

``linear_depth`` turns the depth buffer into metres, ``normals_from_depth`` derives camera-space
normals from depth, ``segmentation_lut`` and ``classes_from_ids`` turn a segmentation pass's id
colours into class ids, ``alpha_from_depth`` marks drawn pixels. None of them touches GL state.
"""

from __future__ import annotations

import mujoco
import numpy as np

__all__ = ["alpha_from_depth", "classes_from_ids", "linear_depth", "normals_from_depth", "segmentation_lut"]


def linear_depth(raw: np.ndarray, znear: float, zfar: float, extent: float, out: np.ndarray) -> np.ndarray:
    """Reversed-Z depth buffer values in [0, 1] (0 = far plane) to metres along the camera axis.

    Args:
        raw: ``float32 [H, W]`` depth buffer values as ``mjr_readPixels`` returns them with
            ``mjDEPTH_ZEROFAR``.
        znear, zfar: the model's clip planes (``vis.map``, in units of the extent) when the
            frame was drawn.
        extent: the model's extent (``stat.extent``, metres).
        out: ``float32`` array of ``raw``'s shape to write into.

    Returns:
        ``out``: metres, 0 where nothing was hit.
    """
    near = np.float32(znear * extent)
    far = np.float32(zfar * extent)
    c = -(far + near) / (far - near)
    d = -(np.float32(2) * far * near) / (far - near)
    c = np.float32(-0.5) * c - np.float32(0.5)  # = near / (far - near) > 0: no division by zero
    d = np.float32(-0.5) * d
    # float32 suffices with reversed Z: at most 1e-7 relative error (0.5 um at 5 m) against float64;
    # in place, without temporaries (this runs for every frame)
    np.add(raw, c, out=out)
    np.divide(d, out, out=out)
    out[raw <= 0] = 0.0
    return out


def segmentation_lut(scene: mujoco.MjvScene, geom_class: np.ndarray) -> np.ndarray:
    """Segment id colour -> class lookup table of one built scene.

    Args:
        scene: a scene built by ``mjv_updateScene`` (segment ids are per scene).
        geom_class: ``uint8 [ngeom]`` segmentation class of every model geom.

    Returns:
        ``uint8 [scene.ngeom + 2]``: entry ``segid + 1`` is the class of the geom drawn with
        that segment id; 0 (background) for everything else.
    """
    geom_type = int(mujoco.mjtObj.mjOBJ_GEOM)
    lut = np.zeros(scene.ngeom + 2, dtype=np.uint8)
    for k in range(scene.ngeom):
        g = scene.geoms[k]
        if g.objtype == geom_type and g.segid >= 0:
            lut[g.segid + 1] = geom_class[g.objid]
    return lut


def classes_from_ids(rgb: np.ndarray, lut: np.ndarray, out: np.ndarray) -> np.ndarray:
    """Class ids of a segmentation pass's id colours.

    Args:
        rgb: ``uint8 [H, W, 3]`` colours of a pass drawn with ``mjRND_SEGMENT | mjRND_IDCOLOR``.
        lut: the scene's :func:`segmentation_lut`.
        out: ``uint8 [H, W]`` to write into.

    Returns:
        ``out``: class ids (0 = background).
    """
    tile = rgb.astype(np.uint32)
    ids = tile[..., 0] | (tile[..., 1] << 8) | (tile[..., 2] << 16)
    out[...] = lut[np.minimum(ids, len(lut) - 1)]
    return out


def alpha_from_depth(depth: np.ndarray, out: np.ndarray) -> np.ndarray:
    """Alpha channel: 255 where geometry was drawn (depth > 0), else 0; written into ``uint8 out``."""
    out[...] = np.where(depth > 0, 255, 0)
    return out


def normals_from_depth(depth: np.ndarray, fovy_deg: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Camera-space unit normals from depth, encoded to [0, 1] as ``(n + 1) / 2``.

    Points are unprojected with the pinhole model MuJoCo renders with (vertical
    field of view ``fovy``, square pixels). Each pixel's tangents are taken towards
    the neighbour (left/right, up/down) whose depth is closer, so normals stay
    exact on flat surfaces up to their edges. Background (depth 0) is all zeros.

    Args:
        depth: ``float32 [B, H, W]`` metres along the camera axis, 0 = nothing hit.
        fovy_deg: ``[B]`` vertical field of view of each entry, degrees.
        out: ``float32 [B, H, W, 3]`` to write into (default: a new array).

    Returns:
        ``float32 [B, H, W, 3]`` (``out`` when given): x right, y up, z towards the camera.
    """
    depth = np.asarray(depth, dtype=np.float64)
    b, h, w = depth.shape
    f = (h / 2.0) / np.tan(np.radians(np.asarray(fovy_deg, dtype=np.float64)) / 2.0)  # [B] pixels
    u = (np.arange(w) + 0.5 - w / 2.0)[None, None, :]
    v = (h / 2.0 - (np.arange(h) + 0.5))[None, :, None]
    inv_f = (1.0 / f)[:, None, None]
    points = np.stack([u * depth * inv_f, v * depth * inv_f, -depth], axis=-1)  # [B, H, W, 3]
    hit = depth > 0

    def tangent(axis: int) -> np.ndarray:
        # forward and backward differences along `axis`, the one with smaller |dz| (and a hit neighbour) wins
        fwd = np.zeros_like(points)
        bwd = np.zeros_like(points)
        fwd_ok = np.zeros_like(hit)
        bwd_ok = np.zeros_like(hit)
        sl = [slice(None)] * 4
        lo, hi = list(sl), list(sl)
        lo[axis], hi[axis] = slice(0, -1), slice(1, None)
        diff = points[tuple(hi)] - points[tuple(lo)]
        both = hit[tuple(hi[:3])] & hit[tuple(lo[:3])]
        fwd[tuple(lo)] = diff
        fwd_ok[tuple(lo[:3])] = both
        bwd[tuple(hi)] = diff
        bwd_ok[tuple(hi[:3])] = both
        fwd_jump = np.where(fwd_ok, np.abs(fwd[..., 2]), np.inf)
        bwd_jump = np.where(bwd_ok, np.abs(bwd[..., 2]), np.inf)
        use_fwd = fwd_jump <= bwd_jump
        return np.where(use_fwd[..., None], fwd, bwd), fwd_ok | bwd_ok

    tx, ok_x = tangent(2)  # along columns: +x
    ty, ok_y = tangent(1)  # along rows: -y
    normals = np.cross(ty, tx)
    norm = np.linalg.norm(normals, axis=-1, keepdims=True)
    valid = hit & ok_x & ok_y & (norm[..., 0] > 0)
    normals = np.where(valid[..., None], normals / np.where(norm > 0, norm, 1.0), np.array([0.0, 0.0, 1.0]))
    # a visible surface faces the camera: n . p < 0
    flip = np.sum(normals * points, axis=-1) > 0
    normals[flip] *= -1
    encoded = np.where(hit[..., None], (normals + 1.0) / 2.0, 0.0)
    if out is None:
        return encoded.astype(np.float32)
    np.copyto(out, encoded, casting="same_kind")
    return out
