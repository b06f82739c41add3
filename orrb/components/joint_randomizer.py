"""JointRandomizer: random positions for the joints in scope, overriding the request."""

from __future__ import annotations

import dataclasses

import mujoco
import numpy as np

from orrb.components.base import Component, register
from orrb.components.properties import RandomizerProperties


@register
class JointRandomizer(Component):
    """Per entry, every joint in scope (joints of the ``path`` body's subtree, or all):
    a ball joint gets a uniformly random orientation, a limited hinge or slide joint a
    value uniform in its range; free and unlimited joints keep the requested value.

    Streams with ``emit_values``: ``<name>_qpos`` float32 [n], the joint values written
    (4 per ball joint, 1 per hinge/slide; NaN where the request's value was kept).
    """

    type_name = "JointRandomizer"

    @dataclasses.dataclass(frozen=True)
    class Properties(RandomizerProperties):
        pass

    def initialize(self, scene):
        m = scene.model
        scope = scene.scope(self.path, self.where)
        inside = np.zeros(m.nbody, dtype=bool)
        inside[scope.bodies] = True
        joints = np.flatnonzero(inside[m.jnt_bodyid])
        T = mujoco.mjtJoint
        ball = joints[m.jnt_type[joints] == T.mjJNT_BALL]
        scalar = joints[np.isin(m.jnt_type[joints], [T.mjJNT_HINGE, T.mjJNT_SLIDE])]
        self._ball_adr = (m.jnt_qposadr[ball][:, None] + np.arange(4)).ravel()
        self._n_ball = len(ball)
        self._scalar_adr = m.jnt_qposadr[scalar]
        self._limited = m.jnt_limited[scalar].astype(bool)
        self._lo = m.jnt_range[scalar, 0]
        self._hi = m.jnt_range[scalar, 1]

    def streams(self):
        if not self.props.emit_values:
            return {}
        return {f"{self.name}_qpos": (np.float32, 4 * self._n_ball + len(self._scalar_adr))}

    def run(self, entry):
        rng = entry.rng
        q = rng.standard_normal((self._n_ball, 4))
        q /= np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-12)
        u = rng.uniform(size=len(self._scalar_adr))
        values = self._lo + (self._hi - self._lo) * u
        d = entry.data
        d.qpos[self._ball_adr] = q.ravel()
        d.qpos[self._scalar_adr[self._limited]] = values[self._limited]
        entry.mark_dirty()
        if self.props.emit_values:
            entry.emit(f"{self.name}_qpos", np.concatenate([q.ravel(), np.where(self._limited, values, np.nan)]))
