"""``EngineOptions``: how the engine schedules its work, reads frames back and post-processes them."""

from __future__ import annotations

import dataclasses
import os

__all__ = ["EngineOptions"]

# Image-stage chunk sizes in pixels per camera when none is given: the best measured on a GPU
# and on Mesa's llvmpipe (benchmarks/RESULTS.md, "Large batches").
_CHUNK_PIXELS_HARDWARE = 640_000
_CHUNK_PIXELS_SOFTWARE = 160_000
# The default of ``entries_per_readback`` when set (render servers are spawned with default
# options and inherit the environment).
ENTRIES_PER_READBACK_ENV = "ORRB_ENTRIES_PER_READBACK"


@dataclasses.dataclass(frozen=True)
class EngineOptions:
    """How a :class:`orrb.engine.RenderEngine` spreads a batch over its threads and reads
    frames back. The options exist to compare schedules (benchmarks) and to pin one in tests.
    Every combination gives bit-identical outputs, except two. ``entries_per_readback`` sets
    the tile an entry is drawn in, and a frame's edge pixels and depth bits depend on its
    position (measured on the Dactyl scene: at most 0.04% of the colour values, mostly by 1
    level); for a fixed value every entry gives the same bits alone, in any batch and on any
    server. ``gl_post_processing`` changes post-processed pixels by rounding.

    Example::

        RenderEngine(config, options=EngineOptions(image_overlap=False))  # image stage inline

    Attributes:
        setup_ahead: set entry ``i + 1`` up (restore, qpos, every component's ``run``) on the
            engine's "setup" worker thread while entry ``i`` draws. False: in the render thread.
        image_overlap: run the image stage (components' ``end_batch``, e.g. post-processing)
            on the engine's "image" worker thread while later entries draw. False: in the
            render thread, as each chunk is drawn (with ``setup_ahead``, the setup thread may
            meanwhile set the next entry up; the image stage touches no model or data). The
            last chunk always runs in the render thread (it overlaps no drawing).
        image_chunk_pixels: size of an image-stage chunk, in pixels per camera (a chunk holds
            ``max(1, image_chunk_pixels // (W * H))`` entries). None: 640,000 when the GL
            context renders on hardware, 160,000 on a software rasterizer (llvmpipe).
        one_blit_readback: read colour and depth back with one resolve blit once the engine's
            first readback of a multisampled frame showed it gives ``mjr_readPixels``' bits.
            False: always MuJoCo's own readback.
        gl_post_processing: apply post-processing (``PostProcessingRandomizer``) as GL shader
            passes before readback (True) or with numpy after it (False). None: the GL passes
            when the context renders on hardware (a design choice, not yet measured on a GPU),
            numpy on a software rasterizer, where the GL passes were measured slower
            (benchmarks/post_processing.py). The two paths draw
            the same random values; their pixels differ by rounding (mean under 2/255 per
            channel). The Warp backend
            always uses numpy.
        entries_per_readback: at most this many entries are drawn as tiles of one framebuffer
            and read back at once (within the tiling limits: 24 frames, 2**20 pixels); an
            entry's tile is fixed by its seed (seed modulo the entry slots). 1: one entry per
            readback, every entry at the same position. None: as many as the limits allow
            when GL renders on hardware (chosen for the GPU's per-readback synchronisation,
            not yet measured on one), 1 on a software rasterizer (llvmpipe, where several
            entries per readback measured no faster: 0.93-1.09x); the
            environment variable ``ORRB_ENTRIES_PER_READBACK``, when set, replaces that
            default (render servers of a pool and a ``RayRenderer``'s actors take default options and
            inherit it).
        pbo_readback: read back through pixel buffer objects: a chunk's readback is started,
            the next chunk drawn, then the first fetched (the same bits). None: on hardware
            GL (chosen for the GPU's asynchronous readback, not yet measured on one), off on a
            software rasterizer (llvmpipe, where it measured no gain).

    Raises:
        TypeError: an option of the wrong kind.
        ValueError: ``image_chunk_pixels`` or ``entries_per_readback`` below 1.
    """

    setup_ahead: bool = True
    image_overlap: bool = True
    image_chunk_pixels: int | None = None
    one_blit_readback: bool = True
    gl_post_processing: bool | None = None
    entries_per_readback: int | None = None
    pbo_readback: bool | None = None

    def __post_init__(self) -> None:
        for name in ("setup_ahead", "image_overlap", "one_blit_readback"):
            value = getattr(self, name)
            if not isinstance(value, bool):
                raise TypeError(f"EngineOptions.{name} must be a bool, got {type(value).__name__} {value!r}")
        for name in ("gl_post_processing", "pbo_readback"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, bool):
                raise TypeError(f"EngineOptions.{name} must be a bool or None, got {type(value).__name__} {value!r}")
        for name in ("image_chunk_pixels", "entries_per_readback"):
            value = getattr(self, name)
            if value is not None:
                if isinstance(value, bool) or not isinstance(value, int):
                    raise TypeError(f"EngineOptions.{name} must be an int or None, "
                                    f"got {type(value).__name__} {value!r}")
                if value < 1:
                    raise ValueError(f"EngineOptions.{name} must be >= 1, got {value}")

    def readback_entries(self, hardware: bool) -> int | None:
        """Entries per readback wanted on hardware or software GL (None: as many as fit).

        Raises:
            ValueError: ``ORRB_ENTRIES_PER_READBACK`` is set to something else than an int >= 1.
        """
        if self.entries_per_readback is not None:
            return self.entries_per_readback
        text = os.environ.get(ENTRIES_PER_READBACK_ENV, "").strip()
        if text:
            # ASCII digits only: int() would also take "3_0", "+5" or other scripts' digits
            if not (text.isascii() and text.isdigit()) or int(text) < 1:
                raise ValueError(f"{ENTRIES_PER_READBACK_ENV} must be an int >= 1, got {text!r}")
            return int(text)
        return None if hardware else 1

    def chunk_entries(self, width: int, height: int, hardware: bool) -> int:
        """Entries per image-stage chunk for ``width x height`` images (>= 1)."""
        pixels = self.image_chunk_pixels
        if pixels is None:
            pixels = _CHUNK_PIXELS_HARDWARE if hardware else _CHUNK_PIXELS_SOFTWARE
        return max(1, pixels // (width * height))
