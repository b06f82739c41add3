"""Frame reading: the GL side of the engine.

:class:`TileLayout` places an entry's cameras side by side in one offscreen framebuffer;
:class:`FrameReader` owns the GL context and MuJoCo's render context, draws built scenes
into the tiles, reads them back at once (colour and depth from the same pass, with one
resolve blit once that is checked to give MuJoCo's bits), converts depth to metres and
draws the segmentation pass.
"""

from __future__ import annotations

import dataclasses
import os
import warnings

import mujoco
import numpy as np

from orrb.engine.gl import gl_context_class, hardware_renderer, read_pixels_one_blit
from orrb.engine.modalities import classes_from_ids, linear_depth, segmentation_lut
from orrb.errors import RendererError

__all__ = ["FrameReader", "TileLayout"]

# Tiled rendering: at most this many frames per readback, this many pixels in all, and a
# framebuffer of at most this size (MSAA multiplies its memory).
_MAX_TILES = 24
_TILE_PIXELS = 1 << 20
_MAX_TILED_WIDTH = 4096
_MAX_TILED_HEIGHT = 2048
# Render and GL contexts of readers closed from a thread that could not make their GL context
# current: kept so that their destructors never run GL calls under another context.
_ABANDONED: list = []


@dataclasses.dataclass(frozen=True)
class TileLayout:
    """Where an entry's frames are drawn: ``cols x rows`` slots of ``width x height`` pixels
    in one offscreen framebuffer, slot 0 at the bottom left (GL's origin), row by row.

    Fewer, larger readbacks are cheaper than one per frame (benchmarks/RESULTS.md, "Engine").
    """

    width: int
    height: int
    cols: int
    rows: int

    @classmethod
    def for_cameras(cls, cameras: int, width: int, height: int) -> TileLayout:
        """The layout for ``cameras`` frames of ``width x height`` within the tiling limits."""
        slots = max(1, min(cameras, _MAX_TILES, _TILE_PIXELS // (width * height)))
        cols = max(1, min(slots, _MAX_TILED_WIDTH // width))
        rows = max(1, min(-(-slots // cols), _MAX_TILED_HEIGHT // height))
        return cls(width, height, cols, rows)

    @property
    def framebuffer(self) -> tuple[int, int]:
        """``(width, height)`` of the offscreen framebuffer the tiles need, pixels."""
        return self.cols * self.width, self.rows * self.height

    def viewports(self) -> list[mujoco.MjrRect]:
        """One rectangle per slot, in slot order."""
        return [mujoco.MjrRect(col * self.width, row * self.height, self.width, self.height)
                for row in range(self.rows) for col in range(self.cols)]

    def tile(self, buffer: np.ndarray, slot: int) -> np.ndarray:
        """Slot ``slot``'s image in a read-back buffer (bottom row first), with row 0 at the top (a view)."""
        row, col = divmod(slot, self.cols)
        h, w = self.height, self.width
        return buffer[row * h:(row + 1) * h][::-1, col * w:(col + 1) * w]


class FrameReader:
    """Owns the GL context and MuJoCo's render context; draws scenes and reads frames back.

    Camera ``c`` always draws into slot ``c`` (modulo the slots), and every entry is read back
    on its own. Float interpolation and edge snapping depend on a frame's window position, so
    a frame drawn elsewhere can differ in depth bits and in a few edge pixels; positions that
    depend on the batch would break bit-identical outputs between an entry rendered alone, in
    a batch or on another server. (Tiling several entries per readback was measured faster,
    see benchmarks/RESULTS.md, but no entry-to-position rule kept both that speed and this
    guarantee.) The depth of each frame is converted with the clip planes in force when it
    was drawn.

    Not thread-safe; the GL context belongs to the thread that makes it current. ``close()``
    is idempotent and safe on a half-built reader.

    Args:
        layout: where an entry's frames go.
        one_blit: allow the one-blit readback (after the first readback checked it).

    Raises:
        RendererError: no GL context could be created.
    """

    def __init__(self, layout: TileLayout, one_blit: bool = True):
        # Handles first, so close() is safe whatever fails below.
        self._gl = None
        self._con: mujoco.MjrContext | None = None
        self._layout = layout
        self._viewports = layout.viewports()
        self._allow_one_blit = one_blit
        self._one_blit: bool | None = None
        self._hardware = False
        self._extent = 1.0
        self._buffers: dict = {}  # (used slots, depth) -> readback rectangle and buffers
        # called as post_process(con, [(rect, entry, camera, (near, far) metres)]) right before a group
        # of tiles is read back (post-processing on the GPU); closed with the GL context current
        self.post_process = None
        try:
            self._gl = gl_context_class()(max(layout.width, 1), max(layout.height, 1))
        except Exception as e:
            raise RendererError(
                f"cannot create an OpenGL context (MUJOCO_GL={os.environ.get('MUJOCO_GL')!r}): {e}. "
                "On a headless Linux machine install EGL and Mesa (apt-get install libegl1 libgl1-mesa-dri)."
            ) from e

    # -- state -------------------------------------------------------------------------------------
    @property
    def hardware(self) -> bool:
        """True when the GL context renders on hardware (not llvmpipe, softpipe or swrast)."""
        return self._hardware

    @property
    def one_blit(self) -> bool | None:
        """Whether colour and depth are read with one resolve blit: None until a readback of a
        multisampled frame with edges has checked it against ``mjr_readPixels``."""
        return self._one_blit

    def bind(self, model: mujoco.MjModel) -> None:
        """(Re)creates MuJoCo's render context for ``model`` (its offscreen buffer must fit
        ``layout.framebuffer``); the one-blit check starts again."""
        self._gl.make_current()
        if self._con is not None:
            self._con.free()
            self._con = None
        self._con = mujoco.MjrContext(model, mujoco.mjtFontScale.mjFONTSCALE_50)
        self._hardware = hardware_renderer()
        self._one_blit = None if self._allow_one_blit else False
        self._extent = float(model.stat.extent)
        self._buffers = {}
        mujoco.mjr_setBuffer(mujoco.mjtFramebuffer.mjFB_OFFSCREEN, self._con)
        self._con.readDepthMap = mujoco.mjtDepthMap.mjDEPTH_ZEROFAR

    @property
    def context(self) -> mujoco.MjrContext:
        """MuJoCo's render context (its offscreen framebuffer holds the drawn tiles)."""
        return self._con

    def make_current(self) -> None:
        """Makes the GL context current in this thread (another renderer may have taken it)."""
        self._gl.make_current()

    # -- drawing -----------------------------------------------------------------------------------
    def draw(self, scenes: list[mujoco.MjvScene], index: int, clip: tuple[float, float],
             color: dict[str, np.ndarray], depth: dict[str, np.ndarray], names: list[str]) -> None:
        """Draws every camera's scene of entry ``index`` and reads the frames back.

        Args:
            scenes: the entry's built scenes, one per camera (in ``names`` order).
            index: the entry's row in the outputs.
            clip: ``(znear, zfar)`` the scenes were built with (``vis.map``).
            color: ``{camera: uint8 [B, H, W, 3|4]}``; channels 0-2 of row ``index`` are written.
            depth: ``{camera: float32 [B, H, W]}`` metres, row ``index`` written; empty: no depth read.
            names: camera names, in scene order.
        """
        slots = len(self._viewports)
        pending: list[tuple[int, int]] = []  # slot, camera
        for c, scene in enumerate(scenes):
            slot = c % slots
            if slot == 0:
                self._flush(pending, index, clip, color, depth, names)
            mujoco.mjr_render(self._viewports[slot], scene, self._con)
            pending.append((slot, c))
        self._flush(pending, index, clip, color, depth, names)

    def _flush(self, pending: list[tuple[int, int]], index: int, clip: tuple[float, float],
               color: dict[str, np.ndarray], depth: dict[str, np.ndarray], names: list[str]) -> None:
        if not pending:
            return
        if self.post_process is not None:
            metres = (clip[0] * self._extent, clip[1] * self._extent)
            self.post_process(self._con, [(self._viewports[slot], index, c, metres) for slot, c in pending])
        wants_depth = bool(depth)
        rect, rgb_buf, depth_buf = self._read_buffers(len(pending), wants_depth)
        self._read(rect, rgb_buf, depth_buf)
        layout = self._layout
        for slot, c in pending:
            name = names[c]
            color[name][index, ..., :3] = layout.tile(rgb_buf, slot)
            if wants_depth:
                linear_depth(layout.tile(depth_buf, slot), *clip, self._extent, out=depth[name][index])
        pending.clear()

    def _read(self, rect: mujoco.MjrRect, rgb_buf: np.ndarray, depth_buf: np.ndarray | None) -> None:
        """Reads the drawn tiles: with one resolve blit once that was checked to give MuJoCo's bits."""
        con = self._con
        if depth_buf is None or not con.offSamples or self._one_blit is False:
            mujoco.mjr_readPixels(rgb_buf, depth_buf, rect, con)
        elif self._one_blit:
            read_pixels_one_blit(rgb_buf, depth_buf, rect, con)
        else:  # not decided yet: use the one-blit read once it gave MuJoCo's bits on a real image
            mujoco.mjr_readPixels(rgb_buf, depth_buf, rect, con)
            # only a frame with edges (several depths and colours) can show a resolve difference
            if depth_buf.min() != depth_buf.max() and rgb_buf.min() != rgb_buf.max():
                rgb_check, depth_check = np.empty_like(rgb_buf), np.empty_like(depth_buf)
                try:
                    read_pixels_one_blit(rgb_check, depth_check, rect, con)
                    self._one_blit = bool(np.array_equal(rgb_check, rgb_buf) and np.array_equal(depth_check, depth_buf))
                except Exception:  # no PyOpenGL, or a GL error: MuJoCo's read
                    self._one_blit = False

    def segment(self, scenes: list[mujoco.MjvScene], index: int, geom_class: np.ndarray,
                segmentation: dict[str, np.ndarray], names: list[str]) -> None:
        """Segmentation pass of entry ``index`` from its built scenes (tiled like the colour
        pass, no MSAA blending).

        Args:
            scenes: the entry's built scenes, one per camera (in ``names`` order).
            index: the entry's row in the outputs.
            geom_class: ``uint8 [ngeom]`` segmentation class of every geom.
            segmentation: ``{camera: uint8 [B, H, W]}``; row ``index`` gets class ids.
            names: camera names, in scene order.
        """
        per_read = len(self._viewports)
        layout = self._layout
        for start in range(0, len(scenes), per_read):
            group = list(range(start, min(start + per_read, len(scenes))))
            luts = []
            try:
                for slot, c in enumerate(group):
                    scene = scenes[c]
                    scene.flags[mujoco.mjtRndFlag.mjRND_SEGMENT] = 1
                    scene.flags[mujoco.mjtRndFlag.mjRND_IDCOLOR] = 1
                    mujoco.mjr_render(self._viewports[slot], scene, self._con)
                    luts.append(segmentation_lut(scene, geom_class))  # segment ids are per scene
                rect, rgb_buf, _ = self._read_buffers(len(group), False)
                mujoco.mjr_readPixels(rgb_buf, None, rect, self._con)
            finally:
                for c in group:
                    scenes[c].flags[mujoco.mjtRndFlag.mjRND_SEGMENT] = 0
                    scenes[c].flags[mujoco.mjtRndFlag.mjRND_IDCOLOR] = 0
            for slot, (c, lut) in enumerate(zip(group, luts)):
                classes_from_ids(layout.tile(rgb_buf, slot), lut, out=segmentation[names[c]][index])

    def _read_buffers(self, used: int, wants_depth: bool):
        """The readback rectangle and buffers covering the first ``used`` tile slots."""
        layout = self._layout
        cols = min(used, layout.cols)
        rows = -(-used // layout.cols)
        key = (cols, rows, wants_depth)
        if key not in self._buffers:
            width, height = cols * layout.width, rows * layout.height
            self._buffers[key] = (mujoco.MjrRect(0, 0, width, height), np.empty((height, width, 3), np.uint8),
                                  np.empty((height, width), np.float32) if wants_depth else None)
        return self._buffers[key]

    # -- lifecycle ---------------------------------------------------------------------------------
    def close(self) -> None:
        """Frees MuJoCo's render context (with its GL context current), then the GL context.

        Idempotent and safe on a half-built reader. Call it from the thread that renders: a GL
        context current in another thread cannot be made current here, and the contexts are
        then left allocated (with a ``ResourceWarning``) rather than freed under another
        engine's context, which would delete that engine's framebuffers (same GL ids).
        """
        con, gl = self._con, self._gl
        self._con = self._gl = None
        if con is None and gl is None:
            return
        try:
            if gl is not None:
                gl.make_current()
        except Exception as e:
            _ABANDONED.append((con, gl))  # never freed: their destructors would run GL calls here
            warnings.warn(f"RenderEngine closed from a thread where its GL context cannot be made current ({e}); "
                          "its GL resources stay allocated until the process exits", ResourceWarning, stacklevel=3)
            return
        try:
            post, self.post_process = self.post_process, None
            try:
                if post is not None:
                    post.close()
            finally:
                if con is not None:
                    con.free()
        finally:
            if gl is not None:
                gl.free()

    def __del__(self):
        # A reader dropped without close() must still free MuJoCo's render context with its own GL
        # context current: freed later by the garbage collector, with another engine's context
        # current, it would delete that engine's framebuffers and textures (same ids).
        try:
            self.close()
        except Exception:
            pass
