"""The component framework: lifecycle, scope, per-entry context and the registry.

A renderer component has a ``type_name`` (the original's type, e.g.
``"LightRandomizer"``), a ``name`` unique in its chain, an optional ``path`` (a body,
camera or light it acts on; empty for the whole scene) and typed properties
declared once in its ``Properties`` dataclass (see :mod:`orrb.components.properties`).

Lifecycle (driven by :class:`orrb.engine.RenderEngine`):

1. ``edit_spec(spec)``: structural edits of the ``mujoco.MjSpec`` before the model
   is compiled (add lights, materials, textures). Whatever it adds must be inert by
   default (an added light inactive), because a disabled component does not run.
   Only components that override it trigger a model rebuild, and only when one of
   their ``structural`` properties changes.
2. ``initialize(scene)``: heavy work once per compiled model: find the objects it
   acts on (as index arrays), cache base values.
3. ``update(changed)``: properties in ``changed`` were given new values (already
   stored in ``self.props``); rebuild only what they require.
4. ``begin_batch(batch)``: once per batch, before the first entry, with the batch's
   :class:`BatchContext`: keep per-batch draws there (``batch.keep(self, draws)``).
5. ``run(entry)``: once per batch entry, in entry order; cheap, vectorized over
   geoms/materials/lights. It may run on the engine's setup thread while the previous entry
   draws, so it writes model and data arrays (and its draws in ``entry.batch``) only and
   makes no GL calls.
6. ``end_batch(frames, batch)``: image-space work on the drawn frames (:class:`Frames`),
   called on consecutive chunks of entries (``frames.entries``), possibly on a worker thread
   while later entries are drawn: it must compute every entry independently of the others,
   from ``batch.draws(self)``. Only components that override it have an image stage
   (:meth:`Component.has_image_stage`); ``needs_depth`` says whether it reads
   ``frames.depth``.

Every hook has a do-nothing default on :class:`Component`. A component's random draws for a
batch travel from ``run`` (setup thread) to ``end_batch`` (image thread) in the
:class:`BatchContext` the engine makes per batch, never in the component's own attributes,
which outlive the batch.

Per-entry state: before every entry the engine restores every per-entry model array
(colours, materials, lights, cameras, body poses, geom groups...) to the compiled
model's values, so ``run`` writes absolute values computed from the base and
entries never leak into each other. A component that moves something (qpos, a
camera, a body) calls ``entry.mark_dirty()``; one that reads world poses calls
``entry.kinematics()`` first.
"""

from __future__ import annotations

import dataclasses
import zlib
from typing import Any, ClassVar

import mujoco
import numpy as np

from orrb.components.properties import Properties, check_values, property_specs
from orrb.errors import ConfigError, did_you_mean

__all__ = ["BatchContext", "Component", "EntryContext", "Frames", "SceneContext", "Scope", "register", "registry",
           "split_names"]

_REGISTRY: dict[str, type[Component]] = {}

# Geoms and sites moved into this group are not drawn (the engine's mjvOption hides it).
HIDDEN_GROUP = 5


def register(cls: type[Component]) -> type[Component]:
    """Class decorator: makes a component type known to renderer configs by its ``type_name``."""
    if not cls.type_name:
        raise TypeError(f"{cls.__name__} has no type_name")
    _REGISTRY[cls.type_name] = cls
    return cls


def registry() -> dict[str, type[Component]]:
    """Returns ``{type_name: class}`` of every registered component type."""
    from orrb import components  # noqa: F401  (imports every component module)

    return dict(_REGISTRY)


def split_names(value: str) -> list[str]:
    """Splits the original's comma-separated name lists: ``"a, b,"`` -> ``['a', 'b']``."""
    return [part.strip() for part in value.split(",") if part.strip()]


def prefix_mask(names: list[str], prefixes: list[str]) -> np.ndarray:
    """Boolean mask over ``names``: True where a name starts with any of ``prefixes``."""
    if not prefixes:
        return np.zeros(len(names), dtype=bool)
    prefixes_t = tuple(prefixes)
    return np.fromiter((n.startswith(prefixes_t) for n in names), dtype=bool, count=len(names))


@dataclasses.dataclass(frozen=True)
class Scope:
    """The MuJoCo objects a component's ``path`` covers, as sorted id arrays."""

    kind: str  # "scene", "body", "camera" or "light"
    bodies: np.ndarray
    geoms: np.ndarray
    sites: np.ndarray
    cameras: np.ndarray
    lights: np.ndarray


class SceneContext:
    """What components see of the compiled scene at ``initialize``.

    Attributes:
        model: the compiled ``mujoco.MjModel`` (components write its arrays per entry).
        camera_names: the cameras being rendered, in response order.
        geom_names, body_names, site_names, material_names, camera_list, light_names:
            MuJoCo names by id ("" when unnamed).
        scene_geoms: ``bool [ngeom]``, False for geoms a backend added to draw something
            else (the MuJoCo Warp backend's stand-ins for sites): components that act on a
            body's geoms leave those alone, as the GL engine has none.
    """

    def __init__(self, model: mujoco.MjModel, camera_names: list[str], width: int, height: int,
                 backend_geoms: np.ndarray | None = None):
        self.model = model
        self.camera_names = list(camera_names)
        self.width = width
        self.height = height
        self.scene_geoms = np.ones(model.ngeom, dtype=bool)
        if backend_geoms is not None:
            self.scene_geoms[np.asarray(backend_geoms, dtype=int)] = False

        def names(objtype, count):
            return [mujoco.mj_id2name(model, objtype, i) or "" for i in range(count)]

        self.geom_names = names(mujoco.mjtObj.mjOBJ_GEOM, model.ngeom)
        self.body_names = names(mujoco.mjtObj.mjOBJ_BODY, model.nbody)
        self.site_names = names(mujoco.mjtObj.mjOBJ_SITE, model.nsite)
        self.material_names = names(mujoco.mjtObj.mjOBJ_MATERIAL, model.nmat)
        self.camera_list = names(mujoco.mjtObj.mjOBJ_CAMERA, model.ncam)
        self.light_names = names(mujoco.mjtObj.mjOBJ_LIGHT, model.nlight)
        self.joint_names = names(mujoco.mjtObj.mjOBJ_JOINT, model.njnt)
        # subtree membership: ancestors[b] includes b; body 0 is the world
        parent = model.body_parentid
        self._subtree_cache: dict[int, np.ndarray] = {}
        self._parent = parent

    # -- lookups -------------------------------------------------------------------------
    def subtree_bodies(self, body_id: int) -> np.ndarray:
        """Ids of ``body_id`` and all its descendants."""
        cached = self._subtree_cache.get(body_id)
        if cached is None:
            inside = np.zeros(self.model.nbody, dtype=bool)
            inside[body_id] = True
            for b in range(body_id + 1, self.model.nbody):  # parents precede children
                if inside[self._parent[b]]:
                    inside[b] = True
            cached = np.flatnonzero(inside)
            self._subtree_cache[body_id] = cached
        return cached

    def camera_id(self, name: str, where: str) -> int:
        cid = mujoco.mj_name2id(self.model, mujoco.mjtObj.mjOBJ_CAMERA, name)
        if cid < 0:
            raise ConfigError(
                f"{where}: unknown camera {name!r}{did_you_mean(name, self.camera_list)}; "
                f"the model's cameras: {self.camera_list}"
            )
        return cid

    def scope(self, path: str, where: str) -> Scope:
        """Resolves a component ``path`` (empty, a body, a camera or a light name)."""
        m = self.model
        if not path:
            return Scope("scene", np.arange(m.nbody), np.arange(m.ngeom), np.arange(m.nsite),
                         np.arange(m.ncam), np.arange(m.nlight))
        empty = np.zeros(0, dtype=int)
        bid = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_BODY, path)
        if bid >= 0:
            bodies = self.subtree_bodies(bid)
            inside = np.zeros(m.nbody, dtype=bool)
            inside[bodies] = True
            return Scope(
                "body", bodies,
                np.flatnonzero(inside[m.geom_bodyid]), np.flatnonzero(inside[m.site_bodyid]),
                np.flatnonzero(inside[m.cam_bodyid]), np.flatnonzero(inside[m.light_bodyid]),
            )
        cid = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_CAMERA, path)
        if cid >= 0:
            return Scope("camera", empty, empty, empty, np.array([cid]), empty)
        lid = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_LIGHT, path)
        if lid >= 0:
            return Scope("light", empty, empty, empty, empty, np.array([lid]))
        candidates = [n for n in self.body_names + self.camera_list + self.light_names if n]
        raise ConfigError(
            f"{where}: path {path!r} names no body, camera or light{did_you_mean(path, candidates)}"
        )

    def geom_material_names(self, geoms: np.ndarray) -> list[str]:
        """Material name of each geom in ``geoms`` ("" for geoms without material)."""
        matid = self.model.geom_matid[geoms]
        return [self.material_names[i] if i >= 0 else "" for i in matid]


class EntryContext:
    """One batch entry as components see it in ``run``.

    Attributes:
        index: position of the entry in the batch.
        seed: the entry's seed (``seeds[i]`` or ``seed + i``).
        rng: the random stream of the component being run: independent per
            component (derived from the entry seed and the component's name).
        model, data: the MuJoCo model (per-entry arrays restored to base) and data
            (qpos applied, kinematics computed).
        camera_ids: ``int [C]`` model ids of the rendered cameras, in response order.
        batch: the batch this entry belongs to (where components keep their per-batch draws).
    """

    __slots__ = ("index", "seed", "rng", "model", "data", "_dirty", "_aux", "camera_ids", "batch")

    def __init__(self, model, data, aux: dict[str, np.ndarray], camera_ids: np.ndarray,
                 batch: BatchContext | None = None):
        self.model = model
        self.data = data
        self._aux = aux
        self._dirty = False
        self.camera_ids = camera_ids
        self.batch = batch
        self.index = 0
        self.seed = 0
        self.rng: np.random.Generator | None = None

    def begin(self, index: int, seed: int) -> None:
        """Starts entry ``index`` with seed ``seed`` (nothing has moved yet)."""
        self.index = index
        self.seed = seed
        self._dirty = False

    def mark_dirty(self) -> None:
        """Call after changing qpos, a camera, a light or a body pose."""
        self._dirty = True

    def kinematics(self) -> None:
        """Recomputes world poses (``mj_kinematics`` + ``mj_camlight``) if anything moved."""
        if self._dirty:
            mujoco.mj_kinematics(self.model, self.data)
            mujoco.mj_comPos(self.model, self.data)  # subtree centres of mass: trackcom/targetbodycom cameras and lights
            mujoco.mj_camlight(self.model, self.data)
            self._dirty = False

    def emit(self, stream: str, values) -> None:
        """Writes this entry's row of an auxiliary stream declared by ``streams()``."""
        self._aux[stream][self.index] = values


class BatchContext:
    """One batch as components see it: its size and what each component drew for it.

    The engine makes one per batch and hands it to every hook: ``begin_batch(batch)``,
    ``run(entry)`` (as ``entry.batch``) and ``end_batch(frames, batch)``. ``run`` runs on the
    engine's setup thread and ``end_batch`` on its image thread, so per-batch draws travel in
    this object, which lives for one batch::

        def begin_batch(self, batch):
            batch.keep(self, np.zeros(batch.size))   # float64 [B]
        def run(self, entry):
            entry.batch.draws(self)[entry.index] = entry.rng.uniform()
        def end_batch(self, frames, batch):
            amounts = batch.draws(self)[frames.entries]

    Attributes:
        size: number of entries ``B``.
    """

    __slots__ = ("size", "_draws")

    def __init__(self, size: int):
        self.size = size
        self._draws: dict[Component, Any] = {}

    def keep(self, component: Component, draws: Any) -> None:
        """Stores ``component``'s draws for this batch (call it in ``begin_batch``)."""
        self._draws[component] = draws

    def draws(self, component: Component) -> Any:
        """What ``component`` kept with :meth:`keep`.

        Raises:
            KeyError: the component kept nothing for this batch.
        """
        try:
            return self._draws[component]
        except KeyError:
            raise KeyError(f"{component.where} kept no draws for this batch: "
                           "call batch.keep(self, draws) in begin_batch") from None


@dataclasses.dataclass
class Frames:
    """What the cameras produced for a batch, handed to image-space components.

    The engine hands the batch over in consecutive chunks of entries (``entries``), each
    as soon as it is drawn, so image-space work overlaps the drawing of later entries;
    the arrays hold only that chunk (``B`` = its length).

    Attributes:
        color: ``{camera: uint8 [B, H, W, 3|4]}`` (components may edit in place).
        depth: ``{camera: float32 [B, H, W]}`` metres along the camera axis, 0 = nothing hit
            (empty unless depth is rendered or a component ``needs_depth``).
        fovy: ``{camera: float64 [B]}`` vertical field of view (degrees) each entry rendered with.
        entries: which entries of the batch these are (index per-batch draws with it).
    """

    color: dict[str, np.ndarray]
    depth: dict[str, np.ndarray]
    fovy: dict[str, np.ndarray]
    entries: slice = dataclasses.field(default_factory=lambda: slice(None))

    def chunk(self, entries: slice) -> Frames:
        """The frames of ``entries`` (views, not copies)."""
        return Frames({c: a[entries] for c, a in self.color.items()}, {c: a[entries] for c, a in self.depth.items()},
                      {c: a[entries] for c, a in self.fovy.items()}, entries)


class Component:
    """Base class of renderer components (see the module docstring for the lifecycle)."""

    type_name: ClassVar[str] = ""
    Properties: ClassVar[type] = Properties
    # Properties whose change needs the model rebuilt (edit_spec runs again).
    structural: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, name: str, path: str = "", values: dict[str, Any] | None = None):
        self.name = name
        self.path = path
        self.props = self.Properties(**(values or {}))
        self.stream_key = zlib.crc32(name.encode())

    @property
    def where(self) -> str:
        return f"{self.type_name} {self.name!r}"

    @classmethod
    def needs_spec(cls) -> bool:
        """True when the component makes structural edits (overrides ``edit_spec``)."""
        return cls.edit_spec is not Component.edit_spec

    def set(self, values: dict[str, Any]) -> set[str]:
        """Merges new property values; returns the names whose value changed."""
        values = check_values(self.Properties, values, self.where)
        changed = {k for k, v in values.items() if getattr(self.props, k) != v}
        if changed:
            self.props = dataclasses.replace(self.props, **values)
        return changed

    # -- lifecycle -------------------------------------------------------------------------
    def edit_spec(self, spec: mujoco.MjSpec) -> None:
        """Structural edits before compiling; added objects must be inert by default."""

    def initialize(self, scene: SceneContext) -> None:
        """Finds what the component acts on in the compiled model."""

    def update(self, changed: set[str]) -> None:
        """Called after non-structural properties in ``changed`` got new values."""

    def streams(self) -> dict[str, tuple[type, int]]:
        """Auxiliary streams emitted per entry: ``{name: (dtype, k)}``, e.g. ``{"x": (np.float32, 2)}``."""
        return {}

    @property
    def needs_depth(self) -> bool:
        """True when ``end_batch`` reads ``frames.depth``: the engine then reads depth back
        even when no depth output is asked for."""
        return False

    @classmethod
    def has_image_stage(cls) -> bool:
        """True when the component does image-space work (overrides ``end_batch``)."""
        return cls.end_batch is not Component.end_batch

    def begin_batch(self, batch: BatchContext) -> None:
        """Before the batch's first entry: keep per-batch draws in ``batch``."""

    def run(self, entry: EntryContext) -> None:
        """Applies the component to one entry."""

    def end_batch(self, frames: Frames, batch: BatchContext) -> None:
        """Image-space work on a chunk of drawn entries (``frames.entries``), in place."""

    @classmethod
    def describe(cls) -> str:
        """One line per property: name, kind, default, limits and doc."""
        lines = [f"{cls.type_name}:"]
        for spec in property_specs(cls.Properties).values():
            limits = ([f"{'>' if spec.low_open else '>='} {spec.low:g}"] if spec.low is not None else []) + (
                [f"<= {spec.high:g}"] if spec.high is not None else [])
            limits_text = f", {' and '.join(limits)}" if limits else ""
            lines.append(f"  {spec.name} ({spec.kind}, default {spec.default!r}{limits_text}): {spec.doc}")
        return "\n".join(lines)
