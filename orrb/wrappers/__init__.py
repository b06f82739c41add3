"""Wrappers that add orrb's randomized images to Gymnasium and stable-baselines3 envs.

- ``OrrbObservation``: images for one Gymnasium env built on MuJoCo (``Ant-v5``, custom envs).
- ``OrrbDeferredObservation``: the env's own observation plus the state to render in ``info``,
  for a vector wrapper that renders all sub-envs in one batch.
- ``OrrbVectorObservation``: renders all sub-envs of a Gymnasium vector env in one batch per step.
- ``make_vec`` (Gymnasium, ``num_envs``) and ``make_sb3_vec`` (stable-baselines3, ``n_envs``,
  with ``VecMonitor``): the batched vector env in one call.
- ``OrrbVecEnvObservation`` (stable-baselines3 ``VecEnvWrapper``): loaded on first use, so that
  importing orrb does not import torch.
- ``RendererHandle``: a renderer and whether closing its user shuts it down.
"""

from orrb.wrappers.handle import RendererHandle
from orrb.wrappers.make import make_sb3_vec, make_vec
from orrb.wrappers.observation import FREE_CAMERA, OrrbDeferredObservation, OrrbObservation
from orrb.wrappers.render_spec import RenderSpec
from orrb.wrappers.vector import OrrbVectorObservation

__all__ = ["FREE_CAMERA", "OrrbDeferredObservation", "OrrbObservation", "OrrbVecEnvObservation",
           "OrrbVectorObservation", "RenderSpec", "RendererHandle", "make_sb3_vec", "make_vec"]


def __getattr__(name):
    if name == "OrrbVecEnvObservation":
        from orrb.wrappers.sb3 import OrrbVecEnvObservation

        return OrrbVecEnvObservation
    raise AttributeError(f"module 'orrb.wrappers' has no attribute {name!r}")
