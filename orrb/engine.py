"""The in-process render engine: one MuJoCo model, one GL context, a component chain.

``RenderEngine`` renders a batch of states for the configured cameras with MuJoCo's
own offscreen renderer (EGL: Mesa llvmpipe on a CPU, the NVIDIA driver on a GPU).
Per entry: restore the per-entry model arrays to base, apply the entry's qpos
(kinematics only), run the component chain with the entry's random streams
(``_EntrySetup``), build every camera's scene, then render the cameras side by side into
one framebuffer and read them back at once (colour and depth from the same pass; see
``_Tiles``), segmentation from a second pass when asked for. Image-space components
(post-processing) work on chunks of drawn entries (``_ImageStage``).

Three threads share a batch: the render thread draws entry i while the "setup" worker sets
entry i + 1 up (the model and data are free once entry i's scenes are built) and the
"image" worker post-processes earlier entries. The work and its order are those of one
thread, so outputs do not depend on the threads.

The engine is not thread-safe and its GL context lives in the process that created
it; :class:`orrb.LocalRenderer` gives it one thread of its own.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import warnings

import mujoco
import numpy as np

from orrb.components.base import HIDDEN_GROUP, Component, EntryContext, SceneContext, registry
from orrb.components.properties import property_specs
from orrb.config import ComponentSpec, RemoteRendererConfig, RendererConfig
from orrb.errors import ConfigError, RendererError, did_you_mean
from orrb.scene import Mapping, compile_spec, load_spec, segmentation_classes

__all__ = ["Frames", "RenderEngine"]

# Model arrays components may write per entry; restored from the compiled model before
# every entry so that entries never leak into each other (missing ones are skipped).
_ENTRY_ARRAYS = (
    "cam_pos", "cam_quat", "cam_fovy", "cam_mode", "body_pos", "body_quat",
    "geom_rgba", "geom_matid", "geom_group", "geom_size", "geom_pos", "geom_quat", "geom_dataid",
    "site_group", "site_rgba", "site_size", "site_matid",
    "mat_rgba", "mat_emission", "mat_specular", "mat_shininess", "mat_reflectance", "mat_metallic",
    "mat_roughness", "mat_texid", "mat_texrepeat",
    "light_pos", "light_dir", "light_diffuse", "light_ambient", "light_specular", "light_active",
    "light_cutoff", "light_exponent", "light_castshadow", "light_intensity", "light_attenuation",
    "light_mode", "light_type", "light_directional",
)
_HEADLIGHT_FIELDS = ("active", "ambient", "diffuse", "specular")
# Tiled rendering: at most this many frames per readback, this many pixels in all, and a
# framebuffer of at most this size (MSAA multiplies its memory).
_MAX_TILES = 24
_TILE_PIXELS = 1 << 20
_MAX_TILED_WIDTH = 4096
_MAX_TILED_HEIGHT = 2048
# Image-space components (post-processing) run on a worker thread while the render thread draws
# the next entries (mjr_render and the readback release the GIL: on a GPU the render thread
# mostly waits for the GPU, on llvmpipe it bins vertices while the rasterizer threads wait), on
# chunks of entries of about this many pixels per camera, each as soon as its entries are
# drawn. Chunks keep numpy temporaries small (61 MB per float32 copy of a 128-entry batch at
# 200x200 cost 3x the time per image of 16-entry chunks) and leave little work after the last
# entry. Measured best: 16 entries at 200x200 on a GPU, 4 on llvmpipe (full Dactyl chain there:
# 0.92x no components, against 0.89x in the render thread; 41 interleaved batches).
_IMAGE_CHUNK_PIXELS_GPU = 640_000
_IMAGE_CHUNK_PIXELS_CPU = 160_000
_MAP_FIELDS = ("znear", "zfar")
# Render and GL contexts of engines closed from a thread that could not make their GL context
# current: kept so that their destructors never run GL calls under another context.
_ABANDONED: list = []


@dataclasses.dataclass
class Frames:
    """What the cameras produced for a batch, handed to image-space components.

    The engine hands the batch over in consecutive chunks of entries (``entries``), each
    as soon as it is drawn, so image-space work overlaps the drawing of later entries;
    the arrays hold only that chunk (``B`` = its length).

    Attributes:
        color: ``{camera: uint8 [B, H, W, 3|4]}`` (components may edit in place).
        depth: ``{camera: float32 [B, H, W]}`` metres along the camera axis, 0 = nothing hit.
        fovy: ``{camera: float64 [B]}`` vertical field of view (degrees) each entry rendered with.
        entries: which entries of the batch these are (index per-entry state with it).
    """

    color: dict[str, np.ndarray]
    depth: dict[str, np.ndarray]
    fovy: dict[str, np.ndarray]
    entries: slice = dataclasses.field(default_factory=lambda: slice(None))

    def chunk(self, entries: slice) -> Frames:
        """The frames of ``entries`` (views, not copies)."""
        return Frames({c: a[entries] for c, a in self.color.items()}, {c: a[entries] for c, a in self.depth.items()},
                      {c: a[entries] for c, a in self.fovy.items()}, entries)


class RenderEngine:
    """Renders batches of states for one scene (SPEC §4).

    Args:
        config: what to render (cameras, size, modalities, scene files, render settings).
        renderer_config: the component chain; defaults to ``config.renderer_config_path``
            (none when that is unset).

    Raises:
        FileNotFoundError / ConfigError: a missing or malformed model, mapping or
            renderer config file (the message names it), an unknown camera.
        RendererError: no GL context could be created.
    """

    def __init__(self, config: RemoteRendererConfig, renderer_config: RendererConfig | None = None):
        # Handles first, so close() is safe whatever fails below.
        self._gl = None
        self._con = None
        self._closed = False
        self._workers: dict[str, concurrent.futures.ThreadPoolExecutor] = {}  # "setup", "image"
        self._gpu = False  # the GL renderer is hardware (not llvmpipe/softpipe); set with the context
        self._image_overlap = True  # image stage on a worker thread (False: in the render thread, to compare)
        config.validate()
        self.config = config.copy()
        self.width = config.image_width
        self.height = config.image_height
        self._xml_path = config.resolve(config.model_xml_path)
        self._mapping_path = config.resolve(config.model_mapping_path)
        if renderer_config is None and config.renderer_config_path:
            renderer_config = RendererConfig.load(config.resolve(config.renderer_config_path))
        self._chain: list[Component] = []
        known = registry()
        for spec in (renderer_config or RendererConfig()).components:
            self._chain.append(known[spec.type](spec.name, spec.path, dict(spec.properties)))
        try:
            self._build()
        except BaseException:
            self.close()
            raise

    # -- building ------------------------------------------------------------------------------
    def _build(self) -> None:
        """Compiles the model with every component's structural edits and (re)creates GL state."""
        spec = load_spec(self._xml_path)
        for component in self._chain:
            component.edit_spec(spec)
        model = compile_spec(spec, self._xml_path)
        settings = self.config.render_settings
        if settings.msaa_samples is not None:
            model.vis.quality.offsamples = settings.msaa_samples
        if settings.shadow_size is not None:
            model.vis.quality.shadowsize = settings.shadow_size
        # Grow the offscreen framebuffer when the image is larger than the model allows.
        # An entry's cameras render as tiles of one framebuffer, read back together: fewer, larger
        # readbacks are cheaper (MEASURED.md: 1.24-1.42x at 64 px with MSAA). See _Tiles.
        ncam = len(self.config.camera_names)
        slots = max(1, min(ncam, _MAX_TILES, _TILE_PIXELS // (self.width * self.height)))
        self._tile_cols = max(1, min(slots, _MAX_TILED_WIDTH // self.width))
        self._tile_rows = max(1, min(-(-slots // self._tile_cols), _MAX_TILED_HEIGHT // self.height))
        model.vis.global_.offwidth = self._tile_cols * self.width
        model.vis.global_.offheight = self._tile_rows * self.height

        mapping = Mapping(model, self._mapping_path)
        camera_list = [mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_CAMERA, i) or "" for i in range(model.ncam)]
        camera_ids = []
        for name in self.config.camera_names:
            cid = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_CAMERA, name)
            if cid < 0:
                raise ConfigError(
                    f"unknown camera {name!r}{did_you_mean(name, camera_list)}; "
                    f"the model {self._xml_path} has cameras {camera_list}"
                )
            camera_ids.append(cid)

        self._make_context(model)
        self.model = model
        self.data = mujoco.MjData(model)
        self.mapping = mapping
        self.camera_ids = np.array(camera_ids, dtype=int)
        self.geom_class, self.class_names = segmentation_classes(model)
        # one scene per camera: an entry's scenes are built at once, after which the model and data
        # are free for the next entry's setup while these draw (see render)
        self._scenes = [mujoco.MjvScene(model, maxgeom=max(1000, 2 * (model.ngeom + model.nsite) + 100))
                        for _ in camera_ids]
        if settings.shadows is not None:
            for scene in self._scenes:
                scene.flags[mujoco.mjtRndFlag.mjRND_SHADOW] = settings.shadows
        self._option = mujoco.MjvOption()
        self._option.geomgroup[HIDDEN_GROUP] = 0
        self._option.sitegroup[HIDDEN_GROUP] = 0
        self._camera = mujoco.MjvCamera()
        self._camera.type = mujoco.mjtCamera.mjCAMERA_FIXED
        self._read_cache: dict = {}  # (cols, rows, depth) -> readback rectangle and buffers
        self._viewports = [mujoco.MjrRect(col * self.width, row * self.height, self.width, self.height)
                           for row in range(self._tile_rows) for col in range(self._tile_cols)]
        self._base = {name: getattr(model, name).copy() for name in _ENTRY_ARRAYS
                      if hasattr(model, name) and getattr(model, name).size}
        self._base_headlight = {f: np.copy(getattr(model.vis.headlight, f)) for f in _HEADLIGHT_FIELDS}
        self._base_map = {f: float(getattr(model.vis.map, f)) for f in _MAP_FIELDS}
        self._scene_context = SceneContext(model, list(self.config.camera_names), self.width, self.height)
        for component in self._chain:
            component.initialize(self._scene_context)

    def _make_context(self, model: mujoco.MjModel) -> None:
        if self._gl is None:
            try:
                self._gl = _gl_context_class()(max(self.width, 1), max(self.height, 1))
            except Exception as e:
                raise RendererError(
                    f"cannot create an OpenGL context (MUJOCO_GL={__import__('os').environ.get('MUJOCO_GL')!r}): {e}. "
                    "On a headless Linux machine install EGL and Mesa (apt-get install libegl1 libgl1-mesa-dri)."
                ) from e
        self._gl.make_current()
        if self._con is not None:
            self._con.free()
            self._con = None
        self._con = mujoco.MjrContext(model, mujoco.mjtFontScale.mjFONTSCALE_50)
        self._gpu = _hardware_renderer()
        self._one_blit: bool | None = None  # colour and depth read with one blit (checked on first use)
        mujoco.mjr_setBuffer(mujoco.mjtFramebuffer.mjFB_OFFSCREEN, self._con)
        self._con.readDepthMap = mujoco.mjtDepthMap.mjDEPTH_ZEROFAR

    # -- properties ----------------------------------------------------------------------------
    @property
    def camera_names(self) -> list[str]:
        return list(self.config.camera_names)

    @property
    def columns(self) -> int:
        """How many qpos columns a request needs."""
        return self.mapping.columns

    @property
    def components(self) -> list[Component]:
        return list(self._chain)

    def renderer_config(self) -> RendererConfig:
        """The running chain as a :class:`RendererConfig` (properties that differ from defaults)."""
        config = RendererConfig()
        for component in self._chain:
            specs = property_specs(component.Properties)
            values = {n: getattr(component.props, n) for n in specs if getattr(component.props, n) != specs[n].default}
            config.components.append(ComponentSpec(component.type_name, component.name, component.path, values))
        return config

    def streams(self) -> dict[str, tuple[type, int]]:
        """Auxiliary streams of the enabled components: ``{name: (dtype, k)}``."""
        out: dict[str, tuple[type, int]] = {}
        for component in self._chain:
            if component.props.enabled:
                out.update(component.streams())
        return out

    # -- update ----------------------------------------------------------------------------------
    def update(self, renderer_config: RendererConfig) -> None:
        """Merges a renderer config into the running chain (SPEC §6).

        Same-named components get the given properties merged in; new names are
        appended; the model is rebuilt only when a structural property changed or a
        structural component was added.
        """
        if not isinstance(renderer_config, RendererConfig):
            raise TypeError(f"update() takes an orrb.RendererConfig, got {type(renderer_config).__name__}")
        known = registry()
        by_name = {c.name: c for c in self._chain}
        # check everything before changing anything
        for spec in renderer_config.components:
            current = by_name.get(spec.name)
            if current is not None and current.type_name != spec.type:
                raise ConfigError(
                    f"update: component {spec.name!r} is a {current.type_name}, the update gives a {spec.type}"
                )
        rebuild = False
        for spec in renderer_config.components:
            current = by_name.get(spec.name)
            if current is None:
                component = known[spec.type](spec.name, spec.path, dict(spec.properties))
                if component.needs_spec():
                    rebuild = True
                else:
                    component.initialize(self._scene_context)
                self._chain.append(component)
                by_name[spec.name] = component
                continue
            changed = current.set(spec.properties)
            if spec.path and spec.path != current.path:
                current.path = spec.path
                if current.needs_spec():
                    rebuild = True
                else:
                    current.initialize(self._scene_context)
                continue
            if changed & current.structural:
                rebuild = True
            elif changed:
                current.update(changed)
        if rebuild:
            self._build()

    # -- rendering -------------------------------------------------------------------------------
    def render(self, qpos: np.ndarray, seeds: np.ndarray) -> dict[str, np.ndarray]:
        """Renders a checked batch.

        Args:
            qpos: ``float64 [B, K]`` request states (K >= ``columns``), already checked.
            seeds: ``uint64 [B]`` one seed per entry.

        Returns:
            ``{camera: uint8 [B, H, W, 3|4], camera_depth: float32 [B, H, W],
            camera_normals: float32 [B, H, W, 3], camera_segmentation: uint8 [B, H, W],
            stream: [B, k]}`` for the modalities enabled in the config.
        """
        if self._closed:
            raise RendererError("render() called after close()")
        cfg = self.config
        n, h, w = qpos.shape[0], self.height, self.width
        full = self.mapping.apply(qpos)
        active = [c for c in self._chain if c.props.enabled]
        wants_depth = cfg.render_depth or cfg.render_normals or cfg.render_alpha or any(
            getattr(c, "needs_depth", False) for c in active)
        channels = 4 if cfg.render_alpha else 3
        color = {c: np.empty((n, h, w, channels), np.uint8) for c in cfg.camera_names}
        depth = {c: np.empty((n, h, w), np.float32) for c in cfg.camera_names} if wants_depth else {}
        fovy = {c: np.empty(n) for c in cfg.camera_names}
        segmentation = {c: np.empty((n, h, w), np.uint8) for c in cfg.camera_names} if cfg.render_segmentation else {}
        aux = {name: np.zeros((n, k), dtype) for c in active for name, (dtype, k) in c.streams().items()}

        names = list(cfg.camera_names)
        tiles = _Tiles(self, wants_depth, color, depth)
        frames = Frames(color, depth, fovy)
        image_stage = [end for c in active if (end := getattr(c, "end_batch", None)) is not None]
        chunks = _ImageStage(self, image_stage, frames, n, self._image_overlap)
        setup = _EntrySetup(self, full, seeds, active, aux, fovy)
        for component in active:
            begin = getattr(component, "begin_batch", None)
            if begin is not None:
                begin(n)
        self._gl.make_current()  # another renderer in this process may have taken the thread
        # Two-stage pipeline: once entry i's scenes are built, the model and data are free, and
        # entry i + 1 is set up (its components run) on a worker thread while entry i draws:
        # mjr_render and the readback release the GIL. On llvmpipe the drawing thread bins
        # vertices alone while the rasterizer threads wait (measured: 1.54 of 2 cores busy), on a
        # GPU it waits for the GPU. The same work in the same order as on one thread: outputs are
        # unchanged. Without components there is nothing worth handing over.
        ahead_pool = self._worker("setup") if n > 1 and active else None
        ahead = None
        try:
            if n:
                setup(0)
            for i in range(n):
                clip = self._update_scenes()
                ahead = ahead_pool.submit(setup, i + 1) if ahead_pool is not None and i + 1 < n else None
                try:
                    tiles.draw(i, clip)
                    if segmentation:
                        self._segment(i, names, segmentation)
                finally:
                    if ahead is not None:
                        concurrent.futures.wait([ahead])  # the model is the setup's until it is done
                if ahead is not None:
                    error, ahead = ahead.exception(), None
                    if error is not None:
                        raise error
                elif i + 1 < n:
                    setup(i + 1)
                chunks.entry_done(i)
        except BaseException:
            # nothing may outlive render() (a Ctrl-C can interrupt the wait above), and no local
            # may keep a future or the error: with this frame in the traceback that would make
            # a cycle through the engine, which the collector could then finalize on any thread
            _settle(ahead)
            ahead = error = None
            chunks.drain()
            raise
        chunks.wait()

        out: dict[str, np.ndarray] = {}
        for name in cfg.camera_names:
            if cfg.render_alpha:
                color[name][..., 3] = np.where(depth[name] > 0, 255, 0)
            out[name] = color[name]
            if cfg.render_depth:
                out[f"{name}_depth"] = depth[name]
            if cfg.render_normals:
                out[f"{name}_normals"] = normals_from_depth(depth[name], fovy[name])
            if segmentation:
                out[f"{name}_segmentation"] = segmentation[name]
        out.update(aux)
        return out

    def _linear_depth(self, raw: np.ndarray, znear: float, zfar: float, out: np.ndarray) -> None:
        """Reversed-Z depth buffer values in [0, 1] (0 = far plane) to metres along the axis.

        Writes ``float32`` metres (0 where nothing was hit) into ``out`` (same shape as
        ``raw``). ``znear``/``zfar`` are the model's clip planes (``vis.map``, in units of
        the extent) when the frame was drawn.
        """
        extent = self.model.stat.extent
        near = np.float32(znear * extent)
        far = np.float32(zfar * extent)
        c = -(far + near) / (far - near)
        d = -(np.float32(2) * far * near) / (far - near)
        c = np.float32(-0.5) * c - np.float32(0.5)  # = near / (far - near) > 0: no division by zero
        d = np.float32(-0.5) * d
        # float32 suffices with reversed Z: at most 1e-7 relative error (0.5 um at 5 m) against float64;
        # in place, without temporaries (this runs for every frame)
        np.add(raw, c, out=out)
        np.divide(d, out, out=out)
        out[raw <= 0] = 0.0

    def _update_scenes(self) -> tuple[float, float]:
        """Builds every camera's scene from the current model and data; returns the clip
        planes (``vis.map`` znear, zfar) they are drawn with."""
        for scene, camera_id in zip(self._scenes, self.camera_ids):
            self._camera.fixedcamid = camera_id
            mujoco.mjv_updateScene(self.model, self.data, self._option, None, self._camera,
                                   mujoco.mjtCatBit.mjCAT_ALL, scene)
        clip = self.model.vis.map
        return float(clip.znear), float(clip.zfar)

    def _segment(self, i: int, names: list[str], segmentation: dict[str, np.ndarray]) -> None:
        """Segmentation pass of entry ``i`` from its scenes (tiled like the colour pass, no MSAA
        blending).

        Writes class ids ``uint8 [H, W]`` into ``segmentation[camera][i]``.
        """
        geom_type = int(mujoco.mjtObj.mjOBJ_GEOM)
        h, w = self.height, self.width
        per_read = len(self._viewports)
        for start in range(0, len(names), per_read):
            group = list(range(start, min(start + per_read, len(names))))
            luts = []
            try:
                for slot, c in enumerate(group):
                    scene = self._scenes[c]
                    scene.flags[mujoco.mjtRndFlag.mjRND_SEGMENT] = 1
                    scene.flags[mujoco.mjtRndFlag.mjRND_IDCOLOR] = 1
                    mujoco.mjr_render(self._viewports[slot], scene, self._con)
                    # segment id (colour) -> class, from this camera's scene
                    lut = np.zeros(scene.ngeom + 2, dtype=np.uint8)
                    for k in range(scene.ngeom):
                        g = scene.geoms[k]
                        if g.objtype == geom_type and g.segid >= 0:
                            lut[g.segid + 1] = self.geom_class[g.objid]
                    luts.append(lut)
                rect, rgb_buf, _ = _read_buffers(self, len(group), False)
                mujoco.mjr_readPixels(rgb_buf, None, rect, self._con)
            finally:
                for c in group:
                    self._scenes[c].flags[mujoco.mjtRndFlag.mjRND_SEGMENT] = 0
                    self._scenes[c].flags[mujoco.mjtRndFlag.mjRND_IDCOLOR] = 0
            for slot, (c, lut) in enumerate(zip(group, luts)):
                tile = _tile(rgb_buf, slot, self._tile_cols, h, w).astype(np.uint32)
                ids = tile[..., 0] | (tile[..., 1] << 8) | (tile[..., 2] << 16)
                segmentation[names[c]][i] = lut[np.minimum(ids, len(lut) - 1)]

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
        """Frees the MuJoCo render context (with its GL context current), then the GL context.

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
                          "its GL resources stay allocated until the process exits", ResourceWarning, stacklevel=2)
            return
        try:
            if con is not None:
                con.free()
        finally:
            if gl is not None:
                gl.free()

    def __del__(self):
        # An engine dropped without close() must still free its MuJoCo render context with its
        # own GL context current: freed later by the garbage collector, with another engine's
        # context current, it would delete that engine's framebuffers and textures (same ids).
        try:
            self.close()
        except Exception:
            pass

    def __enter__(self) -> RenderEngine:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _read_buffers(engine: RenderEngine, used: int, wants_depth: bool):
    """The readback rectangle and buffers covering the first ``used`` tile slots."""
    cols = min(used, engine._tile_cols)
    rows = -(-used // engine._tile_cols)
    key = (cols, rows, wants_depth)
    cache = engine._read_cache
    if key not in cache:
        width, height = cols * engine.width, rows * engine.height
        cache[key] = (mujoco.MjrRect(0, 0, width, height), np.empty((height, width, 3), np.uint8),
                      np.empty((height, width), np.float32) if wants_depth else None)
    return cache[key]


def _read_pixels_one_blit(rgb: np.ndarray, depth: np.ndarray, rect: mujoco.MjrRect, con: mujoco.MjrContext) -> None:
    """What ``mjr_readPixels(rgb, depth, rect, con)`` reads from a multisampled offscreen buffer,
    resolving colour and depth with one blit (MuJoCo blits them separately: 0.3 ms more per
    readback on llvmpipe). Depth is the raw buffer value, which is what ``mjr_readPixels``
    returns with ``mjDEPTH_ZEROFAR`` on MuJoCo's reversed-Z float depth buffer; the engine
    checks that on its first readback (see ``_Tiles.flush``)."""
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


def _tile(buffer: np.ndarray, slot: int, cols: int, h: int, w: int) -> np.ndarray:
    """Slot ``slot``'s image in a read-back buffer (bottom row first), with row 0 at the top."""
    row, col = divmod(slot, cols)
    return buffer[row * h:(row + 1) * h][::-1, col * w:(col + 1) * w]


class _EntrySetup:
    """Sets the model and data up for one batch entry: per-entry arrays restored to base, the
    entry's qpos and kinematics, then the component chain with the entry's random streams.

    Holds the engine's model and data but not the engine (it runs on the engine's "setup"
    worker; see :meth:`RenderEngine._worker`).
    """

    def __init__(self, engine: RenderEngine, qpos: np.ndarray, seeds: np.ndarray, active: list[Component],
                 aux: dict[str, np.ndarray], fovy: dict[str, np.ndarray]):
        self.model, self.data = engine.model, engine.data
        self.qpos, self.seeds, self.active = qpos, seeds, active
        self.base_items = list(engine._base.items())
        self.base_headlight = engine._base_headlight
        self.base_map = engine._base_map
        self.entry = EntryContext(engine.model, engine.data, aux, engine.camera_ids)
        self.fovy = [(fovy[name], cam_id) for name, cam_id in zip(engine.config.camera_names, engine.camera_ids)]

    def __call__(self, i: int) -> None:
        model, data, entry = self.model, self.data, self.entry
        for name, base in self.base_items:
            np.copyto(getattr(model, name), base)
        headlight = model.vis.headlight
        for f, v in self.base_headlight.items():
            setattr(headlight, f, v)
        for f, v in self.base_map.items():
            setattr(model.vis.map, f, v)
        data.qpos[:] = self.qpos[i]
        mujoco.mj_kinematics(model, data)
        mujoco.mj_comPos(model, data)  # subtree centres of mass: trackcom/targetbodycom cameras and lights
        mujoco.mj_camlight(model, data)
        entry.index = i
        entry.seed = int(self.seeds[i])
        entry._dirty = False
        for component in self.active:
            entry.rng = np.random.default_rng([entry.seed, component.stream_key])
            component.run(entry)
        entry.kinematics()
        for out, cam_id in self.fovy:
            out[i] = model.cam_fovy[cam_id]


class _Tiles:
    """Draws an entry's frames into the tile slots of the framebuffer and reads them back at
    once (fewer, larger readbacks are cheaper), copying them to the outputs.

    Camera c always draws into slot c (modulo the slots), and every entry is read back on
    its own. Float interpolation and edge snapping depend on a frame's window position, so a
    frame drawn elsewhere can differ in depth bits and in a few edge pixels; positions that
    depend on the batch would break bit-identical outputs between an entry rendered alone,
    in a batch or on another server (SPEC §4). (Tiling several entries per readback was
    measured faster, up to 1.7x mujoco.Renderer at 64 px, but no entry-to-position rule
    kept both that speed and this guarantee.) The depth of each frame is converted with the
    clip planes in force when it was drawn.
    """

    def __init__(self, engine: RenderEngine, wants_depth: bool, color: dict, depth: dict):
        self.engine = engine
        self.wants_depth = wants_depth
        self.color = color
        self.depth = depth
        self.names = list(engine.config.camera_names)
        self.pending: list[tuple[int, int, int, float, float]] = []  # slot, entry, camera, znear, zfar

    def draw(self, i: int, clip: tuple[float, float]) -> None:
        """Draws and reads back every camera of entry ``i`` from its scenes (built with clip
        planes ``clip``)."""
        engine = self.engine
        slots = len(engine._viewports)
        for c, scene in enumerate(engine._scenes):
            slot = c % slots
            if slot == 0:
                self.flush()
            mujoco.mjr_render(engine._viewports[slot], scene, engine._con)
            self.pending.append((slot, i, c, *clip))
        self.flush()

    def flush(self) -> None:
        if not self.pending:
            return
        engine = self.engine
        h, w, cols = engine.height, engine.width, engine._tile_cols
        rect, rgb_buf, depth_buf = _read_buffers(engine, len(self.pending), self.wants_depth)
        if depth_buf is None or not engine._con.offSamples or engine._one_blit is False:
            mujoco.mjr_readPixels(rgb_buf, depth_buf, rect, engine._con)
        elif engine._one_blit:
            _read_pixels_one_blit(rgb_buf, depth_buf, rect, engine._con)
        else:  # not decided yet: use the one-blit read once it gave MuJoCo's bits on a real image
            mujoco.mjr_readPixels(rgb_buf, depth_buf, rect, engine._con)
            # only a frame with edges (several depths and colours) can show a resolve difference
            if depth_buf.min() != depth_buf.max() and rgb_buf.min() != rgb_buf.max():
                rgb_check, depth_check = np.empty_like(rgb_buf), np.empty_like(depth_buf)
                try:
                    _read_pixels_one_blit(rgb_check, depth_check, rect, engine._con)
                    engine._one_blit = bool(np.array_equal(rgb_check, rgb_buf)
                                            and np.array_equal(depth_check, depth_buf))
                except Exception:  # no PyOpenGL, or a GL error: MuJoCo's read
                    engine._one_blit = False
        for slot, i, c, znear, zfar in self.pending:
            name = self.names[c]
            self.color[name][i, ..., :3] = _tile(rgb_buf, slot, cols, h, w)
            if self.wants_depth:
                engine._linear_depth(_tile(depth_buf, slot, cols, h, w), znear, zfar, out=self.depth[name][i])
        self.pending.clear()


def _settle(future: concurrent.futures.Future | None) -> None:
    """Waits until ``future`` is done, through interrupts (it is short and must not outlive
    the caller)."""
    while future is not None:
        try:
            concurrent.futures.wait([future])
            return
        except KeyboardInterrupt:
            continue


def _hardware_renderer() -> bool:
    """True when the current GL context renders on hardware rather than Mesa's software
    rasterizers (llvmpipe, softpipe, swrast)."""
    try:
        from OpenGL import GL

        name = (GL.glGetString(GL.GL_RENDERER) or b"").decode(errors="replace").lower()
    except Exception:  # no PyOpenGL or no current context: assume software, the safe choice
        return False
    return bool(name) and not any(soft in name for soft in ("llvmpipe", "softpipe", "swrast"))


class _ImageStage:
    """Runs the image-space components (``end_batch`` hooks, in chain order).

    On chunks of entries (``_IMAGE_CHUNK_PIXELS_GPU`` or ``_CPU`` pixels per camera), each as
    soon as its entries are drawn: with ``overlap`` on the engine's "image" worker thread,
    otherwise in the render thread; the last chunk always in the render thread (it overlaps
    nothing). Chunking changes no output: every effect is computed per entry.
    """

    def __init__(self, engine: RenderEngine, hooks: list, frames: Frames, n: int, overlap: bool):
        self.hooks, self.frames, self.n = hooks, frames, n
        pixels = _IMAGE_CHUNK_PIXELS_GPU if engine._gpu else _IMAGE_CHUNK_PIXELS_CPU
        self.chunk_size = max(1, pixels // (engine.width * engine.height))
        # the executor, not the engine: a work item must not keep the engine alive, or the
        # engine could be finalized on its own worker thread
        self.pool = engine._worker("image") if overlap and hooks and n > self.chunk_size else None
        self.start = 0
        self.pending: list[concurrent.futures.Future] = []

    def entry_done(self, i: int) -> None:
        """Entry ``i`` is drawn and read back: hands over a full chunk (or the last one)."""
        if any(future.done() and future.exception() is not None for future in self.pending):
            self.wait()  # a chunk failed: stop drawing, raise it
        if not self.hooks or (i + 1 - self.start < self.chunk_size and i + 1 < self.n):
            return
        chunk = self.frames.chunk(slice(self.start, i + 1))
        self.start = i + 1
        if self.pool is not None and i + 1 < self.n:
            self.pending.append(self.pool.submit(self._run, chunk))
        else:  # the last chunk overlaps nothing: no hand-over (after the earlier chunks, in order)
            self.wait()
            self._run(chunk)

    def _run(self, chunk: Frames) -> None:
        for hook in self.hooks:
            hook(chunk)

    def drain(self) -> list[concurrent.futures.Future]:
        """Waits for every chunk, ignoring their failures (the render failed already)."""
        pending, self.pending = self.pending, []
        concurrent.futures.wait(pending)
        return pending

    def wait(self) -> None:
        """Waits for every chunk; re-raises the first failure in the render thread."""
        errors = [future.exception() for future in self.drain()]
        error = next((e for e in errors if e is not None), None)
        errors = None
        if error is not None:
            try:
                raise error
            finally:
                error = None  # no cycle through this frame (see RenderEngine.render)


def _gl_context_class():
    """The GL context class to render with.

    MuJoCo picks its backend from ``MUJOCO_GL`` when ``mujoco`` is first imported;
    a user who imported mujoco before orrb (with nothing set) would get GLFW, which
    fails without a display. orrb renders offscreen only: EGL unless the user chose
    another backend explicitly.
    """
    import os

    backend = os.environ.get("MUJOCO_GL", "").lower().strip()
    if backend in ("", "egl") or (backend in ("glfw", "enable", "enabled", "on", "true", "1")
                                  and not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY")):
        from mujoco.egl import GLContext

        return GLContext
    if backend == "osmesa":
        from mujoco.osmesa import GLContext

        return GLContext
    return mujoco.GLContext


def normals_from_depth(depth: np.ndarray, fovy_deg: np.ndarray) -> np.ndarray:
    """Camera-space unit normals from depth, encoded to [0, 1] as ``(n + 1) / 2``.

    Points are unprojected with the pinhole model MuJoCo renders with (vertical
    field of view ``fovy``, square pixels). Each pixel's tangents are taken towards
    the neighbour (left/right, up/down) whose depth is closer, so normals stay
    exact on flat surfaces up to their edges. Background (depth 0) is all zeros.

    Args:
        depth: ``float32 [B, H, W]`` metres along the camera axis, 0 = nothing hit.
        fovy_deg: ``[B]`` vertical field of view of each entry, degrees.

    Returns:
        ``float32 [B, H, W, 3]``: x right, y up, z towards the camera.
    """
    depth = np.asarray(depth, dtype=np.float64)
    b, h, w = depth.shape
    f = (h / 2.0) / np.tan(np.radians(np.asarray(fovy_deg, dtype=np.float64)) / 2.0)  # [B] pixels
    u = (np.arange(w) + 0.5 - w / 2.0)[None, None, :]
    v = (h / 2.0 - (np.arange(h) + 0.5))[None, :, None]
    inv_f = (1.0 / f)[:, None, None]
    points = np.stack([u * depth * inv_f, v * depth * inv_f, -depth], axis=-1)  # [B, H, W, 3]
    hit = depth > 0

    def tangent(axis: int) -> np.ndarray:
        # forward and backward differences along `axis`, the one with smaller |dz| (and a hit neighbour) wins
        fwd = np.zeros_like(points)
        bwd = np.zeros_like(points)
        fwd_ok = np.zeros_like(hit)
        bwd_ok = np.zeros_like(hit)
        sl = [slice(None)] * 4
        lo, hi = list(sl), list(sl)
        lo[axis], hi[axis] = slice(0, -1), slice(1, None)
        diff = points[tuple(hi)] - points[tuple(lo)]
        both = hit[tuple(hi[:3])] & hit[tuple(lo[:3])]
        fwd[tuple(lo)] = diff
        fwd_ok[tuple(lo[:3])] = both
        bwd[tuple(hi)] = diff
        bwd_ok[tuple(hi[:3])] = both
        fwd_jump = np.where(fwd_ok, np.abs(fwd[..., 2]), np.inf)
        bwd_jump = np.where(bwd_ok, np.abs(bwd[..., 2]), np.inf)
        use_fwd = fwd_jump <= bwd_jump
        return np.where(use_fwd[..., None], fwd, bwd), fwd_ok | bwd_ok

    tx, ok_x = tangent(2)  # along columns: +x
    ty, ok_y = tangent(1)  # along rows: -y
    normals = np.cross(ty, tx)
    norm = np.linalg.norm(normals, axis=-1, keepdims=True)
    valid = hit & ok_x & ok_y & (norm[..., 0] > 0)
    normals = np.where(valid[..., None], normals / np.where(norm > 0, norm, 1.0), np.array([0.0, 0.0, 1.0]))
    # a visible surface faces the camera: n . p < 0
    flip = np.sum(normals * points, axis=-1) > 0
    normals[flip] *= -1
    encoded = np.where(hit[..., None], (normals + 1.0) / 2.0, 0.0)
    return encoded.astype(np.float32)
