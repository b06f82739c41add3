"""orrb's Gymnasium envs and the batched-env helper.

- ``OrrbDactylEnv`` (``OrrbDactyl-v0``): Shadow Hand cube reorientation with randomized images.
- ``make_vec``: a vector env whose sub-envs are all rendered with one batch per step.
"""

from orrb.envs.dactyl import DACTYL_CAMERAS, OrrbDactylEnv, dactyl_render_config
from orrb.envs.make import make_vec

__all__ = ["DACTYL_CAMERAS", "OrrbDactylEnv", "dactyl_render_config", "make_vec"]
