"""Renderer components: one per module, registered by their original type names.

Importing this package imports every component module, so ``registry()`` knows
them all. See ``COMPONENTS.md`` of the specification for what each one does.
"""

import importlib as _importlib
import pkgutil as _pkgutil

from orrb.components.base import Component, EntryContext, SceneContext, register, registry

__all__ = ["Component", "EntryContext", "SceneContext", "register", "registry"]

_FRAMEWORK = {"base", "properties"}
for _info in _pkgutil.iter_modules(__path__):
    if _info.name not in _FRAMEWORK and not _info.name.startswith("_"):
        _importlib.import_module(f"{__name__}.{_info.name}")
