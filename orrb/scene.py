"""The scene: loading the MuJoCo model, the joint mapping and the segmentation classes."""

from __future__ import annotations

import os

import mujoco
import numpy as np

from orrb.errors import ConfigError, did_you_mean

__all__ = ["JOINT_WIDTH", "Mapping", "load_spec", "read_mapping", "segmentation_classes"]

#: qpos values per joint type (``int(mujoco.mjtJoint)`` -> width): free 7, ball 4, slide and hinge 1.
JOINT_WIDTH: dict[int, int] = {
    int(mujoco.mjtJoint.mjJNT_FREE): 7,
    int(mujoco.mjtJoint.mjJNT_BALL): 4,
    int(mujoco.mjtJoint.mjJNT_SLIDE): 1,
    int(mujoco.mjtJoint.mjJNT_HINGE): 1,
}


def read_mapping(path: str) -> list[tuple[int, str, int]]:
    """Reads a mapping file: one ``joint_name, index`` per line (blank lines and ``#`` comments skipped).

    Returns:
        ``[(line_number, joint_name, index), ...]`` in file order.

    Raises:
        FileNotFoundError: the file does not exist.
        ConfigError: a malformed line, a negative index or a joint mapped twice (naming file and line).
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"mapping file not found: {path}")
    rows: list[tuple[int, str, int]] = []
    seen: dict[str, int] = {}
    with open(path) as f:
        for lineno, raw in enumerate(f, 1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            parts = [p.strip() for p in line.split(",")]
            if len(parts) != 2:
                raise ConfigError(f"mapping {path}:{lineno}: expected 'joint_name, index', got {line!r}")
            name, index_text = parts
            try:
                index = int(index_text)
            except ValueError:
                raise ConfigError(f"mapping {path}:{lineno}: index {index_text!r} is not an int") from None
            if index < 0:
                raise ConfigError(f"mapping {path}:{lineno}: index must be >= 0, got {index}")
            if name in seen:
                raise ConfigError(f"mapping {path}:{lineno}: joint {name!r} already mapped on line {seen[name]}")
            seen[name] = lineno
            rows.append((lineno, name, index))
    return rows


def load_spec(xml_path: str) -> mujoco.MjSpec:
    """Parses a MuJoCo XML file into an editable spec (meshes resolve as MuJoCo resolves them).

    Raises:
        FileNotFoundError: the file does not exist (the message names it).
        ConfigError: MuJoCo cannot parse it (the message names the file and MuJoCo's reason).
    """
    if not os.path.isfile(xml_path):
        raise FileNotFoundError(f"model XML file not found: {xml_path}")
    try:
        return mujoco.MjSpec.from_file(xml_path)
    except Exception as e:  # mujoco raises ValueError with the parser's message
        raise ConfigError(f"model XML {xml_path}: MuJoCo cannot load it: {e}") from e


def compile_spec(spec: mujoco.MjSpec, xml_path: str) -> mujoco.MjModel:
    try:
        return spec.compile()
    except Exception as e:
        raise ConfigError(f"model XML {xml_path}: MuJoCo cannot compile it: {e}") from e


class Mapping:
    """Where each joint's values sit in a request's qpos, compiled to index arrays.

    The mapping file has one line per joint, ``joint_name, index``; blank lines and
    lines starting with ``#`` are skipped. Joints not in the mapping keep their
    default position (``model.qpos0``).

    Attributes:
        columns: how many qpos columns a request needs (largest index + its width).
        src: ``int [n]`` request columns, gathered in one indexing operation.
        dst: ``int [n]`` model qpos addresses they go to.
    """

    def __init__(self, model: mujoco.MjModel, path: str | None):
        self.model = model
        self.path = path
        if path is None:
            self.src = np.arange(model.nq)
            self.dst = np.arange(model.nq)
            self.columns = model.nq
            quat_starts = [model.jnt_qposadr[j] + (3 if model.jnt_type[j] == mujoco.mjtJoint.mjJNT_FREE else 0)
                           for j in range(model.njnt) if model.jnt_type[j] in (mujoco.mjtJoint.mjJNT_FREE,
                                                                               mujoco.mjtJoint.mjJNT_BALL)]
            self.quat_dst = np.array(quat_starts, dtype=int)
            return
        src, dst, quat_dst, columns = [], [], [], 0
        owner: dict[int, tuple[int, str]] = {}  # request column -> (line, joint) that reads it
        joint_names = [mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_JOINT, j) or "" for j in range(model.njnt)]
        for lineno, name, index in read_mapping(path):
            jid = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_JOINT, name)
            if jid < 0:
                raise ConfigError(
                    f"mapping {path}:{lineno}: the model has no joint {name!r}"
                    f"{did_you_mean(name, joint_names)}"
                )
            jtype = int(model.jnt_type[jid])
            width = JOINT_WIDTH[jtype]
            adr = model.jnt_qposadr[jid]
            for column in range(index, index + width):
                if column in owner:
                    line, other = owner[column]
                    raise ConfigError(f"mapping {path}:{lineno}: joint {name!r} (columns {index}..{index + width - 1}) "
                                      f"overlaps joint {other!r} of line {line} at column {column}; each column "
                                      "drives one joint value")
                owner[column] = (lineno, name)
            src.extend(range(index, index + width))
            dst.extend(range(adr, adr + width))
            if jtype == mujoco.mjtJoint.mjJNT_BALL:
                quat_dst.append(adr)
            elif jtype == mujoco.mjtJoint.mjJNT_FREE:
                quat_dst.append(adr + 3)
            columns = max(columns, index + width)
        if not src:
            raise ConfigError(f"mapping {path}: maps no joint")
        self.src = np.array(src, dtype=int)
        self.dst = np.array(dst, dtype=int)
        self.quat_dst = np.array(quat_dst, dtype=int)
        self.columns = columns

    def apply(self, qpos: np.ndarray) -> np.ndarray:
        """Maps request states ``float [B, >=columns]`` to model qpos ``float64 [B, nq]``.

        Quaternions (ball and free joints) are normalized; an all-zero one becomes identity.
        """
        full = np.tile(self.model.qpos0, (qpos.shape[0], 1))
        full[:, self.dst] = qpos[:, self.src]
        if len(self.quat_dst):
            idx = self.quat_dst[:, None] + np.arange(4)
            quats = full[:, idx]  # [B, nq, 4]
            norms = np.linalg.norm(quats, axis=-1, keepdims=True)
            identity = np.array([1.0, 0.0, 0.0, 0.0])
            quats = np.where(norms > 1e-12, quats / np.where(norms > 1e-12, norms, 1.0), identity)
            full[:, idx] = quats
        return full


def segmentation_classes(model: mujoco.MjModel) -> tuple[np.ndarray, list[str]]:
    """Segmentation class of every geom.

    Every geom whose name has a ``prefix:`` belongs to that prefix's class; the
    distinct prefixes, sorted, are numbered from 1; other geoms are 0. If no geom
    has a prefix, each child body of the world with its subtree is one class,
    numbered from 1 in model order.

    Returns:
        ``(geom_class uint8 [ngeom], names)`` where ``names[k]`` is class ``k``'s name
        (``names[0] == "background"``).
    """
    names = [mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_GEOM, g) or "" for g in range(model.ngeom)]
    prefixes = [n.split(":", 1)[0] if ":" in n else None for n in names]
    distinct = sorted({p for p in prefixes if p})
    geom_class = np.zeros(model.ngeom, dtype=np.uint8)
    if distinct:
        if len(distinct) > 255:
            raise ConfigError(f"{len(distinct)} segmentation classes; at most 255 are supported")
        index = {p: i + 1 for i, p in enumerate(distinct)}
        for g, p in enumerate(prefixes):
            if p:
                geom_class[g] = index[p]
        return geom_class, ["background", *distinct]
    # no prefixes: one class per child body of the world (with its subtree)
    root = np.zeros(model.nbody, dtype=int)
    for b in range(1, model.nbody):
        parent = model.body_parentid[b]
        root[b] = b if parent == 0 else root[parent]
    top = [b for b in range(1, model.nbody) if model.body_parentid[b] == 0]
    top = top[:255]
    index = {b: i + 1 for i, b in enumerate(top)}
    class_names = ["background"] + [mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_BODY, b) or f"body{b}" for b in top]
    for g in range(model.ngeom):
        geom_class[g] = index.get(root[model.geom_bodyid[g]], 0)
    return geom_class, class_names
