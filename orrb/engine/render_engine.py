"""``RenderEngine``: one MuJoCo model, one GL context, a component chain; renders batches.

Per entry: :class:`~orrb.engine.entry_setup.EntrySetup` restores the model to its base
state, applies the entry's qpos (kinematics only) and runs the component chain with the
entry's random streams; :class:`~orrb.engine.camera_scenes.CameraScenes` builds every
camera's scene; :class:`~orrb.engine.frames.FrameReader` draws them as tiles of one
framebuffer, several entries per readback (an entry's tile fixed by its seed), and reads a
chunk of tiles back at once (colour and depth from the same pass), plus a segmentation pass
when asked for. :class:`~orrb.engine.image_stage.ImageStage` runs the
image-space components (post-processing) on chunks of drawn entries, unless
:class:`~orrb.engine.gl_post.GLPostStage` post-processes the tiles on the GPU right before
their readback (``EngineOptions.gl_post_processing``); the modality maths
(depth in metres, normals, segmentation classes) are the pure functions of
:mod:`orrb.engine.modalities`.

Three threads share a batch: the render thread draws entry i while the "setup" worker sets
entry i + 1 up (the model and data are free once entry i's scenes are built) and the
"image" worker post-processes earlier entries. The work and its order are those of one
thread, so outputs do not depend on the threads (:class:`EngineOptions` switches them off).

The engine is not thread-safe and its GL context lives in the process that created
it; :class:`orrb.LocalRenderer` gives it one thread of its own.
"""

from __future__ import annotations

import concurrent.futures
import warnings

import numpy as np

from orrb.components.base import Frames, SceneContext
from orrb.config import RemoteRendererConfig, RendererConfig
from orrb.engine.compiled_scene import CompiledScene
from orrb.engine.engine_base import EngineBase
from orrb.engine.entry_setup import EntrySetup
from orrb.engine.frames import FrameReader, TileLayout
from orrb.engine.gl_post import GLPostProcessor, GLPostStage
from orrb.engine.image_stage import ImageStage
from orrb.engine.options import EngineOptions
from orrb.engine.outputs import BatchOutputs
from orrb.errors import RendererError

__all__ = ["RenderEngine"]


class RenderEngine(EngineBase):
    """Renders batches of states for one scene.

    Args:
        config: what to render (cameras, size, modalities, scene files, render settings).
        renderer_config: the component chain; defaults to ``config.renderer_config_path``
            (none when that is unset).
        options: how to schedule the work (:class:`EngineOptions`; only its tiling of entries and
            its post-processing path can change output bits, by rounding).

    Raises:
        TypeError: ``config`` or ``options`` of the wrong kind.
        FileNotFoundError / ConfigError: a missing or malformed model, mapping or
            renderer config file (the message names it), an unknown camera.
        RendererError: no GL context could be created.

    Example::

        with RenderEngine(config) as engine:
            out = engine.render(qpos, seeds)   # qpos float64 [B, K], seeds uint64 [B]
        out['vision_cam_left']                 # uint8 [B, H, W, 3]
    """

    def __init__(self, config: RemoteRendererConfig, renderer_config: RendererConfig | None = None,
                 options: EngineOptions | None = None):
        # Handles first, so close() is safe whatever fails below.
        self._reader: FrameReader | None = None
        self._tiles: TileLayout | None = None
        self._closed = False
        self._gl_post_failed = False
        self._workers: dict[str, concurrent.futures.ThreadPoolExecutor] = {}  # "setup", "image"
        super().__init__(config, renderer_config, options)
        try:
            self._build()
        except BaseException:
            self.close()
            raise

    # -- building ------------------------------------------------------------------------------
    def _build(self) -> None:
        """Compiles the model with every component's structural edits, binds the GL side to it
        and initializes the chain."""
        cfg, options = self.config, self._options
        if self._reader is None:
            self._reader = FrameReader(cfg.image_width, cfg.image_height, options.one_blit_readback,
                                       options.pbo_readback)
            self._reader.post_process = GLPostStage()
            self._tiles = TileLayout.for_cameras(len(cfg.camera_names), cfg.image_width, cfg.image_height,
                                                 options.readback_entries(self._reader.hardware))
        compiled = CompiledScene.compile(self._xml_path, self._mapping_path, self._chain, list(cfg.camera_names),
                                         cfg.render_settings, self._tiles)
        self._reader.bind(compiled.model, self._tiles)
        self._scene = compiled
        self._chain.initialize(SceneContext(compiled.model, list(cfg.camera_names), cfg.image_width, cfg.image_height))

    # -- properties ----------------------------------------------------------------------------
    @property
    def gl_hardware(self) -> bool:
        """True when the GL context renders on hardware (not a software rasterizer such as llvmpipe)."""
        return self._reader is not None and self._reader.hardware

    @property
    def tiles(self) -> TileLayout:
        """Where frames are drawn: ``tiles.groups`` entries per readback at most."""
        return self._tiles

    @property
    def pbo_readback(self) -> bool:
        """Whether readbacks go through pixel buffer objects (``EngineOptions.pbo_readback``)."""
        return self._reader is not None and self._reader.pbo

    @property
    def one_blit_readback(self) -> bool | None:
        """Whether colour and depth are read back with one resolve blit: None until the first
        readback of a multisampled frame has checked it against ``mjr_readPixels``."""
        return None if self._reader is None else self._reader.one_blit

    # -- rendering -------------------------------------------------------------------------------
    def render(self, qpos: np.ndarray, seeds: np.ndarray) -> dict[str, np.ndarray]:
        """Renders a checked batch.

        Args:
            qpos: ``float64 [B, K]`` request states (K >= ``columns``), already checked.
            seeds: ``uint64 [B]`` one seed per entry.

        Returns:
            one fresh array per output of ``ResponseLayout.from_config(config, streams())``,
            in its order: per camera ``uint8 [B, H, W, 3|4]`` colour, ``float32 [B, H, W]``
            depth in metres, ``float32 [B, H, W, 3]`` normals, ``uint8 [B, H, W]``
            segmentation (as enabled), then every stream ``[B, k]``.

        Raises:
            RendererError: the engine is closed, or ``EngineOptions.gl_post_processing`` is True
                and the GL post-processing passes cannot be set up on this GL context.
        """
        active, wants_depth, arrays, batch, setup = self.plan_batch(qpos, seeds)
        cfg, n = self.config, qpos.shape[0]
        options = self._options
        image_components = [c for c in active if c.has_image_stage()]
        self._reader.make_current()  # another renderer in this process may have taken the thread
        on_gl = self._gl_post_components(image_components)
        image_components = image_components[len(on_gl):]
        if on_gl and not (cfg.render_depth or cfg.render_normals or cfg.render_alpha
                          or any(c.needs_depth for c in image_components)):
            arrays.depth.clear()  # only the GL passes needed depth: they read it on the GPU
        # the executors, not the engine: a work item must not keep the engine alive, or the engine
        # could be finalized on its own worker thread
        image = ImageStage(image_components, batch, Frames(arrays.color, arrays.depth, arrays.fovy), n,
                           options.chunk_entries(cfg.image_width, cfg.image_height, self._reader.hardware),
                           self._worker("image") if options.image_overlap and image_components else None)
        setup_pool = self._worker("setup") if options.setup_ahead and n > 1 and active else None
        for component in active:
            component.begin_batch(batch)
        post = self._reader.post_process
        post.begin(on_gl, batch)
        try:
            self._draw(self._tiles.groups_of(seeds), setup, setup_pool, image, arrays)
        finally:
            post.end()
        return arrays.finish(cfg)

    @property
    def gl_post_processing(self) -> bool:
        """Whether post-processing runs as GL passes before readback: ``EngineOptions.gl_post_processing``,
        or with None, by the GL context: numpy on a software rasterizer (llvmpipe, where the GL
        passes were measured slower), the GL passes on hardware (chosen by design: not yet
        measured on a GPU), unless they could not be set up there (then numpy, with a warning)."""
        choice = self._options.gl_post_processing
        return choice if choice is not None else (self.gl_hardware and not self._gl_post_failed)

    def _gl_post_components(self, image_components: list) -> list:
        """The image-stage components the GL passes take: the leading post-processors (those
        after another image-space component stay on the CPU, after it, in chain order).
        Sets the passes up on first use (the GL context current).

        Raises:
            RendererError: the passes cannot be set up while ``gl_post_processing`` is True.
        """
        if not self.gl_post_processing or not image_components \
                or not GLPostProcessor.supports(image_components[0]):
            return []
        try:
            self._reader.post_process.prepare(self._reader.context)
        except Exception as e:
            if self._options.gl_post_processing:
                raise RendererError(f"EngineOptions(gl_post_processing=True): the GL post-processing passes "
                                    f"cannot be set up on this GL context: {e}") from e
            self._gl_post_failed = True
            warnings.warn(f"GL post-processing passes cannot be set up on this GL context ({e}); "
                          "post-processing with numpy instead", RuntimeWarning, stacklevel=3)
            return []
        k = 0
        while k < len(image_components) and GLPostProcessor.supports(image_components[k]):
            k += 1
        return image_components[:k]

    def _draw(self, groups: np.ndarray, setup: EntrySetup, setup_pool: concurrent.futures.ThreadPoolExecutor | None,
              image: ImageStage, arrays: BatchOutputs) -> None:
        """Sets up, draws and reads back every entry, handing read entries to the image stage.

        Entry i draws into the tiles of its group ``groups[i]``; when that group already holds
        an entry of the current chunk, the chunk is read back first (consecutive seeds fill
        every group before one repeats), while entry i + 1 is set up (the chunk's frames are
        in the framebuffer, its scenes are needed again only by a segmentation pass, which
        is then read back before entry i's scenes are built).

        Two-stage pipeline: once entry i's scenes are built, the model and data are free, and
        entry i + 1 is set up (its components run) on ``setup_pool`` while entry i draws:
        ``mjr_render`` and the readback release the GIL. On llvmpipe the drawing thread bins
        vertices alone while the rasterizer threads wait, on a GPU it waits for the GPU. The
        same work in the same order as on one thread: outputs are unchanged.
        """
        reader, scene = self._reader, self._scene
        scenes = scene.scenes
        n = len(groups)
        reader.begin(arrays.color, arrays.depth, arrays.segmentation, list(self.config.camera_names),
                     scene.geom_class)
        segmenting = bool(arrays.segmentation)
        ahead = error = None
        try:
            if n:
                setup(0)
            for i in range(n):
                group = int(groups[i])
                full = reader.occupied(group)
                if full and segmenting:  # the segmentation pass draws the chunk's scenes again
                    full = self._flush(reader, image)
                clip = scenes.build(scene.model, scene.data, group)
                ahead = setup_pool.submit(setup, i + 1) if setup_pool is not None and i + 1 < n else None
                try:
                    if full:  # read the chunk back while entry i + 1 is set up
                        self._flush(reader, image)
                    reader.draw(scenes.scenes(group), i, group, clip)
                finally:
                    if ahead is not None:
                        concurrent.futures.wait([ahead])  # the model is the setup's until it is done
                if ahead is not None:
                    error, ahead = ahead.exception(), None
                    if error is not None:
                        raise error
                elif i + 1 < n:
                    setup(i + 1)
            for done in reader.finish():
                image.entry_done(done)
        except BaseException:
            # nothing may outlive render() (a Ctrl-C can interrupt the wait above), and no local
            # may keep a future or the error: with this frame in the traceback that would make
            # a cycle through the engine, which the collector could then finalize on any thread
            _settle(ahead)
            ahead = error = None
            image.drain()
            raise
        image.wait()

    @staticmethod
    def _flush(reader: FrameReader, image: ImageStage) -> bool:
        """Reads the current chunk back and hands its read entries to the image stage; False."""
        for done in reader.flush():
            image.entry_done(done)
        return False

    # -- lifecycle ---------------------------------------------------------------------------------
    def _worker(self, name: str) -> concurrent.futures.ThreadPoolExecutor:
        """The engine's worker thread ``name`` ("setup": entry setup; "image": image-space
        components), created on first use. Work items must not reference the engine: one
        holding its last reference would finalize it on the worker thread, where its GL
        context cannot be made current."""
        if self._closed:
            raise RendererError("render() called after close()")
        if name not in self._workers:
            self._workers[name] = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix=f"orrb-{name}")
        return self._workers[name]

    def close(self) -> None:
        """Stops the worker threads and frees the GL side (see :meth:`FrameReader.close`).

        Idempotent and safe on a half-built engine. Call it from the thread that renders: a
        GL context current in another thread cannot be made current here, and the contexts
        are then left allocated (with a ``ResourceWarning``) rather than freed under another
        engine's context, which would delete that engine's framebuffers (same GL ids).
        """
        self._closed = True
        workers, self._workers = self._workers, {}
        for pool in workers.values():
            # render() leaves no work behind; no join, which would fail if an engine were
            # finalized on a worker's own thread
            pool.shutdown(wait=False)
        reader, self._reader = self._reader, None
        if reader is not None:
            reader.close()

    def __del__(self):
        # An engine dropped without close() must still free its GL side with its own context
        # current (see FrameReader.close).
        try:
            self.close()
        except Exception:
            pass


def _settle(future: concurrent.futures.Future | None) -> None:
    """Waits until ``future`` is done, through interrupts (it is short and must not outlive
    the caller)."""
    while future is not None:
        try:
            concurrent.futures.wait([future])
            return
        except KeyboardInterrupt:
            continue
