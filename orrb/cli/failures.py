"""Turns an exception raised under an ``orrb`` command into one line, a hint and an exit status.

``orrb`` prints ``orrb <command>: error: <what is wrong>`` and, when there is something to
do about it, ``  hint: <what to do>``; ``--debug`` (or ``ORRB_DEBUG=1``) prints the
traceback instead.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from orrb.cli.common import CommandError, MissingSystemLibrary, apt_line
from orrb.errors import RendererError
from orrb.extras import install_line

__all__ = ["Failure", "explain"]

# Signs, in a RendererError's text (a server's log tail included), that GL could not start.
_GL_FAILURE = re.compile(r"cannot create an OpenGL context|libEGL|eglQueryString|eglGetDisplay|eglInitialize|"
                         r"EGL_NOT_INITIALIZED|EGL_BAD_|cannot load libEGL")


@dataclass(frozen=True)
class Failure:
    """What ``orrb`` prints for an exception.

    Attributes:
        message: one line saying what is wrong.
        hint: one line saying what to do, or ``None``.
        status: the exit status (2: bad arguments or input; 1: rendering failed; 130: Ctrl-C).
    """

    message: str
    hint: str | None
    status: int


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    line = text.splitlines()[0].strip() if text else ""
    return line or type(error).__name__


def _gl_choice_failure(text: str) -> Failure | None:
    """A GL backend chosen by the environment that cannot work here, from an error's text."""
    if "PYOPENGL_PLATFORM" in text:
        platform = os.environ.get("PYOPENGL_PLATFORM", "")
        return Failure(f"rendering cannot start: PYOPENGL_PLATFORM={platform} does not match "
                       f"MUJOCO_GL={os.environ.get('MUJOCO_GL', '')}",
                       "unset PYOPENGL_PLATFORM (orrb then renders through EGL), or set MUJOCO_GL to the same "
                       "platform", 1)
    if "gladLoadGL" in text:
        backend, display = os.environ.get("MUJOCO_GL", ""), os.environ.get("DISPLAY", "")
        return Failure(f"rendering cannot start: no OpenGL through MUJOCO_GL={backend or '(unset)'} with "
                       f"DISPLAY={display or '(unset)'}",
                       "unset MUJOCO_GL to render headless through EGL, or point DISPLAY at a working X server",
                       1)
    return None


def explain(error: BaseException) -> Failure:
    """The one-line report of ``error`` (any exception); never raises."""
    if isinstance(error, KeyboardInterrupt):
        return Failure("interrupted", None, 130)
    gl_choice = _gl_choice_failure(str(error))
    if gl_choice is not None:
        return gl_choice
    if isinstance(error, CommandError):
        return Failure(_first_line(error), error.hint, 2)
    if isinstance(error, MissingSystemLibrary):
        return Failure(_first_line(error), error.hint, 1)
    if isinstance(error, RendererError):
        return _explain_renderer_error(error)
    if isinstance(error, ModuleNotFoundError) and error.name:
        top = error.name.split(".")[0]
        return Failure(f"the Python package {top!r} is not installed", install_line(top), 1)
    if isinstance(error, (FileNotFoundError, FileExistsError, IsADirectoryError, NotADirectoryError, PermissionError)):
        return Failure(_first_line(error), None, 2)
    if isinstance(error, (ValueError, TypeError, KeyError)):  # includes orrb.ConfigError
        return Failure(_first_line(error), None, 2)
    if isinstance(error, OSError) and "No space left" in str(error):
        return Failure(_first_line(error), "free disk space or write elsewhere (--out)", 1)
    return Failure(f"unexpected {type(error).__name__}: {_first_line(error)}",
                   "rerun with --debug to see the traceback, and please report it", 1)


def _explain_renderer_error(error: RendererError) -> Failure:
    text = str(error)
    first = _first_line(error)
    where = error.server
    if "Address already in use" in text or "cannot bind" in text:
        port = where.rsplit(":", 1)[-1] if where else "?"
        return Failure(f"port {port} is already in use ({where or 'a render server'} cannot bind it)",
                       "choose another --base-port, or stop the program using that port", 1)
    if _GL_FAILURE.search(text):
        reason = first.split(". On a headless")[0]
        return Failure(f"rendering cannot start: {reason}", f"install the GL libraries: {apt_line()}", 1)
    if where and re.search(r"answer|timed out|timeout|unreachable|refused", text, re.I) \
            and not re.search(r"exited with code|killed by signal", text):
        hint = "check that a server listens there ('orrb serve --port PORT' on that machine) and that no firewall blocks it"
        if os.environ.get("ORRB_SECRET"):
            hint += ", then that it uses the same secret as ORRB_SECRET here"
        return Failure(f"no render server answered at {where}", hint, 1)
    hint = f"see the server log {error.log_file}" if error.log_file else None
    hint = (hint + "; " if hint else "") + "rerun with --debug for the traceback"
    return Failure(first, hint, 1)
