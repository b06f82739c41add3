"""The frames of renderer config files: the original renderer's (Unity) and MuJoCo's.

The original renderer rebuilt the MuJoCo scene inside Unity (y up, left-handed): its
``RobotLoader`` copies positions and quaternions verbatim from the XML and then mirrors the
robot's root in x (``localScale.x = -1``), and the scene holding the robot turns MuJoCo's z-up
into Unity's y-up. A world point therefore reads, in Unity's coordinates,
``unity = (-x, z, -y)`` of MuJoCo's ``(x, y, z)`` (its shipped configs aim the light rig at
``(-1.05, 0, -1)``: the table centre ``(1.05, 1, 0)`` of the MuJoCo scene). Vectors written in
that frame convert back with :func:`world_vector_to_mujoco`.

Cameras: after loading, the original turned each camera to look along Unity's +z (MuJoCo
cameras look along their -z) keeping its y up (``RobotLoader.AddCamera``: a ``LookAt``
along the camera's -z), so its camera frame is MuJoCo's turned 180 degrees about y; its
``CameraCalibrator`` exported calibrated rotations to MuJoCo by the same turn. A vector or
rotation given in a camera's own frame converts with :func:`camera_vector_to_mujoco` and
:func:`camera_rotation_to_mujoco`.

Which properties are in which frame is declared once, with the property (``prop(...,
frame="world")`` or ``frame="camera"``); properties that the original applied in a body's
own frame (``TranslateRotateScale``: that frame is built from the MuJoCo XML's own values)
carry no tag and are read as they are. :func:`convert_file` writes a file in MuJoCo's frame
and reports what changed, property by property (``orrb config convert IN OUT``).
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "FRAMES",
    "MUJOCO",
    "UNITY",
    "Change",
    "camera_rotation_to_mujoco",
    "camera_vector_to_mujoco",
    "conversion_report",
    "convert_file",
    "file_frame",
    "to_mujoco",
    "world_rotation_to_mujoco",
    "world_vector_to_mujoco",
]

UNITY = "unity"
MUJOCO = "mujoco"
#: The values of a config file's top-level ``"frame"``; a file without it is in ``UNITY``.
FRAMES = (UNITY, MUJOCO)

#: ``unity = UNITY_FROM_MUJOCO @ mujoco`` for world points and directions (an improper
#: rotation: the original's frame is left-handed).
UNITY_FROM_MUJOCO = np.array([[-1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])
#: The same for vectors in a camera's own frame: the original's cameras are MuJoCo's turned
#: 180 degrees about their y axis (they look along +z, MuJoCo's along -z; y stays up).
CAMERA_UNITY_FROM_MUJOCO = np.diag([-1.0, 1.0, -1.0])


def world_vector_to_mujoco(v) -> tuple[float, float, float]:
    """A world point or direction from the original's frame to MuJoCo's: ``(-x, -z, y)`` (m)."""
    x, y, z = (float(c) for c in v)
    return (-x + 0.0, -z + 0.0, y + 0.0)  # + 0.0: no -0.0 in written files


def camera_vector_to_mujoco(v) -> tuple[float, float, float]:
    """A vector in the original's camera frame (z forward, y up) to MuJoCo's (z backward, y
    up): ``(-x, y, -z)``."""
    x, y, z = (float(c) for c in v)
    return (-x + 0.0, y + 0.0, -z + 0.0)


def _conjugate_quat(q, basis: np.ndarray) -> tuple[float, float, float, float]:
    # A rotation R in the original's coordinates is B^T R B in MuJoCo's (B = basis, orthogonal).
    # For an improper B (det -1) the rotation axis, a pseudovector, maps as det(B) * B^T a.
    w, x, y, z = (float(c) for c in q)
    axis = np.linalg.det(basis) * basis.T @ np.array([x, y, z])
    return (w, *(float(c) + 0.0 for c in axis))


def world_rotation_to_mujoco(q) -> tuple[float, float, float, float]:
    """A rotation (w, x, y, z) about world axes from the original's frame to MuJoCo's."""
    return _conjugate_quat(q, UNITY_FROM_MUJOCO)


def camera_rotation_to_mujoco(q) -> tuple[float, float, float, float]:
    """A rotation (w, x, y, z) in a camera's own frame from the original's to MuJoCo's:
    ``(w, -x, y, -z)``."""
    return _conjugate_quat(q, CAMERA_UNITY_FROM_MUJOCO)


_CONVERTERS = {
    ("world", "vector3"): world_vector_to_mujoco,
    ("world", "quaternion"): world_rotation_to_mujoco,
    ("camera", "vector3"): camera_vector_to_mujoco,
    ("camera", "quaternion"): camera_rotation_to_mujoco,
}

#: What each frame tag means, for reports and docs.
FRAME_TAGS = {
    "world": "a world point or direction: unity (x, y, z) -> mujoco (-x, -z, y)",
    "camera": "in the camera's own frame: the original's cameras look along +z, MuJoCo's along -z",
}


def to_mujoco(frame: str, kind: str, value: Any) -> Any:
    """Converts one property value tagged ``frame`` (``"world"`` or ``"camera"``) of ``kind``
    (``"vector3"`` or ``"quaternion"``) from the original's frame to MuJoCo's."""
    try:
        convert = _CONVERTERS[(frame, kind)]
    except KeyError:
        raise ValueError(f"no conversion for a {kind} property in frame {frame!r}; "
                         f"known: {sorted(_CONVERTERS)}") from None
    return convert(value)


@dataclasses.dataclass(frozen=True)
class Change:
    """One property converted from the original's frame: component, property, values."""

    component: str
    type: str
    property: str
    frame: str
    before: tuple
    after: tuple

    def __str__(self) -> str:
        def fmt(v):
            return "(" + ", ".join(f"{c:g}" for c in v) + ")"

        return (f"{self.component} ({self.type}).{self.property}: {fmt(self.before)} -> {fmt(self.after)} "
                f"[{self.frame}: {FRAME_TAGS[self.frame]}]")


def convert_file(src: str | os.PathLike, dst: str | os.PathLike) -> list[Change]:
    """Writes renderer config ``src`` to ``dst`` in MuJoCo's frame (``"frame": "mujoco"``).

    A file without ``"frame"`` (or with ``"unity"``) is the original renderer's: its vectors
    are converted; a file already in MuJoCo's frame is rewritten unchanged.

    Returns:
        the converted properties, in file order (empty for a file already in MuJoCo's frame
        or one without frame-dependent values).

    Raises:
        FileNotFoundError, orrb.ConfigError: as :meth:`orrb.RendererConfig.load`.
    """
    from orrb.config import RendererConfig

    config = RendererConfig.load(src)
    Path(dst).write_text(config.to_json() + "\n")
    return list(config.conversion)


def file_frame(path: str | os.PathLike) -> str:
    """The frame a renderer config file declares (``"unity"`` when it has no ``"frame"``)."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return UNITY  # reading it as a config reports the problem
    return data.get("frame", UNITY) if isinstance(data, dict) else UNITY


def conversion_report(src: str | os.PathLike, dst: str | os.PathLike, changes: list[Change],
                      source_frame: str) -> str:
    """What ``orrb config convert`` prints: one line per converted property, then a summary."""
    lines = [str(c) for c in changes]
    if source_frame == MUJOCO:
        lines.append(f"{src} is already in the mujoco frame: wrote it unchanged to {dst}")
    else:
        what = f"{len(changes)} propert{'y' if len(changes) == 1 else 'ies'} converted" if changes else \
            "no frame-dependent values to convert"
        lines.append(f"{src} (frame {source_frame}, the original renderer's) -> {dst} (frame mujoco): {what}")
    return "\n".join(lines)
