"""Wrappers that add orrb's randomized images to Gymnasium and stable-baselines3 envs.

- ``OrrbObservation``: images for one Gymnasium env built on MuJoCo (``Ant-v5``, custom envs).
- ``OrrbVectorObservation``: renders all sub-envs of a Gymnasium vector env in one batch per step.
- ``OrrbVecEnvObservation`` (stable-baselines3 ``VecEnvWrapper``), ``make_sb3_vec``: the same
  for SB3; loaded on first use so that importing orrb does not import torch.
"""

from orrb.wrappers.observation import FREE_CAMERA, OrrbObservation
from orrb.wrappers.render_spec import RenderSpec
from orrb.wrappers.vector import OrrbVectorObservation

__all__ = ["FREE_CAMERA", "OrrbObservation", "OrrbVecEnvObservation", "OrrbVectorObservation", "RenderSpec",
           "make_sb3_vec"]


def __getattr__(name):
    if name in ("OrrbVecEnvObservation", "make_sb3_vec"):
        from orrb.wrappers import sb3

        return getattr(sb3, name)
    raise AttributeError(f"module 'orrb.wrappers' has no attribute {name!r}")
