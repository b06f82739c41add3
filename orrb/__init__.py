"""orrb: domain-randomized camera images from MuJoCo simulations.

A Python re-creation, on MuJoCo's own renderer, of the OpenAI Remote Rendering
Backend used for Dactyl::

    import orrb
    config = orrb.RemoteRendererConfig()
    config.camera_names = ['vision_cam_left']
    config.model_xml_path = 'dactyl.xml'
    config.model_mapping_path = 'dactyl.mapping'
    config.asset_basedir = orrb.utils.package_relative_path('assets')
    with orrb.LocalRenderer(config) as renderer:
        result = renderer.render_batch({'qpos': qpos, 'seed': 0})
    result['vision_cam_left']   # uint8 [B, H, W, 3]
"""

import importlib as _importlib
import importlib.util as _importlib_util
import os as _os

# MuJoCo picks its GL backend when mujoco.gl_context is first imported; with no
# display the only backend that works headless on Linux is EGL (Mesa's llvmpipe on
# a CPU, the NVIDIA driver on a GPU). A user's own choice always wins.
if "MUJOCO_GL" not in _os.environ:
    _os.environ["MUJOCO_GL"] = "egl"
if _os.environ.get("MUJOCO_GL", "").lower() == "egl":
    _os.environ.setdefault("PYOPENGL_PLATFORM", "egl")

from orrb import utils  # noqa: E402
from orrb._version import __version__, get_renderer_version  # noqa: E402
from orrb.config import RemoteRendererConfig, RendererConfig, RenderSettings  # noqa: E402
from orrb.errors import ConfigError, RendererError  # noqa: E402
from orrb.local import LocalRenderer  # noqa: E402

__all__ = [
    "ConfigError",
    "LocalRenderer",
    "RemoteRenderer",
    "RemoteRendererConfig",
    "RenderSettings",
    "RendererConfig",
    "RendererError",
    "__version__",
    "get_renderer_version",
    "make_sb3_vec",
    "make_vec",
    "utils",
]


def __getattr__(name):
    # The pool (pyzmq, subprocess management) and the env helpers load on first use,
    # so `import orrb` stays light.
    if name == "RemoteRenderer":
        from orrb.pool.client import RemoteRenderer

        return RemoteRenderer
    if name == "make_vec":
        from orrb.envs import make_vec

        return make_vec
    if name == "make_sb3_vec":
        from orrb.wrappers.make import make_sb3_vec  # stable-baselines3 loads when it is called

        return make_sb3_vec
    # Submodules (orrb.wrappers, orrb.scene, ...) as attributes, loaded on first use: importing
    # them here would load MuJoCo, and with it the GL libraries, for `orrb --help`.
    if not name.startswith("_") and _importlib_util.find_spec(f"{__name__}.{name}") is not None:
        return _importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module 'orrb' has no attribute {name!r}")


from orrb.envs.registration import register_envs as _register_envs  # noqa: E402

_register_envs()
