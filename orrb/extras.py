"""Optional dependencies: which ``pip install`` line brings each one.

orrb's own requirements cover rendering, the CLI and ``OrrbDactyl-v0``; the rest comes with an
extra (the README's "Which extra do I need" table):

- ``mujoco-envs``: ``gymnasium[mujoco]`` (imageio), for Gymnasium's MuJoCo envs (``Ant-v5``, ...);
- ``rl``: stable-baselines3 (with torch) and TensorBoard;
- ``warp``: ``mujoco-warp`` (with ``warp-lang``), for ``RemoteRendererConfig.backend = "warp"``;
- ``ray``: Ray, for render servers and datasets on a Ray cluster (``orrb.ray``);
- ``tune``: Starlette, uvicorn and websockets, for ``orrb tune`` (:mod:`orrb.tune`);
- ``test``: all of them, pytest and Playwright (the browser tests drive Debian's ``chromium``).

``import_optional`` imports a module or fails with the line to run::

    sb3_vec_env = import_optional("stable_baselines3.common.vec_env", "orrb.make_sb3_vec")
"""

from __future__ import annotations

import importlib
import os
import shlex
import shutil
import sys
from types import ModuleType

__all__ = ["EXTRAS", "import_optional", "install_line"]

# top-level module -> the extra that installs it
EXTRAS: dict[str, str] = {
    "stable_baselines3": "rl",
    "torch": "rl",
    "tensorboard": "rl",
    "imageio": "mujoco-envs",
    "ray": "ray",
    "pytest": "test",
    "mujoco_warp": "warp",
    "warp": "warp",
    "starlette": "tune",
    "uvicorn": "tune",
    "websockets": "tune",
    "playwright": "test",
}



def _pip() -> str:
    """``pip`` when the ``python`` on PATH is this environment's; otherwise this
    interpreter's pip (``/path/.venv/bin/python -m pip``): a bare ``pip`` would install
    into another environment, or be refused by a system Python (PEP 668)."""
    on_path = shutil.which("python") or shutil.which("python3")
    if on_path and os.path.dirname(os.path.abspath(on_path)) == os.path.dirname(os.path.abspath(sys.executable)):
        return "pip"
    return f"{shlex.quote(sys.executable)} -m pip"


def install_line(module: str) -> str:
    """The command that installs ``module`` (a module name; its top-level package counts)
    into this environment."""
    top = module.split(".")[0]
    extra = EXTRAS.get(top)
    if extra is None:
        return f"{_pip()} install {top}"
    line = f'{_pip()} install "orrb[{extra}]"'
    if top in ("torch", "stable_baselines3"):
        line += " (for torch's CPU build, install torch first from PyTorch's CPU-only wheel index)"
    return line


def import_optional(module: str, needed_by: str) -> ModuleType:
    """Imports ``module``; if it (or its package) is not installed, says what to install.

    Args:
        module: the module to import, e.g. ``"stable_baselines3.common.vec_env"``.
        needed_by: what needs it, for the message, e.g. ``"orrb.make_sb3_vec"``.

    Raises:
        ModuleNotFoundError: ``module``'s package is missing; the message ends with the
            install line and ``name`` is the missing module, as Python's own.
    """
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as e:
        if e.name is None or e.name.split(".")[0] != module.split(".")[0]:
            raise  # something else is missing inside an installed package: Python's message says it
        raise ModuleNotFoundError(f"{needed_by} needs {module.split('.')[0]}, which is not installed: "
                                  f"{install_line(module)}", name=e.name) from e
