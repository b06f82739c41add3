"""The rendering contract: what every renderer offers and what its responses hold.

- ``Modality`` and ``Output``: one response key with its modality, dtype, per-entry shape,
  Gymnasium ``Box``, picture converter and dataset name.
- ``ResponseLayout``: every output key of a ``RemoteRendererConfig`` (cameras x enabled
  modalities, then the component streams the chain declares). The engine allocates from it,
  the pool checks shard replies against it, and the wrappers, contact sheet, dataset writer
  and CLI read it, so the key scheme (``c``, ``c_depth``, ``c_normals``,
  ``c_segmentation``) is written here only.
- ``Renderer``: the protocol that ``LocalRenderer`` and ``RemoteRenderer`` satisfy.
- ``RendererBase``: what both do alike: check and copy the config, start on demand, check a
  request in the caller's thread then submit it, ``render_batch_async`` with its queue,
  ``update`` type checks.

Example::

    layout = ResponseLayout.from_config(config)
    layout.keys()                         # ['vision_cam_left', 'vision_cam_left_depth', ...]
    layout['vision_cam_left_depth'].shape  # (H, W), float32, metres
"""

from __future__ import annotations

import abc
import concurrent.futures
import dataclasses
import enum
import queue as queue_module
import threading
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from orrb.config import RemoteRendererConfig, RendererConfig
from orrb.errors import RendererError
from orrb.request import Request, Response, check_request, put_result_on_queue

if TYPE_CHECKING:  # gymnasium and mujoco load only where spaces or models are asked for
    import gymnasium
    import mujoco

__all__ = ["Modality", "Output", "Renderer", "RendererBase", "RendererInfo", "ResponseLayout", "StreamSpecs"]

# ``{stream key: (dtype, k)}``: the per-entry streams a component chain emits, each ``[B, k]``.
StreamSpecs = Mapping[str, tuple[npt.DTypeLike, int]]


class Modality(str, enum.Enum):
    """What an output holds."""

    COLOR = "color"                # uint8 [H, W, 3|4]
    DEPTH = "depth"                # float32 [H, W], metres along the camera axis, 0 = nothing hit
    NORMALS = "normals"            # float32 [H, W, 3], camera-space normal as (n + 1) / 2, 0 on background
    SEGMENTATION = "segmentation"  # uint8 [H, W], class id, 0 = background
    STREAM = "stream"              # [k] values a component emits per entry (float32, int32 or bool)


# Response-key suffix and dataset-name prefix of each image modality, in display order.
_SUFFIX = {Modality.COLOR: "", Modality.DEPTH: "_depth", Modality.NORMALS: "_normals",
           Modality.SEGMENTATION: "_segmentation"}
_DATASET_PREFIX = {Modality.COLOR: "images", Modality.DEPTH: "depth", Modality.NORMALS: "normals",
                   Modality.SEGMENTATION: "segmentation"}
_CONFIG_FLAG = {Modality.DEPTH: "render_depth", Modality.NORMALS: "render_normals",
                Modality.SEGMENTATION: "render_segmentation"}


@dataclasses.dataclass(frozen=True)
class Output:
    """One response key.

    Attributes:
        key: the response key: ``c``, ``c_depth``, ``c_normals``, ``c_segmentation`` for a
            camera ``c``, or a stream's name.
        modality: what it holds.
        dtype: the array's dtype.
        shape: the shape of one entry: ``(H, W, 3|4)`` colour, ``(H, W)`` depth and
            segmentation, ``(H, W, 3)`` normals, ``(k,)`` a stream. A response holds
            ``[B, *shape]``.
        camera: the camera for image outputs, ``None`` for streams.
        dataset_name: the array's name in dataset files (``images_c``, ``depth_c``,
            ``normals_c``, ``segmentation_c``; a stream keeps its key).
    """

    key: str
    modality: Modality
    dtype: np.dtype
    shape: tuple[int, ...]
    camera: str | None = None
    dataset_name: str = ""

    @property
    def is_image(self) -> bool:
        return self.modality is not Modality.STREAM

    def space(self) -> gymnasium.spaces.Box:
        """The Gymnasium ``Box`` of one entry: colour and segmentation ``uint8`` in [0, 255],
        depth ``float32`` in [0, inf) metres, normals ``float32`` in [0, 1], a stream unbounded."""
        from gymnasium import spaces

        if self.modality in (Modality.COLOR, Modality.SEGMENTATION):
            return spaces.Box(0, 255, self.shape, np.uint8)
        if self.modality is Modality.DEPTH:
            return spaces.Box(0.0, np.inf, self.shape, np.float32)
        if self.modality is Modality.NORMALS:
            return spaces.Box(0.0, 1.0, self.shape, np.float32)
        if self.dtype == np.bool_:
            return spaces.Box(0, 1, self.shape, np.bool_)
        return spaces.Box(-np.inf, np.inf, self.shape, self.dtype)

    def picture(self, values: npt.ArrayLike) -> np.ndarray:
        """Turns values of this output (``[..., *shape]``) into ``uint8 [..., H, W, 3]`` to look at.

        Colour drops an alpha channel; depth is grey (near bright, far dark, background
        black); normals map [0, 1] to [0, 255]; segmentation classes get fixed colours.

        Raises:
            TypeError: for a stream, which is no picture.
        """
        from orrb.utils import depth_to_image, normals_to_image, segmentation_to_image

        if self.modality is Modality.COLOR:
            return np.asarray(values)[..., :3]
        if self.modality is Modality.DEPTH:
            return depth_to_image(values)
        if self.modality is Modality.NORMALS:
            return normals_to_image(values)
        if self.modality is Modality.SEGMENTATION:
            return segmentation_to_image(values)
        raise TypeError(f"output {self.key!r} is a stream of shape {self.shape}, not a picture")


class ResponseLayout:
    """Every output key of a render response, in order.

    Built from a ``RemoteRendererConfig`` (cameras, image size, enabled modalities) and the
    streams of the running component chain (known once a renderer has started: its
    ``layout`` property has them). Outputs come per camera in the config's order (colour,
    depth, normals, segmentation, as enabled), then the streams in chain order.

    Args:
        outputs: the outputs, in order; keys must be unique.
    """

    def __init__(self, outputs: tuple[Output, ...] | list[Output]):
        self.outputs: tuple[Output, ...] = tuple(outputs)
        self._by_key = {o.key: o for o in self.outputs}
        if len(self._by_key) != len(self.outputs):
            keys = [o.key for o in self.outputs]
            twice = sorted({k for k in keys if keys.count(k) > 1})
            raise ValueError(f"response keys must be unique; given twice: {twice}")

    @classmethod
    def from_config(cls, config: RemoteRendererConfig, streams: StreamSpecs | None = None) -> ResponseLayout:
        """The layout of responses rendered with ``config`` by a chain emitting ``streams``.

        Args:
            config: cameras, image size and modalities.
            streams: ``{key: (dtype, k)}`` of the chain's streams (a renderer's
                ``layout`` includes them); ``None`` for images only.
        """
        if not isinstance(config, RemoteRendererConfig):
            raise TypeError(f"ResponseLayout.from_config takes an orrb.RemoteRendererConfig, "
                            f"got {type(config).__name__}")
        h, w = int(config.image_height), int(config.image_width)
        channels = 4 if config.render_alpha else 3
        shapes = {Modality.COLOR: (h, w, channels), Modality.DEPTH: (h, w), Modality.NORMALS: (h, w, 3),
                  Modality.SEGMENTATION: (h, w)}
        dtypes = {Modality.COLOR: np.uint8, Modality.DEPTH: np.float32, Modality.NORMALS: np.float32,
                  Modality.SEGMENTATION: np.uint8}
        outputs = []
        for camera in config.camera_names:
            for modality, suffix in _SUFFIX.items():
                flag = _CONFIG_FLAG.get(modality)
                if flag is not None and not getattr(config, flag):
                    continue
                outputs.append(Output(camera + suffix, modality, np.dtype(dtypes[modality]), shapes[modality],
                                      camera, f"{_DATASET_PREFIX[modality]}_{camera}"))
        return cls(outputs).with_streams(streams or {})

    def with_streams(self, streams: StreamSpecs) -> ResponseLayout:
        """This layout's image outputs plus ``streams`` (replacing any streams it had)."""
        outputs = list(self.images)
        for key, (dtype, k) in streams.items():
            outputs.append(Output(key, Modality.STREAM, np.dtype(dtype), (int(k),), None, key))
        return ResponseLayout(outputs)

    # -- lookup ------------------------------------------------------------------------------------
    def __iter__(self) -> Iterator[Output]:
        return iter(self.outputs)

    def __len__(self) -> int:
        return len(self.outputs)

    def __contains__(self, key: object) -> bool:
        return key in self._by_key

    def __getitem__(self, key: str) -> Output:
        try:
            return self._by_key[key]
        except KeyError:
            raise KeyError(f"no output {key!r} in this layout; outputs: {self.keys()}") from None

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ResponseLayout) and self.outputs == other.outputs

    def __repr__(self) -> str:
        return f"ResponseLayout({self.keys()})"

    def keys(self) -> list[str]:
        return [o.key for o in self.outputs]

    @property
    def images(self) -> tuple[Output, ...]:
        """The image outputs (every modality but streams)."""
        return tuple(o for o in self.outputs if o.is_image)

    @property
    def streams(self) -> tuple[Output, ...]:
        """The component streams."""
        return tuple(o for o in self.outputs if not o.is_image)

    @property
    def cameras(self) -> list[str]:
        """The cameras, in order."""
        return list(dict.fromkeys(o.camera for o in self.outputs if o.camera is not None))

    def for_camera(self, camera: str) -> tuple[Output, ...]:
        """The image outputs of ``camera`` (colour first)."""
        found = tuple(o for o in self.outputs if o.camera == camera)
        if not found:
            raise KeyError(f"no camera {camera!r} in this layout; cameras: {self.cameras}")
        return found

    # -- arrays ------------------------------------------------------------------------------------
    def allocate(self, n: int) -> dict[str, np.ndarray]:
        """Fresh output arrays for ``n`` entries: ``{key: [n, *shape]}`` (streams zeroed, images empty)."""
        return {o.key: (np.zeros if o.modality is Modality.STREAM else np.empty)((n, *o.shape), o.dtype)
                for o in self.outputs}

    def check(self, arrays: Mapping[str, Any], n: int, where: str = "response") -> None:
        """Checks that ``arrays`` holds every output for ``n`` entries, with its dtype and shape.

        Keys not in the layout (a request's pass-through keys) are ignored.

        Raises:
            RendererError: names the first missing key, or the key with the expected and
                the received dtype and shape.
        """
        for o in self.outputs:
            value = arrays.get(o.key)
            if value is None:
                raise RendererError(f"{where}: output {o.key!r} is missing; expected {o.dtype} {[n, *o.shape]}")
            expected = (n, *o.shape)
            if not isinstance(value, np.ndarray) or value.dtype != o.dtype or value.shape != expected:
                got = (f"{value.dtype} {list(value.shape)}" if isinstance(value, np.ndarray)
                       else type(value).__name__)
                raise RendererError(f"{where}: output {o.key!r} should be {o.dtype} {list(expected)}, got {got}")

    def spaces(self) -> dict[str, gymnasium.spaces.Box]:
        """``{key: Box}`` of one entry's image outputs, in order."""
        return {o.key: o.space() for o in self.images}


@runtime_checkable
class Renderer(Protocol):
    """What ``LocalRenderer`` and ``RemoteRenderer`` both offer (and a stand-in must)."""

    config: RemoteRendererConfig

    def start(self) -> Renderer: ...
    def shutdown(self) -> None: ...
    def close(self) -> None: ...
    def __enter__(self) -> Renderer: ...
    def __exit__(self, *exc: object) -> None: ...
    def render_batch(self, batch: Request) -> Response: ...
    def render_batch_async(self, batch: Request, queue: queue_module.Queue | None = None
                           ) -> concurrent.futures.Future: ...
    def update(self, renderer_config: RendererConfig) -> None: ...
    def mutable_renderer_config(self) -> RendererConfig: ...

    @property
    def columns(self) -> int: ...
    @property
    def class_names(self) -> list[str]: ...
    @property
    def model(self) -> mujoco.MjModel: ...
    @property
    def layout(self) -> ResponseLayout: ...
    @property
    def stats(self) -> dict[str, Any]: ...
    @property
    def server_pids(self) -> list[int | None]: ...
    @property
    def log_files(self) -> list[str | None]: ...


@dataclasses.dataclass(frozen=True)
class RendererInfo:
    """What a started renderer knows about its scene (returned by ``RendererBase._start``).

    Attributes:
        columns: how many qpos columns a request needs.
        class_names: segmentation class names by id (0 = background).
        model: the compiled ``mujoco.MjModel`` the renderer draws.
        streams: ``{key: (dtype, k)}`` of the chain's streams.
        renderer_config: the running component chain.
    """

    columns: int
    class_names: tuple[str, ...]
    model: Any
    streams: dict[str, tuple[Any, int]]
    renderer_config: RendererConfig


class RendererBase(abc.ABC):
    """The part of ``LocalRenderer`` and ``RemoteRenderer`` that is the same.

    Subclasses implement ``_start`` (build or connect; return a ``RendererInfo``),
    ``_submit`` (queue a checked request; return a ``Future`` of the output arrays),
    ``_update`` (apply a validated chain change for the batches queued after it; return the
    new ``RendererInfo``) and ``_shutdown``. Public methods start the renderer on first use.

    Args:
        config: what to render; checked and copied (later edits of the caller's object do
            not reach the renderer).
        renderer_config: a component chain overriding ``config.renderer_config_path``.
    """

    def __init__(self, config: RemoteRendererConfig, renderer_config: RendererConfig | None = None):
        self._info: RendererInfo | None = None
        self._layout: ResponseLayout | None = None
        self._closed = False
        self._state_lock = threading.RLock()
        kind = type(self).__name__
        if not isinstance(config, RemoteRendererConfig):
            raise TypeError(f"{kind} takes an orrb.RemoteRendererConfig, got {type(config).__name__}")
        if renderer_config is not None and not isinstance(renderer_config, RendererConfig):
            raise TypeError(f"renderer_config must be an orrb.RendererConfig, got {type(renderer_config).__name__}")
        config.validate()
        self.config = config.copy()
        self._initial_renderer_config = renderer_config.copy() if renderer_config is not None else None
        self.stats: dict[str, Any] = {"batches": 0, "restarts": 0}

    def __copy__(self):
        return self

    def __deepcopy__(self, memo):
        """A renderer is a handle on an engine or on server processes: copies share it, so
        objects that hold one (an env's ``gymnasium`` spec, for instance) can be deep-copied."""
        return self

    # -- to implement ------------------------------------------------------------------------------
    @abc.abstractmethod
    def _start(self) -> RendererInfo:
        """Builds the engine or starts the servers; raises their errors."""

    @abc.abstractmethod
    def _submit(self, request: Request, qpos: np.ndarray, seeds: np.ndarray) -> concurrent.futures.Future:
        """Queues a checked request (``qpos`` float64 ``[B, K]``, a private copy; ``seeds``
        uint64 ``[B]``); returns a ``Future`` of ``{key: array}`` for every output of the layout.
        Called with the state lock held: it must queue, not wait for the render."""

    @abc.abstractmethod
    def _update(self, renderer_config: RendererConfig) -> RendererInfo | None:
        """Applies a chain change to the batches queued after it; returns the new info
        (``None`` when it is known only later)."""

    @abc.abstractmethod
    def _shutdown(self) -> None:
        """Frees what ``_start`` built. Called once."""

    # -- lifecycle ---------------------------------------------------------------------------------
    def start(self):
        """Builds the engine or starts the servers (idempotent); raises their errors here.

        Raises:
            RendererError: after ``shutdown()``, or when rendering cannot start.
        """
        with self._state_lock:
            if self._closed:
                raise RendererError(f"{type(self).__name__}.start() after shutdown()")
            if self._info is None:
                self._set_info(self._start())
        return self

    def shutdown(self) -> None:
        """Finishes or fails queued batches and frees every resource. Idempotent."""
        with self._state_lock:
            if self._closed:
                return
            self._closed = True
        self._shutdown()

    def close(self) -> None:
        """The same as ``shutdown()``."""
        self.shutdown()

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.shutdown()

    def _set_info(self, info: RendererInfo | None) -> None:
        if info is not None:
            self._info = info
            self._layout = ResponseLayout.from_config(self.config, info.streams)

    def _started_info(self) -> RendererInfo:
        if self._info is None:
            self.start()
        return self._info

    # -- what the renderer knows -------------------------------------------------------------------
    @property
    def columns(self) -> int:
        """How many qpos columns a request needs."""
        return self._started_info().columns

    @property
    def class_names(self) -> list[str]:
        """Segmentation class names by id (0 = background)."""
        return list(self._started_info().class_names)

    @property
    def model(self):
        """The compiled ``mujoco.MjModel`` that is rendered (read it; do not edit it).

        An ``update()`` that rebuilds the model (e.g. a new light count) replaces it.
        """
        return self._started_info().model

    @property
    def layout(self) -> ResponseLayout:
        """Every output key of a response: images and the chain's streams."""
        self._started_info()
        return self._layout

    @property
    def server_pids(self) -> list[int | None]:
        """The process id of each render server (empty when rendering in this process)."""
        return []

    @property
    def log_files(self) -> list[str | None]:
        """The log file of each render server (empty when rendering in this process)."""
        return []

    # -- rendering ---------------------------------------------------------------------------------
    def _check_and_submit(self, batch: Request) -> concurrent.futures.Future:
        info = self._started_info()
        qpos, seeds = check_request(batch, info.columns)
        qpos = np.array(qpos, dtype=np.float64, order="C", copy=True)  # the caller may reuse its array
        with self._state_lock:  # shutdown() cannot slip between the check and the submit
            if self._closed:
                raise RendererError(f"{type(self).__name__}: render after shutdown()")
            arrays = self._submit(batch, qpos, seeds)
        response: concurrent.futures.Future = concurrent.futures.Future()
        response.set_running_or_notify_cancel()

        def done(future: concurrent.futures.Future) -> None:
            error = future.exception()
            if error is not None:
                response.set_exception(error)
                return
            result = dict(batch)
            result.update(future.result())
            self.stats["batches"] += 1
            response.set_result(result)

        arrays.add_done_callback(done)
        return response

    def render_batch(self, batch: Request) -> Response:
        """Renders a batch and returns the response.

        Args:
            batch: ``{'qpos': [B, K], 'seed': int}`` (entry ``i`` renders with seed ``seed + i``)
                or ``{'qpos': ..., 'seeds': [B]}``; other keys are passed through.

        Returns:
            the request's keys plus, per camera ``c``: ``c`` uint8 ``[B, H, W, 3]`` (4
            channels with ``render_alpha``), ``c_depth`` float32 ``[B, H, W]`` (metres),
            ``c_normals`` float32 ``[B, H, W, 3]`` in [0, 1], ``c_segmentation`` uint8
            ``[B, H, W]`` (as enabled), and the components' streams ``[B, k]``: the keys
            of ``layout``. Arrays are fresh (the caller owns them).

        Raises:
            ValueError / TypeError: a bad request (in the caller's thread).
            RendererError: rendering failed.
        """
        return self._check_and_submit(batch).result()

    def render_batch_async(self, batch: Request, queue: queue_module.Queue | None = None
                           ) -> concurrent.futures.Future:
        """Queues a batch; returns a ``concurrent.futures.Future`` of the response at once.

        When ``queue`` is given the response dict (or, on failure, the exception object) is
        put on it too, so a consumer never waits forever. A bad request raises here, in the
        caller's thread.
        """
        future = self._check_and_submit(batch)
        if queue is not None:
            put_result_on_queue(future, queue)
        return future

    def update(self, renderer_config: RendererConfig) -> None:
        """Merges ``renderer_config`` into the chain for every batch queued after this call.

        Each component is matched by name and the given properties are merged in; a new
        name is appended. Batches already queued render with the config of their queue time.

        Raises:
            TypeError: ``renderer_config`` is not an ``orrb.RendererConfig``.
            ConfigError: the update does not fit the running chain (checked here).
        """
        if not isinstance(renderer_config, RendererConfig):
            raise TypeError(f"update() takes an orrb.RendererConfig, got {type(renderer_config).__name__}")
        info = self._started_info()
        info.renderer_config.merged(renderer_config)  # validates in the caller's thread
        with self._state_lock:
            self._set_info(self._update(renderer_config.copy()))

    def mutable_renderer_config(self) -> RendererConfig:
        """A copy of the current component chain, to edit and pass to ``update()``."""
        return self._started_info().renderer_config.copy()
