"""``WarpRenderEngine``: the render engine on MuJoCo Warp's batch ray tracer (``backend="warp"``).

The same interface as :class:`~orrb.engine.RenderEngine` (``render(qpos, seeds)``, ``update``,
``renderer_config``, ``streams``, ``columns``, ``class_names``, ``model``, ``close``) and the
same response layout, but every entry of a batch (or of a chunk of it) is one *world* of one
``mujoco_warp`` model, and all worlds and cameras are ray traced in one launch.

Per entry the component chain runs exactly as in the GL engine
(:class:`~orrb.engine.entry_setup.EntrySetup`: base state restored, qpos applied, every
component's ``run`` with the entry's random stream), on the host model. What the entry then
looks like is gathered into per-world arrays: world poses from the host kinematics
(``geom_xpos``/``geom_xmat``, ``cam_xpos``/``cam_xmat``, ``light_xpos``/``light_xdir``: so
qpos, body and camera moves need nothing else) and the model fields the ray tracer reads
per world (``geom_rgba``, ``geom_matid``, ``geom_size``, ``mat_*``, ``cam_fovy``,
``light_*``). A geom ``Hide`` moved to the hidden group gets alpha 0 in its world (the ray
tracer skips transparent geoms). Image-space components (post-processing) run their own
``end_batch`` on the host, on the read-back batch, as in the GL engine.

The ray tracer's headlight and clip planes are fixed when its render context is made: they
are taken from the set-up entries (every entry of a chunk must agree, which the built-in
components do). Only the far clip plane clips: geometry nearer than the near plane
(``CameraProperties.near_clip``), which GL clips away, is drawn. The ray tracer has no
MSAA, no reflections and its own lighting model, so colours differ from GL's; geometry
(depth, segmentation) agrees. Sites are drawn as geoms added for them (``orrb_site_geom_<site
id>``), placed and sized as their sites in every entry; components that act on a body's geoms
do not see them.
"""

from __future__ import annotations

import os

import mujoco
import numpy as np

from orrb.components.base import HIDDEN_GROUP, Frames, SceneContext
from orrb.config import RemoteRendererConfig, RendererConfig
from orrb.engine.chain import ComponentChain
from orrb.engine.compiled_scene import CompiledScene
from orrb.engine.engine_base import EngineBase
from orrb.engine.entry_setup import EntrySetup
from orrb.engine.frames import TileLayout
from orrb.engine.image_stage import ImageStage
from orrb.engine.options import EngineOptions
from orrb.engine.outputs import BatchOutputs
from orrb.errors import ConfigError, RendererError
from orrb.extras import import_optional

__all__ = ["SUPPORTED_COMPONENTS", "WarpRenderEngine"]

# Component types whose effects this backend carries over: they write only the model and data
# arrays gathered per world below, or (PostProcessingRandomizer) run end_batch on the host.
SUPPORTED_COMPONENTS = frozenset({
    "CameraCalibrator", "CameraProperties", "CameraRandomizer", "Hide", "JointRandomizer", "LightRandomizer",
    "LightingRig", "LookAt", "MaterialFixedHueRandomizer", "MaterialRandomizer", "PostProcessingRandomizer",
    "Tracker", "TranslateRotateScale",
})
# model fields the ray tracer reads per world: (name, numpy dtype of the gathered array)
_WORLD_MODEL_FIELDS = (
    ("geom_rgba", np.float32), ("geom_matid", np.int32), ("geom_size", np.float32),
    ("mat_rgba", np.float32), ("mat_emission", np.float32), ("mat_specular", np.float32),
    ("mat_shininess", np.float32), ("mat_texid", np.int32), ("mat_texrepeat", np.float32), ("cam_fovy", np.float32),
    ("light_type", np.int32), ("light_castshadow", np.bool_), ("light_active", np.bool_),
    ("light_attenuation", np.float32), ("light_cutoff", np.float32), ("light_exponent", np.float32),
    ("light_ambient", np.float32), ("light_diffuse", np.float32), ("light_specular", np.float32),
)
# data fields (world poses) copied from the host kinematics per world
_WORLD_DATA_FIELDS = ("geom_xpos", "geom_xmat", "cam_xpos", "cam_xmat", "light_xpos", "light_xdir")
# worlds per launch at most (memory: 4 + 4 + 8 bytes per pixel and camera)
_MAX_WORLDS = {"cpu": 64, "cuda": 2048}


def _warp_modules():
    """``(warp, mujoco_warp)``, or ModuleNotFoundError with the install line."""
    mjw = import_optional("mujoco_warp", 'RemoteRendererConfig.backend="warp"')
    wp = import_optional("warp", 'RemoteRendererConfig.backend="warp"')
    return wp, mjw


def default_device() -> str:
    """The Warp device this backend renders on: ``$ORRB_WARP_DEVICE`` when set (the render
    server sets it from ``--device d`` to ``cuda:d``), else ``cuda:0`` when CUDA is
    available, else ``cpu``."""
    wp, _ = _warp_modules()
    wanted = os.environ.get("ORRB_WARP_DEVICE")
    if wanted and (not wanted.startswith("cuda") or wp.is_cuda_available()):
        return wanted
    return "cuda:0" if wp.is_cuda_available() else "cpu"


class WarpRenderEngine(EngineBase):
    """Renders batches of states for one scene with MuJoCo Warp's batch ray tracer.

    Args:
        config: what to render (``config.backend`` is not read: this is the Warp engine).
        renderer_config: the component chain; defaults to ``config.renderer_config_path``.
        options: accepted for the interface (threads and chunking of the GL engine do not apply).
        device: the Warp device (``"cpu"``, ``"cuda:0"``); default :func:`default_device`.

    Raises:
        ModuleNotFoundError: ``mujoco_warp`` is not installed (the message gives the pip line).
        TypeError: ``config`` or ``options`` of the wrong kind.
        ConfigError: a component this backend cannot express (named with the backend), or
            what the GL engine raises for the scene files.

    Example::

        with WarpRenderEngine(config) as engine:
            out = engine.render(qpos, seeds)   # qpos float64 [B, K], seeds uint64 [B]
        out['vision_cam_left']                 # uint8 [B, H, W, 3], as the GL engine's
    """

    def __init__(self, config: RemoteRendererConfig, renderer_config: RendererConfig | None = None,
                 options: EngineOptions | None = None, device: str | None = None):
        self._contexts: dict = {}  # (nworld, static state) -> (data, render context, per-world arrays)
        self._closed = False
        self._wp, self._mjw = _warp_modules()
        super().__init__(config, renderer_config, options)
        self.device = device or default_device()
        self._max_worlds = _MAX_WORLDS["cuda" if self.device.startswith("cuda") else "cpu"]
        self._check_components()
        self._build()

    # -- building ------------------------------------------------------------------------------
    def _check_components(self) -> None:
        for component in self._chain.components:
            if component.type_name not in SUPPORTED_COMPONENTS:
                raise ConfigError(_refusal(component.name, component.type_name))

    def _build(self) -> None:
        cfg = self.config
        tiles = TileLayout.for_cameras(len(cfg.camera_names), cfg.image_width, cfg.image_height)
        edits = _SiteGeoms(self._chain)
        compiled = CompiledScene.compile(self._xml_path, self._mapping_path, edits, list(cfg.camera_names),
                                         cfg.render_settings, tiles)
        self._site_geoms, self._geom_sites = edits.site_geoms, edits.geom_sites
        geom_class = compiled.geom_class.copy()
        geom_class[self._site_geoms] = 0  # GL's segmentation pass gives sites the background class
        self._geom_class_lut = np.concatenate([[0], geom_class]).astype(np.uint8)  # geom id + 1 (background -1)
        with self._wp.ScopedDevice(self.device):
            self._warp_model = self._mjw.put_model(compiled.model)
        self._contexts = {}
        self._scene = compiled
        self._chain.initialize(SceneContext(compiled.model, list(cfg.camera_names), cfg.image_width, cfg.image_height,
                                            backend_geoms=self._site_geoms))
        self._hidden = np.zeros(compiled.model.ngeom, bool)

    # -- properties ----------------------------------------------------------------------------
    @property
    def gl_hardware(self) -> bool:
        """False: this backend draws no GL."""
        return False

    def _check_update(self, renderer_config: RendererConfig) -> None:
        for spec in renderer_config.components:
            if spec.type not in SUPPORTED_COMPONENTS:
                raise ConfigError(_refusal(spec.name, spec.type))

    # -- rendering -------------------------------------------------------------------------------
    def render(self, qpos: np.ndarray, seeds: np.ndarray) -> dict[str, np.ndarray]:
        """Renders a checked batch.

        Args:
            qpos: ``float64 [B, K]`` request states (K >= ``columns``), already checked.
            seeds: ``uint64 [B]`` one seed per entry.

        Returns:
            the GL engine's outputs for the same config: per camera ``uint8 [B, H, W, 3|4]``
            colour (row 0 at the top), ``float32 [B, H, W]`` depth in metres along the camera
            axis (0: nothing hit), ``float32 [B, H, W, 3]`` normals from depth, ``uint8
            [B, H, W]`` segmentation classes, then every stream ``[B, k]``.

        Raises:
            RendererError: the engine is closed, or entries of one chunk need different
                headlights or clip planes.
        """
        active, wants_depth, arrays, batch, setup = self.plan_batch(qpos, seeds)
        cfg, n = self.config, qpos.shape[0]
        for component in active:
            component.begin_batch(batch)
        for start in range(0, n, self._max_worlds):
            self._render_chunk(setup, start, min(n, start + self._max_worlds), arrays, wants_depth)
        image_components = [c for c in active if c.has_image_stage()]
        if image_components and n:
            stage = ImageStage(image_components, batch, Frames(arrays.color, arrays.depth, arrays.fovy), n, n, None)
            stage.entry_done(n - 1)
        return arrays.finish(cfg)

    def _render_chunk(self, setup: EntrySetup, start: int, stop: int, arrays: BatchOutputs, wants_depth: bool) -> None:
        """Sets entries ``start..stop`` up on the host, gathers them into worlds, ray traces
        them in one launch and copies the frames into ``arrays``."""
        model, data = self._scene.model, self._scene.data
        count = stop - start
        nworld = 1 << max(0, (count - 1).bit_length())  # few distinct context sizes; spare worlds repeat the last
        worlds_model = {name: np.empty((nworld, *np.shape(getattr(model, name))), dtype)
                        for name, dtype in _WORLD_MODEL_FIELDS}
        worlds_data = {name: np.empty((nworld, *np.shape(getattr(data, name))), np.float32)
                       for name in _WORLD_DATA_FIELDS}
        static = None
        for k in range(count):
            setup(start + k)
            entry_static = _static_state(model)
            if static is None:
                static = entry_static
            elif entry_static != static:
                raise RendererError(
                    f"warp backend: entry {start + k} needs headlight/clip planes {entry_static}, entry {start} "
                    f"{static}; the ray tracer fixes them per launch")
            for name, _ in _WORLD_MODEL_FIELDS:
                worlds_model[name][k] = getattr(model, name)
            # the visual geoms of sites look like their sites (which components may have recoloured or hidden)
            sites, geoms = self._geom_sites, self._site_geoms
            worlds_model["geom_rgba"][k, geoms] = model.site_rgba[sites]
            worlds_model["geom_matid"][k, geoms] = model.site_matid[sites]
            worlds_model["geom_size"][k, geoms] = model.site_size[sites]
            model.geom_group[geoms] = model.site_group[sites]
            np.equal(model.geom_group, HIDDEN_GROUP, out=self._hidden)
            worlds_model["geom_rgba"][k, self._hidden] = 0.0  # the ray tracer skips transparent geoms
            for name in _WORLD_DATA_FIELDS:
                worlds_data[name][k] = getattr(data, name)
            worlds_data["geom_xpos"][k, geoms] = data.site_xpos[sites]  # where the sites are, as GL draws them
            worlds_data["geom_xmat"][k, geoms] = data.site_xmat[sites]
        for values in (*worlds_model.values(), *worlds_data.values()):
            values[count:] = values[count - 1]
        wp, mjw = self._wp, self._mjw
        with wp.ScopedDevice(self.device):
            wdata, rc, model_arrays, layout = self._context(nworld, static)
            for name, values in worlds_model.items():
                if values.size:
                    model_arrays[name].assign(values)
                setattr(self._warp_model, name, model_arrays[name])  # contexts of other sizes have their own
            for name, values in worlds_data.items():
                target = getattr(wdata, name)
                if values.size:
                    target.assign(values.reshape(target.shape + ((3, 3) if name.endswith("xmat") else (-1,))))
            mjw.refit_bvh(self._warp_model, wdata, rc)
            mjw.render(self._warp_model, wdata, rc)
            rgb = rc.rgb_data.numpy()[:count]
            depth = rc.depth_data.numpy()[:count] if wants_depth else None
            seg = rc.seg_data.numpy()[:count] if arrays.segmentation else None
        h, w = self.config.image_height, self.config.image_width
        lut = self._geom_class_lut
        for name, (rgb_at, depth_at, seg_at) in zip(self.config.camera_names, layout):
            packed = rgb[:, rgb_at:rgb_at + h * w].reshape(count, h, w)
            color = arrays.color[name][start:stop]
            color[..., 0] = (packed >> 16) & 0xFF
            color[..., 1] = (packed >> 8) & 0xFF
            color[..., 2] = packed & 0xFF
            if depth is not None:
                arrays.depth[name][start:stop] = depth[:, depth_at:depth_at + h * w].reshape(count, h, w)
            if seg is not None:
                ids = seg[:, seg_at:seg_at + h * w, 0].reshape(count, h, w)
                kind = seg[:, seg_at:seg_at + h * w, 1].reshape(count, h, w)
                ids = np.where(kind == int(mujoco.mjtObj.mjOBJ_GEOM), ids, -1)
                arrays.segmentation[name][start:stop] = lut[ids + 1]

    def _context(self, nworld: int, static: tuple):
        """The data, render context, per-world model arrays and camera layout for ``nworld``
        worlds with headlight and clip planes ``static`` (made once, then reused)."""
        key = (nworld, static)
        if key in self._contexts:
            return self._contexts[key]
        wp, mjw = self._wp, self._mjw
        cfg, model = self.config, self._scene.model
        # the context is made from the model as built (which geoms it may draw: their groups),
        # not as the last entry's components left it, then with this launch's headlight and clips
        self._scene.base.restore(model)
        (hl_active, hl_ambient, hl_diffuse, hl_specular, znear, zfar) = static
        model.vis.headlight.active = hl_active
        model.vis.headlight.ambient, model.vis.headlight.diffuse = hl_ambient, hl_diffuse
        model.vis.headlight.specular = hl_specular
        model.vis.map.znear, model.vis.map.zfar = znear, zfar
        cam_ids = [int(c) for c in self._scene.camera_ids]
        settings = cfg.render_settings
        wdata = mjw.make_data(model, nworld=nworld)
        rc = mjw.create_render_context(
            model, nworld=nworld, cam_res=(cfg.image_width, cfg.image_height), render_rgb=True,
            render_depth=True, render_seg=cfg.render_segmentation, use_textures=True,
            use_shadows=settings.shadows is not False, enabled_geom_groups=[0, 1, 2], cam_active=cam_ids,
            use_precomputed_rays=False)
        self._scene.base.restore(model)
        # the per-world model arrays of this context (set on the Warp model before each launch)
        model_arrays = {}
        for name, _ in _WORLD_MODEL_FIELDS:
            current = getattr(self._warp_model, name)
            array = wp.empty((nworld, *current.shape[1:]), dtype=current.dtype)
            model_arrays[name] = array
        active_ids = [int(i) for i in rc.cam_id_map.numpy()]
        rgb_adr, depth_adr, seg_adr = (np.asarray(a.numpy()) for a in (rc.rgb_adr, rc.depth_adr, rc.seg_adr))
        layout = []
        for cam in cam_ids:
            slot = active_ids.index(cam)
            layout.append((int(rgb_adr[slot]), int(depth_adr[slot]), int(seg_adr[slot])))
        self._contexts[key] = (wdata, rc, model_arrays, layout)
        return self._contexts[key]

    # -- lifecycle ---------------------------------------------------------------------------------
    def close(self) -> None:
        """Drops the Warp model, data and render contexts (idempotent, safe on a half-built engine)."""
        self._closed = True
        self._contexts = {}


def _refusal(name: str, type_name: str) -> str:
    return (f"component {name!r} ({type_name}): the 'warp' backend cannot express a {type_name} (it carries over "
            f"{sorted(SUPPORTED_COMPONENTS)}); use backend='gl' or remove the component")


class _SiteGeoms:
    """The chain's structural edits, then one visual geom per site GL draws (groups 0-2): the
    ray tracer draws geoms only. The added geoms (named ``orrb_site_geom_<site id>``, no class prefix) have no
    mass, collide with nothing and are matched to their sites by id; components find their
    geoms by name in the compiled model, so the renumbering this brings changes nothing.

    Attributes (after ``edit_spec``):
        site_geoms: ``int [S]`` geom ids of the added geoms.
        geom_sites: ``int [S]`` the site each of them draws.
    """

    def __init__(self, chain: ComponentChain):
        self._chain = chain
        self.site_geoms = np.zeros(0, int)
        self.geom_sites = np.zeros(0, int)

    def edit_spec(self, spec: mujoco.MjSpec) -> None:
        self._chain.edit_spec(spec)
        model = spec.compile()
        sites = [i for i in range(model.nsite) if model.site_group[i] <= 2]
        bodies = spec.bodies
        for i in sites:
            bodies[model.site_bodyid[i]].add_geom(
                name=f"orrb_site_geom_{i}", type=mujoco.mjtGeom(int(model.site_type[i])), size=model.site_size[i],
                pos=model.site_pos[i], quat=model.site_quat[i], rgba=model.site_rgba[i], contype=0,
                conaffinity=0, group=int(model.site_group[i]), density=0.0)
        self.geom_sites = np.array(sites, dtype=int)
        compiled = spec.compile()
        ids = [mujoco.mj_name2id(compiled, mujoco.mjtObj.mjOBJ_GEOM, f"orrb_site_geom_{i}") for i in sites]
        self.site_geoms = np.array(ids, dtype=int)


def _static_state(model: mujoco.MjModel) -> tuple:
    """What the ray tracer fixes per render context: headlight and clip planes (hashable)."""
    hl = model.vis.headlight
    return (int(hl.active), tuple(float(x) for x in hl.ambient), tuple(float(x) for x in hl.diffuse),
            tuple(float(x) for x in hl.specular), float(model.vis.map.znear), float(model.vis.map.zfar))
