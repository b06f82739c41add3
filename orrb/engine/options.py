"""``EngineOptions``: how the engine schedules its work (only ``gl_post_processing`` changes output bits)."""

from __future__ import annotations

import dataclasses

__all__ = ["EngineOptions"]

# Image-stage chunk sizes in pixels per camera when none is given: the best measured on a GPU
# and on Mesa's llvmpipe (benchmarks/RESULTS.md, "Large batches").
_CHUNK_PIXELS_HARDWARE = 640_000
_CHUNK_PIXELS_SOFTWARE = 160_000


@dataclasses.dataclass(frozen=True)
class EngineOptions:
    """How a :class:`orrb.engine.RenderEngine` spreads a batch over its threads and reads
    frames back. Every combination of the scheduling options gives bit-identical outputs (the
    post-processing path, ``gl_post_processing``, changes pixels by rounding); the options
    exist to compare schedules (benchmarks) and to pin one in tests.

    Example::

        RenderEngine(config, options=EngineOptions(image_overlap=False))  # image stage inline

    Attributes:
        setup_ahead: set entry ``i + 1`` up (restore, qpos, every component's ``run``) on the
            engine's "setup" worker thread while entry ``i`` draws. False: in the render thread.
        image_overlap: run the image stage (components' ``end_batch``, e.g. post-processing)
            on the engine's "image" worker thread while later entries draw. False: in the
            render thread, as each chunk is drawn. The last chunk always runs in the render
            thread (it overlaps nothing).
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
            channel), so this is the one option that changes output bits. The Warp backend
            always uses numpy.

    Raises:
        TypeError: an option of the wrong kind.
        ValueError: ``image_chunk_pixels`` below 1.
    """

    setup_ahead: bool = True
    image_overlap: bool = True
    image_chunk_pixels: int | None = None
    one_blit_readback: bool = True
    gl_post_processing: bool | None = None

    def __post_init__(self) -> None:
        for name in ("setup_ahead", "image_overlap", "one_blit_readback"):
            value = getattr(self, name)
            if not isinstance(value, bool):
                raise TypeError(f"EngineOptions.{name} must be a bool, got {type(value).__name__} {value!r}")
        if self.gl_post_processing is not None and not isinstance(self.gl_post_processing, bool):
            raise TypeError(f"EngineOptions.gl_post_processing must be a bool or None, "
                            f"got {type(self.gl_post_processing).__name__} {self.gl_post_processing!r}")
        pixels = self.image_chunk_pixels
        if pixels is not None:
            if isinstance(pixels, bool) or not isinstance(pixels, int):
                raise TypeError(f"EngineOptions.image_chunk_pixels must be an int or None, "
                                f"got {type(pixels).__name__} {pixels!r}")
            if pixels < 1:
                raise ValueError(f"EngineOptions.image_chunk_pixels must be >= 1, got {pixels}")

    def chunk_entries(self, width: int, height: int, hardware: bool) -> int:
        """Entries per image-stage chunk for ``width x height`` images (>= 1)."""
        pixels = self.image_chunk_pixels
        if pixels is None:
            pixels = _CHUNK_PIXELS_HARDWARE if hardware else _CHUNK_PIXELS_SOFTWARE
        return max(1, pixels // (width * height))
