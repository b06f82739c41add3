"""The exceptions orrb raises.

- ``RendererError``: something went wrong inside rendering or the server pool
  (a GL context that cannot be made, a server that died repeatedly).
- ``ConfigError``: a model, mapping or renderer config file (or an in-Python
  config edit) is malformed; also a ``ValueError``, so generic handlers catch it.

Bad request values raise ``ValueError`` / ``TypeError`` in the caller's thread.
"""

from __future__ import annotations

import difflib
import re


class RendererError(RuntimeError):
    """A failure inside rendering or the render server pool.

    Attributes:
        server: address of the server involved (``"tcp://127.0.0.1:5000"``), if any.
        log_file: path of that server's log file, if any.
    """

    def __init__(self, message: str, *, server: str | None = None, log_file: str | None = None):
        super().__init__(message)
        self.server = server
        self.log_file = log_file


class ConfigError(ValueError):
    """A malformed model, mapping or renderer config (file or in-Python edit)."""


def did_you_mean(name: str, candidates) -> str:
    """Returns ``" (did you mean 'x'?)"`` for the closest candidate, or ``""``."""
    close = difflib.get_close_matches(str(name), [str(c) for c in candidates], n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


_GL_LIBRARY = re.compile(r"egl|osmesa|libgl|glfw|opengl", re.IGNORECASE)


def is_gl_load_error(error: BaseException) -> bool:
    """Whether an exception raised while importing MuJoCo comes from loading its GL library
    (PyOpenGL reports a missing ``libEGL`` as an ``AttributeError`` deep in its import)
    rather than from MuJoCo itself (a broken or mismatched install)."""
    return isinstance(error, AttributeError) or bool(_GL_LIBRARY.search(str(error)))
