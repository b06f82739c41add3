"""Renderer components: one per module, registered by their original type names.

Importing this package imports every component module, so ``registry()`` knows
them all. Each module's docstring says what its component does; ``base`` holds the
lifecycle every component follows.
"""

import importlib as _importlib
import pkgutil as _pkgutil

from orrb.components.base import BatchContext, Component, EntryContext, Frames, SceneContext, register, registry

__all__ = ["BatchContext", "Component", "EntryContext", "Frames", "SceneContext", "register", "registry"]

_FRAMEWORK = {"base", "properties"}
for _info in _pkgutil.iter_modules(__path__):
    if _info.name not in _FRAMEWORK and not _info.name.startswith("_"):
        _importlib.import_module(f"{__name__}.{_info.name}")
