"""The GL backend's low-level calls: which context class, hardware or not, the one-blit read.

Used by :class:`orrb.engine.frames.FrameReader`, which owns the contexts.
"""

from __future__ import annotations

import os

import mujoco
import numpy as np

__all__ = ["gl_context_class", "hardware_renderer", "read_pixels_one_blit"]


def gl_context_class():
    """The GL context class to render with.

    MuJoCo picks its backend from ``MUJOCO_GL`` when ``mujoco`` is first imported;
    a user who imported mujoco before orrb (with nothing set) would get GLFW, which
    fails without a display. orrb renders offscreen only: EGL unless the user chose
    another backend explicitly.
    """
    backend = os.environ.get("MUJOCO_GL", "").lower().strip()
    if backend in ("", "egl") or (backend in ("glfw", "enable", "enabled", "on", "true", "1")
                                  and not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY")):
        from mujoco.egl import GLContext

        return GLContext
    if backend == "osmesa":
        from mujoco.osmesa import GLContext

        return GLContext
    return mujoco.GLContext


def hardware_renderer() -> bool:
    """True when the current GL context renders on hardware rather than Mesa's software
    rasterizers (llvmpipe, softpipe, swrast)."""
    try:
        from OpenGL import GL

        name = (GL.glGetString(GL.GL_RENDERER) or b"").decode(errors="replace").lower()
    except Exception:  # no PyOpenGL or no current context: assume software, the safe choice
        return False
    return bool(name) and not any(soft in name for soft in ("llvmpipe", "softpipe", "swrast"))


def read_pixels_one_blit(rgb: np.ndarray, depth: np.ndarray, rect: mujoco.MjrRect, con: mujoco.MjrContext) -> None:
    """What ``mjr_readPixels(rgb, depth, rect, con)`` reads from a multisampled offscreen buffer,
    resolving colour and depth with one blit (MuJoCo blits them separately, which costs a
    second resolve per readback). Depth is the raw buffer value, which is what
    ``mjr_readPixels`` returns with ``mjDEPTH_ZEROFAR`` on MuJoCo's reversed-Z float depth
    buffer; the frame reader checks that on its first readback before relying on it."""
    from OpenGL import GL

    x, y, w, h = rect.left, rect.bottom, rect.width, rect.height
    try:
        GL.glBindFramebuffer(GL.GL_READ_FRAMEBUFFER, con.offFBO)
        GL.glBindFramebuffer(GL.GL_DRAW_FRAMEBUFFER, con.offFBO_r)
        GL.glBlitFramebuffer(x, y, x + w, y + h, x, y, x + w, y + h,
                             GL.GL_COLOR_BUFFER_BIT | GL.GL_DEPTH_BUFFER_BIT, GL.GL_NEAREST)
        GL.glBindFramebuffer(GL.GL_READ_FRAMEBUFFER, con.offFBO_r)
        GL.glPixelStorei(GL.GL_PACK_ALIGNMENT, 1)
        GL.glReadPixels(x, y, w, h, GL.GL_RGB, GL.GL_UNSIGNED_BYTE, rgb)
        GL.glReadPixels(x, y, w, h, GL.GL_DEPTH_COMPONENT, GL.GL_FLOAT, depth)
    finally:
        mujoco.mjr_setBuffer(mujoco.mjtFramebuffer.mjFB_OFFSCREEN, con)  # MuJoCo's bindings back
