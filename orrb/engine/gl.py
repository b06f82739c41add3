"""The GL backend's low-level calls: which context class, hardware or not, the one-blit read,
the asynchronous readback through pixel buffer objects.

Used by :class:`orrb.engine.frames.FrameReader`, which owns the contexts.
"""

from __future__ import annotations

import ctypes
import os

import mujoco
import numpy as np

__all__ = ["PixelBuffers", "gl_context_class", "hardware_renderer", "read_pixels_one_blit"]


def gl_context_class():
    """The GL context class to render with.

    MuJoCo picks its backend from ``MUJOCO_GL`` when ``mujoco`` is first imported;
    a user who imported mujoco before orrb (with nothing set) would get GLFW, which
    fails without a display. orrb renders offscreen only: EGL unless the user chose
    another backend explicitly.
    """
    backend = os.environ.get("MUJOCO_GL", "").lower().strip()
    if backend in ("", "egl") or (backend in ("glfw", "glx", "enable", "enabled", "on", "true", "1")
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


class PixelBuffers:
    """Asynchronous readback through two pixel buffer objects (colour, depth).

    ``start`` resolves the multisampled buffer as ``mjr_readPixels`` does (two blits, or one
    when ``one_blit``) and queues ``glReadPixels`` into the buffer objects, which returns at
    once; ``fetch`` copies them into arrays, waiting only for that readback (draws queued after
    it keep running). Bits are those of ``mjr_readPixels``: the same blits and reads, another
    destination. Needs the GL context current; ``free`` deletes the buffers (idempotent).
    """

    def __init__(self):
        self._ids = None
        self._sizes = (0, 0)
        self._rect = None

    def start(self, rect: mujoco.MjrRect, rgb: np.ndarray, depth: np.ndarray | None, con: mujoco.MjrContext,
              one_blit: bool) -> None:
        """Queues the readback of ``rect`` (``rgb`` and ``depth`` give the sizes, not written yet)."""
        from OpenGL import GL

        sizes = (rgb.nbytes, 0 if depth is None else depth.nbytes)
        if self._ids is None:
            self._ids = [int(i) for i in GL.glGenBuffers(2)]
        if sizes[0] > self._sizes[0] or sizes[1] > self._sizes[1]:
            self._sizes = tuple(max(a, b) for a, b in zip(sizes, self._sizes))
            for buffer, size in zip(self._ids, self._sizes):
                GL.glBindBuffer(GL.GL_PIXEL_PACK_BUFFER, buffer)
                GL.glBufferData(GL.GL_PIXEL_PACK_BUFFER, max(size, 1), None, GL.GL_STREAM_READ)
        x, y, w, h = rect.left, rect.bottom, rect.width, rect.height
        try:
            if con.offSamples:
                GL.glBindFramebuffer(GL.GL_READ_FRAMEBUFFER, con.offFBO)
                GL.glBindFramebuffer(GL.GL_DRAW_FRAMEBUFFER, con.offFBO_r)
                if depth is not None and one_blit:
                    GL.glBlitFramebuffer(x, y, x + w, y + h, x, y, x + w, y + h,
                                         GL.GL_COLOR_BUFFER_BIT | GL.GL_DEPTH_BUFFER_BIT, GL.GL_NEAREST)
                else:
                    GL.glBlitFramebuffer(x, y, x + w, y + h, x, y, x + w, y + h, GL.GL_COLOR_BUFFER_BIT, GL.GL_NEAREST)
                    if depth is not None:
                        GL.glBlitFramebuffer(x, y, x + w, y + h, x, y, x + w, y + h, GL.GL_DEPTH_BUFFER_BIT,
                                             GL.GL_NEAREST)
                GL.glBindFramebuffer(GL.GL_READ_FRAMEBUFFER, con.offFBO_r)
            else:
                GL.glBindFramebuffer(GL.GL_READ_FRAMEBUFFER, con.offFBO)
            GL.glPixelStorei(GL.GL_PACK_ALIGNMENT, 1)
            GL.glBindBuffer(GL.GL_PIXEL_PACK_BUFFER, self._ids[0])
            GL.glReadPixels(x, y, w, h, GL.GL_RGB, GL.GL_UNSIGNED_BYTE, ctypes.c_void_p(0))
            if depth is not None:
                GL.glBindBuffer(GL.GL_PIXEL_PACK_BUFFER, self._ids[1])
                GL.glReadPixels(x, y, w, h, GL.GL_DEPTH_COMPONENT, GL.GL_FLOAT, ctypes.c_void_p(0))
        finally:
            GL.glBindBuffer(GL.GL_PIXEL_PACK_BUFFER, 0)  # MuJoCo's own reads write to client memory
            mujoco.mjr_setBuffer(mujoco.mjtFramebuffer.mjFB_OFFSCREEN, con)

    def fetch(self, rgb: np.ndarray, depth: np.ndarray | None, con: mujoco.MjrContext) -> None:
        """Copies the readback queued by ``start`` into ``rgb`` and ``depth`` (C-contiguous, the
        shapes ``start`` was given)."""
        from OpenGL import GL

        try:
            for buffer, out in zip(self._ids, (rgb, depth)):
                if out is not None:
                    GL.glBindBuffer(GL.GL_PIXEL_PACK_BUFFER, buffer)
                    pointer = GL.glMapBufferRange(GL.GL_PIXEL_PACK_BUFFER, 0, out.nbytes, GL.GL_MAP_READ_BIT)
                    if not pointer:
                        raise RuntimeError(f"glMapBufferRange gave no pointer for pixel buffer {buffer}")
                    try:
                        ctypes.memmove(out.ctypes.data, pointer, out.nbytes)
                    finally:
                        GL.glUnmapBuffer(GL.GL_PIXEL_PACK_BUFFER)
        finally:
            GL.glBindBuffer(GL.GL_PIXEL_PACK_BUFFER, 0)

    def free(self) -> None:
        """Deletes the buffer objects (with the GL context current); idempotent."""
        ids, self._ids = self._ids, None
        self._sizes = (0, 0)
        if ids is not None:
            from OpenGL import GL

            GL.glDeleteBuffers(len(ids), ids)
