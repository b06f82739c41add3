"""``TuneSession``: the chain being tuned, its checks and the render loop behind the page.

The session owns the renderer and the edited :class:`orrb.RendererConfig` (the page's
truth: a reload shows it again). Edits are checked in the caller's thread before they
are accepted: property kinds (the declarations), hard limits (:mod:`orrb.tune.controls`) and
the component's own checks, run by initializing a scratch copy of the component on a
scratch model compiled with the candidate chain's structural edits. A rejected edit
changes nothing.

One render thread turns the latest accepted state into a frame: latest wins, so edits made
while a batch renders are merged into the next one and a slider dragged fast never queues
a backlog. How a new chain reaches the renderer:

- property and path changes and components appended at the end: one ``update()`` carrying
  only what changed since the renderer last heard (so a pool serves the page as it serves
  training);
- a component removed, moved or replaced by one of another type, or a path cleared:
  ``update()`` only merges, so the session builds a new renderer with the new chain and
  shuts the old one down (a second or two with ``LocalRenderer``, a few seconds for a pool,
  during which the status line says so).

The renderer renders colour only until the page asks for depth, normals or segmentation:
the first such switch rebuilds it with that modality added; later switches between
modalities it renders re-encode the last batch without rendering again.

A render that fails is shown as a banner; the session rebuilds the renderer with the last
chain that rendered and keeps serving.
"""

from __future__ import annotations

import base64
import dataclasses
import difflib
import io
import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from orrb.components.base import SceneContext, registry
from orrb.components.properties import property_specs
from orrb.config import ComponentSpec, RemoteRendererConfig, RendererConfig
from orrb.errors import ConfigError
from orrb.renderer import Modality
from orrb.tune.controls import range_errors

__all__ = ["EditError", "Frame", "TuneSession"]

log = logging.getLogger("orrb.tune")

MODALITIES = ("color", "depth", "normals", "segmentation")
SLOW_RENDER_S = 3.0  # after this long the status line says the render is slow


class EditError(ValueError):
    """An edit the session refused; nothing changed.

    Attributes:
        component: the component the edit was for (``None`` for the whole chain).
        property: the property, when the error belongs to one control.
    """

    def __init__(self, message: str, component: str | None = None, property: str | None = None):
        super().__init__(message)
        self.component = component
        self.property = property


@dataclasses.dataclass
class Frame:
    """One rendered grid, ready for the page.

    Attributes:
        seq: the last edit number the frame includes.
        images: ``[camera][column]`` data URLs (JPEG colour, PNG for the other modalities).
        overlays: ``[camera][column]`` ``{"points": [[x, y, label]], "boxes": [[x0, x1, y0, y1, label]]}``
            in normalized image coordinates (x right, y down).
        columns: per column ``{"seed": int, "row": int}``.
        render_s: seconds the renderer took; ``encode_s``: seconds to encode the pictures.
    """

    seq: int
    modality: str
    cameras: list[str]
    images: list[list[str]]
    overlays: list[list[dict[str, list]]]
    columns: list[dict[str, int]]
    render_s: float
    encode_s: float

    def message(self) -> dict[str, Any]:
        return {"type": "frame", **dataclasses.asdict(self)}


def _full(spec: ComponentSpec) -> dict[str, Any]:
    """Every property of ``spec``'s component: defaults, then the values it sets."""
    values = {n: s.default for n, s in property_specs(spec.component_class.Properties).items()}
    values.update(spec.properties)
    return values


def _json_value(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


class TuneSession:
    """The state behind the tuning page and the thread that renders it.

    Args:
        config: what to render. Colour only at first (the fastest render); the first switch
            to another modality rebuilds the renderer with it added, later switches between
            modalities rendered already re-encode the last batch.
        renderer_config: the chain to start from (its ``source`` is the file it came from).
        states: ``float64 [N, K]`` states, one per row.
        make_renderer: ``make_renderer(config, renderer_config)`` returns a started renderer
            (``LocalRenderer`` or ``RemoteRenderer``); called again for structural changes.
        seeds: columns of the grid, one seed each.
        save_path: where "save" writes (``None``: the page downloads the file).
    """

    def __init__(self, config: RemoteRendererConfig, renderer_config: RendererConfig, states: np.ndarray,
                 make_renderer: Callable[[RemoteRendererConfig, RendererConfig], Any], seeds: int = 4,
                 save_path: str | None = None):
        self._renderer = None
        self._closed = False
        self._thread: threading.Thread | None = None
        self.config = config.copy()
        self.config.render_depth = self.config.render_normals = self.config.render_segmentation = False
        self._render_config = self.config.copy()  # what the running renderer renders
        self._make_renderer = make_renderer
        self.states = np.asarray(states, dtype=np.float64)
        if self.states.ndim != 2 or len(self.states) == 0:
            raise ValueError(f"states must be a non-empty [N, K] table, got shape {self.states.shape}")
        if not isinstance(seeds, int) or seeds < 1:
            raise ValueError(f"seeds must be a positive int, got {seeds!r}")
        self.save_path = save_path
        self.source = renderer_config.source
        self.start_json = renderer_config.to_json()
        # the starting file's components, as reset() reads them back (they may hold values outside the limits)
        self._starting = {spec.name: spec for spec in RendererConfig.from_json(self.start_json).components}
        self.saved_json = self.start_json
        self._lock = threading.RLock()
        self._wake = threading.Condition(self._lock)
        self._listeners: list[Callable[[dict[str, Any]], None]] = []
        self._chain = renderer_config.copy()
        self._seq = 0            # edits accepted
        self._render_seq = -1    # edits the last frame includes
        self._view_seq = 0       # view changes (seeds, state, modality)
        self.modality = "color"
        self.state_row: int | str = 0
        self.n_seeds = seeds
        self.first_seed = 0
        self.status = "starting the renderer"
        self.last_frame: Frame | None = None
        self._last_response: dict[str, np.ndarray] | None = None
        self._last_columns: list[dict[str, int]] = []
        self._last_view: tuple = ((), None)      # (seeds, state row) of the last batch
        self._scratch_key: tuple | None = None
        self._scratch_scene: SceneContext | None = None
        # A starting file outside the page's limits still opens (the banner says what); a
        # component that refuses its values, or a scene that does not compile, does not.
        self.warnings = list(dict.fromkeys(self._short(f"{spec.where}: {message}") for spec in self._chain.components
                                           for message in range_errors(spec.type, _full(spec)).values()))
        self._check_chain(self._chain, "the starting config", limits=False)
        self._applied: RendererConfig | None = None   # what the renderer runs (every property explicit)
        self._good: RendererConfig = self._chain.copy()

    # -- lifecycle ---------------------------------------------------------------------------------
    def start(self) -> TuneSession:
        """Starts the renderer and the render thread (idempotent)."""
        with self._lock:
            if self._thread is not None:
                return self
            self._render_config = self.config.copy()
            self._renderer = self._make_renderer(self._render_config, self._chain.copy())
            self._applied = self._explicit(self._chain)
            self._thread = threading.Thread(target=self._loop, name="orrb-tune-render", daemon=True)
            self._thread.start()
            self._wake.notify_all()
        return self

    def close(self) -> None:
        """Stops the render thread and shuts the renderer down. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._wake.notify_all()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5)
            if thread.is_alive() and self._renderer is not None:
                self._renderer.shutdown()  # a render waiting on a lost server: fail it, so the thread ends
                thread.join(timeout=30)
        renderer, self._renderer = self._renderer, None
        if renderer is not None:
            renderer.shutdown()

    def __enter__(self) -> TuneSession:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def subscribe(self, listener: Callable[[dict[str, Any]], None]) -> Callable[[], None]:
        """Calls ``listener(message)`` (from the render thread) for every frame, status and
        banner; returns the function that unsubscribes it."""
        with self._lock:
            self._listeners.append(listener)

        def unsubscribe() -> None:
            with self._lock:
                if listener in self._listeners:
                    self._listeners.remove(listener)

        return unsubscribe

    def _publish(self, message: dict[str, Any]) -> None:
        with self._lock:
            listeners = list(self._listeners)
        for listener in listeners:
            try:
                listener(message)
            except Exception:  # noqa: BLE001 (a closed page must not stop the render loop)
                log.debug("listener failed", exc_info=True)

    # -- what the page shows -----------------------------------------------------------------------
    @property
    def chain(self) -> RendererConfig:
        """A copy of the chain being tuned."""
        with self._lock:
            return self._chain.copy()

    def state_message(self) -> dict[str, Any]:
        """The chain, its JSON, the diff against the starting file and the view settings."""
        with self._lock:
            text = self._chain.to_json()
            components = []
            for spec in self._chain.components:
                values = _full(spec)
                components.append({"type": spec.type, "name": spec.name, "path": spec.path,
                                   "values": {k: _json_value(v) for k, v in values.items()},
                                   "set": sorted(spec.properties)})
            diff = "".join(difflib.unified_diff(self.start_json.splitlines(keepends=True),
                                                text.splitlines(keepends=True),
                                                fromfile=os.path.basename(self.source or "start"), tofile="edited", n=2))
            return {"type": "state", "seq": self._seq, "components": components, "json": text, "diff": diff,
                    "dirty": text != self.saved_json, "modality": self.modality,
                    "state_row": self.state_row, "seeds": self._seeds().tolist(), "status": self.status}

    @property
    def seq(self) -> int:
        """How many edits were accepted (a frame's ``seq`` says up to which one it shows)."""
        return self._seq

    def publish_state(self) -> None:
        """Sends :meth:`state_message` to every page."""
        self._publish(self.state_message())

    def _seeds(self) -> np.ndarray:
        return np.arange(self.first_seed, self.first_seed + self.n_seeds, dtype=np.int64)

    # -- edits -------------------------------------------------------------------------------------
    def set_property(self, component: str, name: str, value: Any) -> None:
        """Sets one property of one component.

        Raises:
            EditError: an unknown component or property, a value of the wrong kind, out of
                its limits, or refused by the component (the message says which).
        """
        with self._lock:
            candidate = self._chain.copy()
            spec = self._find(candidate, component)
            try:
                spec.set(**{name: value})
            except ConfigError as e:
                raise EditError(self._short(str(e)), component, name) from None
            self._accept(candidate, focus=(component, name))

    def set_path(self, component: str, path: str) -> None:
        """Sets the path (body, camera or light) a component acts on."""
        if not isinstance(path, str) or len(path) > 1000:
            raise EditError(f"path must be a string of at most 1000 characters, got {str(path)[:80]!r}",
                            component, "path")
        with self._lock:
            candidate = self._chain.copy()
            self._find(candidate, component).path = path.strip()
            self._accept(candidate, focus=(component, "path"))

    def add_component(self, type_name: str, name: str | None = None) -> str:
        """Appends a component of a registered type with its defaults; returns its name."""
        known = registry()
        if not isinstance(type_name, str) or type_name not in known:
            raise EditError(f"unknown component type {str(type_name)[:80]!r}; known types: {sorted(known)}")
        with self._lock:
            candidate = self._chain.copy()
            if name is None or name == "":
                base = "".join("_" + c.lower() if c.isupper() else c for c in type_name).lstrip("_")
                name, k = base, 2
                while name in candidate:
                    name, k = f"{base}_{k}", k + 1
            if not isinstance(name, str) or len(name) > 200 or name in candidate:
                raise EditError(f"component name must be a new string (at most 200 characters), got {str(name)[:80]!r}")
            candidate.add(type_name, name)
            self._accept(candidate, focus=(name, None))
            return name

    def remove_component(self, component: str) -> None:
        with self._lock:
            candidate = self._chain.copy()
            candidate.remove(self._find(candidate, component).name)
            self._accept(candidate)

    def move_component(self, component: str, to: int) -> None:
        """Moves a component to position ``to`` of the chain (0 = first)."""
        if isinstance(to, bool) or not isinstance(to, int):
            raise EditError(f"move: 'to' must be an int position, got {to!r}", component)
        with self._lock:
            candidate = self._chain.copy()
            spec = self._find(candidate, component)
            if not 0 <= to < len(candidate):
                raise EditError(f"move: position must be in [0, {len(candidate)}), got {to}", component)
            candidate.components.remove(spec)
            candidate.components.insert(to, spec)
            self._accept(candidate)

    def load(self, text: str, filename: str = "uploaded file") -> None:
        """Replaces the chain with a renderer config file's contents (JSON text).

        Raises:
            EditError: the text is not a valid renderer config for this scene.
        """
        if not isinstance(text, str):
            raise EditError(f"load: expected the file's text, got {type(text).__name__}")
        try:
            candidate = RendererConfig.from_json(text, source=str(filename)[:200])
        except ConfigError as e:
            raise EditError(f"load: {e}") from None
        with self._lock:
            self._accept(candidate)

    def reset(self) -> None:
        """Goes back to the starting file."""
        with self._lock:
            self._accept(RendererConfig.from_json(self.start_json, source=self.source))

    def save(self) -> str:
        """Marks the chain saved; writes it to ``save_path`` when there is one.

        Returns:
            the JSON text saved.
        """
        with self._lock:
            text = self._chain.to_json()
            if self.save_path is not None:
                with open(self.save_path, "w") as f:
                    f.write(text + "\n")
            self.saved_json = text
            return text

    def set_view(self, modality: str | None = None, state_row: int | str | None = None,
                 new_seeds: bool = False) -> None:
        """Changes what the grid shows: modality, state row (``"random"``: a random row per
        column, drawn from its seed) or new seeds."""
        with self._lock:
            if modality is not None:
                if modality not in MODALITIES:
                    raise EditError(f"modality must be one of {list(MODALITIES)}, got {str(modality)[:40]!r}")
                self.modality = modality
                flag = {"depth": "render_depth", "normals": "render_normals",
                        "segmentation": "render_segmentation"}.get(modality)
                if flag is not None:
                    setattr(self.config, flag, True)
            if state_row is not None:
                if state_row != "random" and (isinstance(state_row, bool) or not isinstance(state_row, int)
                                              or not 0 <= state_row < len(self.states)):
                    raise EditError(f"state must be a row in [0, {len(self.states)}) or 'random', "
                                    f"got {str(state_row)[:40]!r}")
                self.state_row = state_row
            if new_seeds:
                self.first_seed = int(np.random.default_rng().integers(0, 2**31 - 1000))
            self._view_seq += 1
            self._wake.notify_all()

    def _find(self, config: RendererConfig, component: Any) -> ComponentSpec:
        if not isinstance(component, str) or component not in config:
            raise EditError(f"no component named {str(component)[:80]!r}; components: {[c.name for c in config]}")
        return config[component]

    def _accept(self, candidate: RendererConfig, focus: tuple[str, str | None] | None = None) -> None:
        """Checks ``candidate`` and makes it the chain; raises ``EditError`` and keeps the old one."""
        self._check_chain(candidate, "edit", focus)
        self._chain = candidate
        self._seq += 1
        self._wake.notify_all()

    def _check_chain(self, candidate: RendererConfig, what: str, focus: tuple[str, str | None] | None = None,
                     limits: bool = True) -> None:
        """Hard limits of every component (``limits``), then the components' own checks on a
        scratch scene."""
        current = {spec.name: spec for spec in self._chain.components}
        for spec in candidate.components if limits else ():
            if current.get(spec.name) == spec or self._starting.get(spec.name) == spec:
                continue  # as it is now, or as the starting file has it (which may hold values outside the limits)
            errors = range_errors(spec.type, _full(spec))
            if errors:
                name = focus[1] if focus and focus[0] == spec.name and focus[1] in errors else next(iter(errors))
                raise EditError(f"{spec.name}: {errors[name]}", spec.name, name)
        scene = self._scratch(candidate)
        known = registry()
        for spec in candidate.components:
            try:
                component = known[spec.type](spec.name, spec.path, dict(spec.properties))
                component.initialize(scene)
            except (ConfigError, ValueError, KeyError, IndexError) as e:
                prop = focus[1] if focus and focus[0] == spec.name else None
                raise EditError(self._short(f"{what}: {e}"), spec.name, prop) from None

    def _short(self, message: str) -> str:
        """``message`` without the starting file's path (the page shows it once, in its header)."""
        return message.replace(f"renderer config {self.source}: ", "") if self.source else message

    def _scratch(self, candidate: RendererConfig) -> SceneContext:
        """A scene compiled with ``candidate``'s structural edits (cached per structure)."""
        from orrb.pool.client import compile_model

        key = tuple((s.type, s.name, s.path, tuple(sorted((k, repr(v)) for k, v in _full(s).items())))
                    for s in candidate.components if s.component_class.needs_spec())
        if key != self._scratch_key:
            try:
                model = compile_model(self.config, candidate)
            except (ConfigError, ValueError) as e:
                raise EditError(f"the scene does not compile with this chain: {e}") from None
            self._scratch_scene = SceneContext(model, list(self.config.camera_names), self.config.image_width,
                                               self.config.image_height)
            self._scratch_key = key
        return self._scratch_scene

    @staticmethod
    def _explicit(config: RendererConfig) -> RendererConfig:
        """``config`` with every property given (so an ``update()`` of it sets them all)."""
        out = RendererConfig()
        for spec in config.components:
            out.components.append(ComponentSpec(spec.type, spec.name, spec.path, _full(spec)))
        return out

    # -- the render thread -------------------------------------------------------------------------
    def _loop(self) -> None:
        rendered_view = -1
        while True:
            with self._lock:
                while not self._closed and self._seq == self._render_seq and self._view_seq == rendered_view:
                    self._wake.wait()
                if self._closed:
                    return
                seq, view_seq = self._seq, self._view_seq
                chain = self._chain.copy()
                modality, state_row, seeds = self.modality, self.state_row, self._seeds()
                render_config = self.config.copy()
            try:
                if render_config != self._render_config:  # a modality not rendered yet
                    self._applied = None
                    self._render_config = render_config
                structural = self._apply(chain)
                if seq == self._render_seq and self._last_response is not None and \
                        (seeds.tolist(), state_row) == self._last_view:
                    frame = self._frame(self._last_response, seq, modality, 0.0)  # only the modality changed
                else:
                    started = time.perf_counter()
                    qpos, columns = self._request(seeds, state_row)
                    slow = threading.Timer(SLOW_RENDER_S, self._publish, [{
                        "type": "status", "ok": False,
                        "text": f"rendering takes over {SLOW_RENDER_S:g} s (a render server may be down "
                                "or restarting); edits are kept and go into the next batch"}])
                    slow.daemon = True
                    slow.start()
                    try:
                        response = self._renderer.render_batch({"qpos": qpos, "seeds": seeds})
                    finally:
                        slow.cancel()
                    render_s = time.perf_counter() - started
                    self._last_response, self._last_columns = response, columns
                    self._last_view = (seeds.tolist(), state_row)
                    frame = self._frame(response, seq, modality, render_s)
                self._good = chain
                with self._lock:
                    self._render_seq, rendered_view = seq, view_seq
                    self.last_frame = frame
                    self.status = (f"rendered {len(frame.cameras)} x {len(seeds)} in {frame.render_s * 1000:.0f} ms"
                                   + (" (renderer rebuilt)" if structural else ""))
                self._publish(frame.message())
                self._publish({"type": "status", "text": self.status, "ok": True})
            except Exception as e:  # noqa: BLE001 (the page shows it; rendering goes on)
                log.warning("render failed: %s", e)
                with self._lock:
                    if self._closed:
                        return
                    # Back to the last chain that rendered (once more, on a new renderer) only when
                    # no edit arrived during the failed render: edits the page has had accepted
                    # are never dropped, and render next. A failing good chain is not retried.
                    retry = chain != self._good and self._seq == seq
                    if retry:
                        self._chain = self._good.copy()
                        self._seq += 1
                    self._render_seq, rendered_view = seq, view_seq
                self._publish({"type": "banner", "message": f"render failed: {e}"
                               + ("; back to the last chain that rendered" if retry else "")})
                self._applied = None  # rebuild from the last good chain
                self._publish(self.state_message())

    def _apply(self, chain: RendererConfig) -> bool:
        """Brings the renderer to ``chain``: an ``update()`` of what changed, or a new renderer.

        Returns:
            True when the renderer was rebuilt.
        """
        target = self._explicit(chain)
        applied = self._applied
        if applied is not None:
            update = self._update_for(applied, target)
            if update is not None:
                if update.components:
                    self._renderer.update(update)
                self._applied = target
                return False
        self._publish({"type": "status", "text": "rebuilding the renderer for the new chain ...", "ok": True})
        old, self._renderer = self._renderer, None
        if old is not None:
            old.shutdown()
        renderer = self._make_renderer(self._render_config, chain.copy())
        with self._lock:
            if self._closed:  # close() ran while this one started: it is nobody's to keep
                renderer.shutdown()
                raise RuntimeError("the session was closed")
            self._renderer = renderer
        self._applied = target
        self._last_response = None
        return True

    @staticmethod
    def _update_for(applied: RendererConfig, target: RendererConfig) -> RendererConfig | None:
        """The ``update()`` taking the renderer from ``applied`` to ``target``; ``None`` when a
        merge cannot express it (a component removed, moved, retyped, or a path cleared)."""
        old = applied.components
        new = target.components
        if len(new) < len(old) or any((a.type, a.name) != (b.type, b.name) for a, b in zip(old, new)):
            return None
        update = RendererConfig()
        for a, b in zip(old, new):
            if a.path != b.path and not b.path:
                return None
            changed = {k: v for k, v in b.properties.items() if a.properties.get(k) != v}
            if changed or a.path != b.path:
                update.components.append(ComponentSpec(b.type, b.name, b.path if b.path != a.path else "", changed))
        for b in new[len(old):]:
            update.components.append(ComponentSpec(b.type, b.name, b.path, dict(b.properties)))
        return update

    def _request(self, seeds: np.ndarray, state_row: int | str) -> tuple[np.ndarray, list[dict[str, int]]]:
        if state_row == "random":
            rows = np.array([np.random.default_rng(int(s)).integers(len(self.states)) for s in seeds])
        else:
            rows = np.full(len(seeds), int(state_row))
        columns = [{"seed": int(s), "row": int(r)} for s, r in zip(seeds, rows)]
        return self.states[rows], columns

    def _frame(self, response: dict[str, np.ndarray], seq: int, modality: str, render_s: float) -> Frame:
        from PIL import Image

        started = time.perf_counter()
        layout = self._renderer.layout
        wanted = Modality(modality)
        cameras = list(self.config.camera_names)
        images: list[list[str]] = []
        overlays: list[list[dict[str, list]]] = []
        streams = {o.key for o in layout.streams}
        for camera in cameras:
            output = next(o for o in layout.for_camera(camera) if o.modality is wanted)
            pictures = output.picture(response[output.key])  # uint8 [B, H, W, 3]
            row = []
            for picture in pictures:
                buffer = io.BytesIO()
                if wanted is Modality.COLOR:
                    Image.fromarray(picture).save(buffer, format="JPEG", quality=92)
                    kind = "jpeg"
                else:
                    Image.fromarray(picture).save(buffer, format="PNG", compress_level=1)
                    kind = "png"
                row.append(f"data:image/{kind};base64," + base64.b64encode(buffer.getvalue()).decode())
            images.append(row)
            marks: list[dict[str, list]] = [{"points": [], "boxes": []} for _ in pictures]
            point_suffix = f"_X_{camera}"
            for key in sorted(streams):
                if key.startswith("tracker_") and key.endswith(point_suffix):
                    label = key[len("tracker_"):-len(point_suffix)]
                    for i, (x, y) in enumerate(np.asarray(response[key], dtype=float)):
                        marks[i]["points"].append([round(x, 4), round(y, 4), label])
                    box_key = key + "_bbox"
                    if box_key in streams:
                        for i, box in enumerate(np.asarray(response[box_key], dtype=float)):
                            marks[i]["boxes"].append([round(v, 4) for v in box] + [label])
            overlays.append(marks)
        return Frame(seq, modality, cameras, images, overlays, list(self._last_columns), render_s,
                     time.perf_counter() - started)
