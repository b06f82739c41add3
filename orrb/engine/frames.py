"""Frame reading: the GL side of the engine.

:class:`TileLayout` places the cameras of several entries side by side in one offscreen
framebuffer, each entry in the tiles of its seed's group; :class:`FrameReader` owns the GL
context and MuJoCo's render context, draws built scenes into the tiles, reads a chunk of
entries back at once (colour and depth from the same pass, with one resolve blit once that
is checked to give MuJoCo's bits, optionally through pixel buffer objects one chunk behind
the drawing), converts depth to metres and draws the segmentation pass.
"""

from __future__ import annotations

import dataclasses
import os
import warnings

import mujoco
import numpy as np

from orrb.engine.gl import PixelBuffers, gl_context_class, hardware_renderer, read_pixels_one_blit
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
    """Where frames are drawn: ``cols x rows`` slots of ``width x height`` pixels in one
    offscreen framebuffer, slot 0 at the bottom left (GL's origin), row by row.

    The slots form ``groups`` entry groups of ``group_slots`` slots each: camera ``c`` of an
    entry drawn in group ``g`` goes to slot ``g * group_slots + c % group_slots``. An entry's
    group is its seed modulo ``groups`` (:meth:`groups_of`), so an entry lands in the same
    tile whatever batch, shard or server it is rendered in. Fewer, larger readbacks are cheaper
    than one per frame (benchmarks/RESULTS.md, "Engine").
    """

    width: int
    height: int
    cols: int
    rows: int
    groups: int = 1
    group_slots: int = 0  # 0: every slot (one group)

    @classmethod
    def for_cameras(cls, cameras: int, width: int, height: int, entries: int | None = 1) -> TileLayout:
        """The layout for entries of ``cameras`` frames of ``width x height`` within the tiling
        limits (at most 24 frames, 2**20 pixels, a 4096 x 2048 framebuffer).

        Args:
            cameras: frames per entry.
            width, height: frame size, pixels.
            entries: entries per readback wanted; None: as many as the limits allow. An entry
                whose cameras do not all fit is drawn alone, in several readbacks.
        """
        limit = max(1, min(_MAX_TILES, _TILE_PIXELS // (width * height)))
        groups = max(1, limit // cameras if entries is None else min(entries, limit // cameras))
        max_cols, max_rows = max(1, _MAX_TILED_WIDTH // width), max(1, _MAX_TILED_HEIGHT // height)
        while True:
            slots = max(1, min(cameras * groups, limit))
            cols = max(1, min(slots, max_cols))
            if groups > 1:  # the fewest unused slots (a full chunk reads no unused tile), then the fewest rows
                cols = min(range(1, cols + 1),
                           key=lambda k: (-(-slots // k) > max_rows, k * -(-slots // k) - slots, -k))
            # rows within the framebuffer and, with the unused tiles of the last row, the pixel budget
            rows = max(1, min(-(-slots // cols), max_rows, limit // cols))
            if groups == 1 or cols * rows >= cameras * groups:
                break
            groups -= 1  # the groups do not fit the budget on any grid: one fewer
        groups = max(1, min(groups, cols * rows // cameras))
        return cls(width, height, cols, rows, groups, cameras if groups > 1 else cols * rows)

    @property
    def framebuffer(self) -> tuple[int, int]:
        """``(width, height)`` of the offscreen framebuffer the tiles need, pixels."""
        return self.cols * self.width, self.rows * self.height

    @property
    def per_group(self) -> int:
        """Slots of one entry group (cameras beyond it wrap round, in later readbacks)."""
        return self.group_slots or self.cols * self.rows

    def groups_of(self, seeds: np.ndarray) -> np.ndarray:
        """``int64 [B]`` entry group of every seed (``uint64 [B]``): the seed modulo ``groups``."""
        return (np.asarray(seeds, np.uint64) % np.uint64(self.groups)).astype(np.int64)

    def viewports(self) -> list[mujoco.MjrRect]:
        """One rectangle per slot, in slot order."""
        return [mujoco.MjrRect(col * self.width, row * self.height, self.width, self.height)
                for row in range(self.rows) for col in range(self.cols)]

    def tile(self, buffer: np.ndarray, slot: int, origin: tuple[int, int] = (0, 0)) -> np.ndarray:
        """Slot ``slot``'s image in a read-back buffer (bottom row first) whose bottom-left tile
        is at slot row and column ``origin``, with row 0 at the top (a view)."""
        row, col = divmod(slot, self.cols)
        row, col = row - origin[0], col - origin[1]
        h, w = self.height, self.width
        return buffer[row * h:(row + 1) * h][::-1, col * w:(col + 1) * w]

    def bounds(self, slots) -> tuple[int, int, int, int]:
        """``(row0, col0, rows, cols)``: the smallest block of tiles holding every slot of ``slots``."""
        rows, cols = zip(*(divmod(slot, self.cols) for slot in slots))
        return min(rows), min(cols), max(rows) - min(rows) + 1, max(cols) - min(cols) + 1


@dataclasses.dataclass
class _Targets:
    """A batch's output arrays the reader writes into (``FrameReader.begin``)."""

    color: dict[str, np.ndarray]
    depth: dict[str, np.ndarray]
    segmentation: dict[str, np.ndarray]
    names: list[str]
    geom_class: np.ndarray


class FrameReader:
    """Owns the GL context and MuJoCo's render context; draws scenes and reads frames back.

    Entries are drawn as tiles of one framebuffer, several per readback: an entry's cameras
    go to the slots of its entry group (:class:`TileLayout`), and a group already holding an
    entry of the current readback is read back first (``occupied`` / ``flush``). Float
    interpolation and edge snapping depend on a frame's window position, so the group is a
    function of the entry's seed alone: an entry gives the same bits alone, in any batch or
    on any server. Two entries with different seeds may be drawn at different positions, so
    without components a different seed can still change a few pixels and depth in its last
    bits (measured on the Dactyl scene: at most 0.04% of the colour values, by 1 level except
    silhouette pixels whose anti-aliasing coverage changes; on a textured floor more values
    by 1). With one entry per readback (``TileLayout.groups == 1``) every entry draws at the
    same position.
    The depth of each frame is converted with the clip planes in force when it was drawn.

    Readback: colour and depth from the same pass, with one resolve blit once the first
    readback checked it gives ``mjr_readPixels``' bits; with ``pbo`` the readback of a chunk
    goes into a pixel buffer object and is fetched only after the next chunk was drawn (the
    same bits, the CPU does not wait for the GPU between chunks).

    Not thread-safe; the GL context belongs to the thread that makes it current. ``close()``
    is idempotent and safe on a half-built reader.

    Args:
        width, height: frame size, pixels (the context's default surface; frames go to
            MuJoCo's offscreen framebuffer, laid out by the ``TileLayout`` given to ``bind``).
        one_blit: allow the one-blit readback (after the first readback checked it).
        pbo: read back through pixel buffer objects, one chunk behind the drawing; None: when
            the context renders on hardware.

    Raises:
        RendererError: no GL context could be created.
    """

    def __init__(self, width: int, height: int, one_blit: bool = True, pbo: bool | None = False):
        # Handles first, so close() is safe whatever fails below.
        self._gl = None
        self._con: mujoco.MjrContext | None = None
        self._layout: TileLayout | None = None
        self._viewports: list[mujoco.MjrRect] = []
        self._allow_one_blit = one_blit
        self._one_blit: bool | None = None
        self._hardware = False
        self._extent = 1.0
        self._flat_rgb: np.ndarray | None = None  # readback buffers (views of these), made on first use
        self._flat_depth: np.ndarray | None = None
        self._flat_metres: np.ndarray | None = None  # depth of a readback in metres
        self._targets: _Targets | None = None
        self._pending: list[tuple[int, int, int, mujoco.MjvScene, tuple[float, float]]] = []
        self._groups: set[int] = set()
        self._allow_pbo = pbo
        self._pbo: PixelBuffers | None = None
        self._in_flight: tuple | None = None  # a chunk whose readback went to a pixel buffer
        self._early: list[int] = []  # entries completed inside draw, not handed over yet
        # called as post_process(con, [(rect, entry, camera, (near, far) metres)]) right before a chunk
        # of tiles is read back (post-processing on the GPU); closed with the GL context current
        self.post_process = None
        try:
            self._gl = gl_context_class()(max(width, 1), max(height, 1))
        except Exception as e:
            raise RendererError(
                f"cannot create an OpenGL context (MUJOCO_GL={os.environ.get('MUJOCO_GL')!r}): {e}. "
                "On a headless Linux machine install EGL and Mesa (apt-get install libegl1 libgl1-mesa-dri)."
            ) from e
        self._gl.make_current()
        self._hardware = hardware_renderer()

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

    @property
    def pbo(self) -> bool:
        """Whether readbacks go through pixel buffer objects (once bound)."""
        return self._pbo is not None

    @property
    def layout(self) -> TileLayout | None:
        """Where frames go (None until ``bind``)."""
        return self._layout

    def bind(self, model: mujoco.MjModel, layout: TileLayout) -> None:
        """(Re)creates MuJoCo's render context for ``model``, whose offscreen buffer must fit
        ``layout.framebuffer``; the one-blit check starts again."""
        self._gl.make_current()
        self._layout = layout
        self._viewports = layout.viewports()
        self._pending.clear()
        self._groups.clear()
        self._in_flight = None
        if self._pbo is not None:
            self._pbo.free()
            self._pbo = None
        if self._con is not None:
            self._con.free()
            self._con = None
        self._con = mujoco.MjrContext(model, mujoco.mjtFontScale.mjFONTSCALE_50)
        if self._allow_pbo or (self._allow_pbo is None and self._hardware):
            self._pbo = PixelBuffers()
        self._one_blit = None if self._allow_one_blit else False
        self._extent = float(model.stat.extent)
        self._flat_rgb = self._flat_depth = self._flat_metres = None
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
    def begin(self, color: dict[str, np.ndarray], depth: dict[str, np.ndarray],
              segmentation: dict[str, np.ndarray], names: list[str], geom_class: np.ndarray) -> None:
        """Starts a batch: where its frames go.

        Args:
            color: ``{camera: uint8 [B, H, W, 3|4]}``; channels 0-2 of each drawn row are written.
            depth: ``{camera: float32 [B, H, W]}`` metres; empty: no depth read.
            segmentation: ``{camera: uint8 [B, H, W]}`` class ids; empty: no segmentation pass.
            names: camera names, in scene order.
            geom_class: ``uint8 [ngeom]`` segmentation class of every geom.
        """
        self._pending.clear()
        self._groups.clear()
        self._in_flight = None
        self._early = []
        self._targets = _Targets(color, depth, segmentation, names, geom_class)

    def occupied(self, group: int) -> bool:
        """Whether entry group ``group`` holds an entry not read back yet (its scenes must not
        be rebuilt before ``flush``)."""
        return group in self._groups

    def draw(self, scenes: list[mujoco.MjvScene], index: int, group: int, clip: tuple[float, float]) -> None:
        """Draws every camera's scene of entry ``index`` into the slots of ``group`` (not
        occupied); the frames are read back by a later ``flush`` or ``finish``.

        Args:
            scenes: the entry's built scenes, one per camera (in ``names`` order); they must
                stay unchanged until read back (the segmentation pass draws them again).
            index: the entry's row in the outputs.
            group: the entry's group (``layout.groups_of`` its seed).
            clip: ``(znear, zfar)`` the scenes were built with (``vis.map``).
        """
        per_group = self._layout.per_group
        base = group * self._layout.group_slots
        for c, scene in enumerate(scenes):
            if c and c % per_group == 0:  # more cameras than slots: read these back first
                self._early += self._complete()  # entries completed now are handed over by flush
                self._groups.add(group)
            mujoco.mjr_render(self._viewports[base + c % per_group], scene, self._con)
            self._pending.append((base + c % per_group, index, c, scene, clip))
        self._groups.add(group)

    def flush(self) -> list[int]:
        """Ends the current chunk: starts its readback and returns the entries whose frames are
        now in the outputs, in order (without pixel buffers: this chunk's; with them: the
        previous chunk's, fetched now that this chunk is drawn)."""
        done, self._early = self._early, []
        if self._pbo is None or self._targets.segmentation or not self._one_blit_decided():
            return done + self._complete()
        done += self._fetch_in_flight()
        if self._pending:
            rect, rgb_buf, depth_buf, origin = self._read_buffers([p[0] for p in self._pending],
                                                                   bool(self._targets.depth))
            self._before_read(rect, self._pending)
            try:
                self._pbo.start(rect, rgb_buf, depth_buf, self._con, self._one_blit)
            except Exception as e:  # a GL error: the plain readback from now on
                pbo, self._pbo = self._pbo, None
                warnings.warn(f"pixel-buffer readback failed ({e}); reading back without pixel buffers",
                              RuntimeWarning, stacklevel=2)
                try:
                    pbo.free()
                except Exception:
                    pass
                return done + self._complete(drawn=True)
            self._in_flight = (list(self._pending), rgb_buf, depth_buf, origin)
            self._pending.clear()
            self._groups.clear()
        return done

    def finish(self) -> list[int]:
        """Reads back everything drawn; returns the entries completed, in order."""
        done, self._early = self._early, []
        return done + self._fetch_in_flight() + self._complete()

    def _one_blit_decided(self) -> bool:
        return self._one_blit is not None or not self._targets.depth or not self._con.offSamples

    def _fetch_in_flight(self) -> list[int]:
        if self._in_flight is None:
            return []
        pending, rgb_buf, depth_buf, origin = self._in_flight
        self._in_flight = None
        self._pbo.fetch(rgb_buf, depth_buf, self._con)
        return self._unpack(pending, rgb_buf, depth_buf, origin)

    def _complete(self, drawn: bool = False) -> list[int]:
        """Reads back the pending frames now (and any chunk in flight before them);
        ``drawn``: ``_before_read`` already ran for them."""
        done = self._fetch_in_flight()
        pending = self._pending
        if not pending:
            return done
        targets = self._targets
        slots = [p[0] for p in pending]
        rect, rgb_buf, depth_buf, origin = self._read_buffers(slots, bool(targets.depth))
        if not drawn:
            self._before_read(rect, pending)
        self._read(rect, rgb_buf, depth_buf)
        done += self._unpack(pending, rgb_buf, depth_buf, origin)
        if targets.segmentation:
            self._segment(pending, slots)
        pending.clear()
        self._groups.clear()
        return done

    def _before_read(self, rect: mujoco.MjrRect, pending: list) -> None:
        """The tiles of a chunk are drawn and about to be read back (``rect`` covers them): the
        one point every readback path passes, with the GL context current and MuJoCo's
        offscreen framebuffer bound. Runs ``post_process`` on the chunk's tiles."""
        if self.post_process is not None:
            extent = self._extent
            self.post_process(self._con, [(self._viewports[slot], index, c, (clip[0] * extent, clip[1] * extent))
                                          for slot, index, c, _, clip in pending])

    def _unpack(self, pending: list, rgb_buf: np.ndarray, depth_buf: np.ndarray | None,
                origin: tuple[int, int]) -> list[int]:
        """Copies a read-back chunk's tiles into the outputs; returns its entries, in order.

        Depth is converted to metres once per readback for all tiles drawn with the same clip
        planes (elementwise: the bits of a per-tile conversion), then copied tile by tile.
        """
        targets, layout = self._targets, self._layout
        color, depth, names = targets.color, targets.depth, targets.names
        metres = {}
        if depth_buf is not None:
            for k, clip in enumerate(dict.fromkeys(entry[4] for entry in pending)):
                if k == 0:  # one scratch buffer for the usual case: the same clip planes for all
                    if self._flat_metres is None or self._flat_metres.size < depth_buf.size:
                        self._flat_metres = np.empty(self._flat_depth.size, np.float32)
                    scratch = self._flat_metres[:depth_buf.size].reshape(depth_buf.shape)
                else:
                    scratch = np.empty_like(depth_buf)
                metres[clip] = linear_depth(depth_buf, *clip, self._extent, out=scratch)
        last = len(names) - 1
        done = []
        for slot, index, c, _, clip in pending:
            name = names[c]
            color[name][index, ..., :3] = layout.tile(rgb_buf, slot, origin)
            if depth_buf is not None:
                depth[name][index] = layout.tile(metres[clip], slot, origin)
            if c == last:  # an entry is done once its last camera is read
                done.append(index)
        return done

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

    def _segment(self, pending: list, slots: list[int]) -> None:
        """Segmentation pass of a read-back chunk: its scenes drawn again into their slots with
        segment id colours (no MSAA blending), read back at once, mapped to classes."""
        targets, layout = self._targets, self._layout
        luts = []
        try:
            for slot, _, _, scene, _ in pending:
                scene.flags[mujoco.mjtRndFlag.mjRND_SEGMENT] = 1
                scene.flags[mujoco.mjtRndFlag.mjRND_IDCOLOR] = 1
                mujoco.mjr_render(self._viewports[slot], scene, self._con)
                luts.append(segmentation_lut(scene, targets.geom_class))  # segment ids are per scene
            rect, rgb_buf, _, origin = self._read_buffers(slots, False)
            mujoco.mjr_readPixels(rgb_buf, None, rect, self._con)
        finally:
            for _, _, _, scene, _ in pending:
                scene.flags[mujoco.mjtRndFlag.mjRND_SEGMENT] = 0
                scene.flags[mujoco.mjtRndFlag.mjRND_IDCOLOR] = 0
        for (slot, index, c, _, _), lut in zip(pending, luts):
            classes_from_ids(layout.tile(rgb_buf, slot, origin), lut, out=targets.segmentation[targets.names[c]][index])

    def _read_buffers(self, slots, wants_depth: bool):
        """The readback rectangle covering tile slots ``slots``, the buffers to read it into
        (C-contiguous views of one allocation each) and its origin ``(row, col)`` in slots."""
        layout = self._layout
        row0, col0, rows, cols = layout.bounds(slots)
        height, width = rows * layout.height, cols * layout.width
        if self._flat_rgb is None:
            full_width, full_height = layout.framebuffer
            self._flat_rgb = np.empty(full_height * full_width * 3, np.uint8)
        if wants_depth and self._flat_depth is None:
            full_width, full_height = layout.framebuffer
            self._flat_depth = np.empty(full_height * full_width, np.float32)
        rect = mujoco.MjrRect(col0 * layout.width, row0 * layout.height, width, height)
        rgb = self._flat_rgb[:height * width * 3].reshape(height, width, 3)
        depth = self._flat_depth[:height * width].reshape(height, width) if wants_depth else None
        return rect, rgb, depth, (row0, col0)

    # -- lifecycle ---------------------------------------------------------------------------------
    def close(self) -> None:
        """Frees MuJoCo's render context (with its GL context current), then the GL context.

        Idempotent and safe on a half-built reader. Call it from the thread that renders: a GL
        context current in another thread cannot be made current here, and the contexts are
        then left allocated (with a ``ResourceWarning``) rather than freed under another
        engine's context, which would delete that engine's framebuffers (same GL ids).
        """
        con, gl, pbo = self._con, self._gl, self._pbo
        self._con = self._gl = self._pbo = None
        if con is None and gl is None:
            return
        try:
            if gl is not None:
                gl.make_current()
        except Exception as e:
            _ABANDONED.append((con, gl, pbo))  # never freed: their destructors would run GL calls here
            warnings.warn(f"RenderEngine closed from a thread where its GL context cannot be made current ({e}); "
                          "its GL resources stay allocated until the process exits", ResourceWarning, stacklevel=3)
            return
        try:
            post, self.post_process = self.post_process, None
            try:
                if post is not None:
                    post.close()
            finally:
                if pbo is not None:
                    pbo.free()
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
