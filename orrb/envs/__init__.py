"""orrb's Gymnasium envs.

- ``OrrbDactylEnv`` (``OrrbDactyl-v0``): Shadow Hand cube reorientation with randomized images.
- ``dactyl_render_config``: the renderer config of an ``OrrbDactyl-v0`` env, for a shared renderer.
- ``make_vec``, ``make_sb3_vec`` (from :mod:`orrb.wrappers.make`): batched vector envs in one call.
"""

from orrb.envs.dactyl import DACTYL_CAMERAS, OrrbDactylEnv, dactyl_render_config
from orrb.wrappers.make import make_sb3_vec, make_vec

__all__ = ["DACTYL_CAMERAS", "OrrbDactylEnv", "dactyl_render_config", "make_sb3_vec", "make_vec"]
