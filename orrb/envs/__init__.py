"""orrb's Gymnasium envs.

- ``OrrbDactylEnv`` (``OrrbDactyl-v0``): Shadow Hand cube reorientation with randomized images.
- ``dactyl_render_config``: the renderer config of an ``OrrbDactyl-v0`` env, for a shared renderer.
- ``make_vec``, ``make_sb3_vec`` (from :mod:`orrb.wrappers.make`): batched vector envs in one call.

The names load on first use (module ``__getattr__``): ``import orrb`` registers the envs
through ``orrb.envs.registration`` without importing MuJoCo, so ``orrb --help`` works even
where MuJoCo's GL libraries are missing.
"""

from __future__ import annotations

import importlib

__all__ = ["DACTYL_CAMERAS", "OrrbDactylEnv", "dactyl_render_config", "make_sb3_vec", "make_vec"]

_WHERE = {
    "DACTYL_CAMERAS": "orrb.envs.dactyl",
    "OrrbDactylEnv": "orrb.envs.dactyl",
    "dactyl_render_config": "orrb.envs.dactyl",
    "make_sb3_vec": "orrb.wrappers.make",
    "make_vec": "orrb.wrappers.make",
}


def __getattr__(name: str):
    if name in _WHERE:
        value = getattr(importlib.import_module(_WHERE[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'orrb.envs' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
