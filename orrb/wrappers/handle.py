"""``RendererHandle``: the one owner of a wrapper's renderer; ``observe``: one env's rendered observation.

Every wrapper and env of orrb's Gymnasium layer holds its renderer through a
``RendererHandle``: it knows whether the renderer is the handle's own (built for the
env, shut down by ``close()``) or shared (built by the user, left running), and checks a
shared renderer against what the env renders once, when the handle is made.
"""

from __future__ import annotations

import inspect
from typing import Any

import numpy as np

from orrb.config import RemoteRendererConfig
from orrb.errors import RendererError
from orrb.renderer import Renderer
from orrb.wrappers.render_spec import RenderSpec, render_request, with_render_state

__all__ = ["RendererHandle", "observe"]

# what a renderer must have: the Renderer protocol's methods, properties and attributes
_RENDERER_MEMBERS = tuple(sorted({*(n for n in dir(Renderer) if not n.startswith("_")), *Renderer.__annotations__}))
_ABSENT = object()


def missing_renderer_members(renderer: Any) -> list[str]:
    """The members of :class:`orrb.renderer.Renderer` that ``renderer`` lacks (looked up
    without calling properties, so a renderer is not started by the check)."""
    return [name for name in _RENDERER_MEMBERS if inspect.getattr_static(renderer, name, _ABSENT) is _ABSENT]


class RendererHandle:
    """A renderer and whether closing the handle shuts it down.

    Args:
        renderer: an :class:`orrb.LocalRenderer`, :class:`orrb.RemoteRenderer` or any
            object satisfying :class:`orrb.renderer.Renderer`.
        owned: True: ``close()`` shuts the renderer down; False: it is left running.

    Example::

        handle = RendererHandle.for_spec(env.orrb_render_spec)     # an owned LocalRenderer
        response = handle.render(qpos, seeds)                       # qpos float64 [B, K], seeds int [B]
        handle.close()                                              # shuts it down; idempotent
    """

    def __init__(self, renderer: Renderer, *, owned: bool):
        missing = missing_renderer_members(renderer)
        if missing:
            raise TypeError(
                "renderer must satisfy orrb.renderer.Renderer (orrb.LocalRenderer, orrb.RemoteRenderer or an object "
                f"with their API); {type(renderer).__name__} lacks {missing}")
        self._renderer = renderer
        self._owned = bool(owned)

    @classmethod
    def for_spec(cls, spec: RenderSpec, renderer: Any = None) -> RendererHandle:
        """The handle a wrapper rendering ``spec`` uses.

        Args:
            spec: what the env renders.
            renderer: ``None``: a new :class:`orrb.LocalRenderer`, owned by the handle;
                a ``RendererHandle``: returned as is (its owner passes it on); any other
                renderer: shared (never shut down by the handle).

        Raises:
            TypeError: ``renderer`` does not satisfy :class:`orrb.renderer.Renderer`.
            ValueError: the renderer renders another scene, other cameras, another size
                or fewer modalities than ``spec`` needs (names the field).
        """
        if renderer is None:
            from orrb.local import LocalRenderer

            return cls(LocalRenderer(spec.remote_config, spec.renderer_config), owned=True)
        if isinstance(renderer, RendererHandle):
            if renderer.renderer is None:
                raise ValueError("the RendererHandle is closed")
            check_fits(spec, renderer.renderer)
            return renderer
        handle = cls(renderer, owned=False)
        check_fits(spec, renderer)
        return handle

    @property
    def renderer(self) -> Any:
        """The renderer, or ``None`` once the handle is closed."""
        return self._renderer

    @property
    def owned(self) -> bool:
        """Whether ``close()`` shuts the renderer down."""
        return self._owned

    @property
    def closed(self) -> bool:
        return self._renderer is None

    def render(self, qpos: np.ndarray, seeds: np.ndarray) -> dict[str, np.ndarray]:
        """Renders states ``qpos`` float64 ``[B, K]`` with per-entry seeds int ``[B]``.

        Returns:
            the renderer's response (see :meth:`orrb.LocalRenderer.render_batch`).

        Raises:
            RendererError: the handle is closed, or rendering failed.
        """
        if self._renderer is None:
            raise RendererError("RendererHandle.render() after close()")
        return self._renderer.render_batch(render_request(qpos, seeds))

    def stream_keys(self) -> list[str]:
        """Keys of the component streams (``[B, k]`` arrays) in the renderer's responses (its layout's streams)."""
        if self._renderer is None:
            return []
        return [o.key for o in self._renderer.layout.streams]

    def close(self) -> None:
        """Shuts the renderer down if the handle owns it (a shared one is left running). Idempotent."""
        renderer, owned = self._renderer, self._owned
        self._renderer = None
        if renderer is not None and owned:
            renderer.shutdown()

    def __enter__(self) -> RendererHandle:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._renderer is None else type(self._renderer).__name__
        return f"RendererHandle({state}, owned={self._owned})"


def check_fits(spec: RenderSpec, renderer: Any) -> None:
    """Checks that ``renderer`` draws what ``spec`` needs: the same scene file, image size
    and alpha, and at least the needed cameras and modalities.

    Raises:
        ValueError: names the field, the renderer's value and the env's.
    """
    theirs = renderer.config
    if not isinstance(theirs, RemoteRendererConfig):
        raise TypeError(f"a shared renderer needs a `config` (orrb.RemoteRendererConfig), "
                        f"{type(renderer).__name__} has {type(theirs).__name__}")
    mine = spec.remote_config
    if theirs.resolve(theirs.model_xml_path) != mine.resolve(mine.model_xml_path):
        raise ValueError(
            f"the shared renderer renders {theirs.resolve(theirs.model_xml_path)}, the env needs "
            f"{mine.resolve(mine.model_xml_path)}")
    missing = [c for c in mine.camera_names if c not in theirs.camera_names]
    if missing:
        raise ValueError(
            f"the shared renderer lacks cameras {missing}; it renders {theirs.camera_names}, the env needs "
            f"{mine.camera_names}")
    if (theirs.image_width, theirs.image_height) != (mine.image_width, mine.image_height):
        raise ValueError(
            f"the shared renderer renders {theirs.image_width}x{theirs.image_height} images, the env needs "
            f"{mine.image_width}x{mine.image_height} (width x height)")
    for flag in ("render_depth", "render_normals", "render_segmentation"):
        if getattr(mine, flag) and not getattr(theirs, flag):
            raise ValueError(f"the env needs {flag}=True but the shared renderer's config has it off")
    if theirs.render_alpha != mine.render_alpha:
        raise ValueError(f"render_alpha differs: the shared renderer has {theirs.render_alpha}, the env {mine.render_alpha}")


def observe(handle: RendererHandle, spec: RenderSpec, state: Any, info: dict[str, Any], qpos: np.ndarray,
            seed: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """One env's observation: renders ``qpos`` with ``seed`` and joins the images to ``state``.

    Args:
        handle: the env's renderer.
        spec: what the env renders.
        state: the env's own observation.
        info: the env's info (not modified).
        qpos: float64 ``[K]``, the state in the renderer's layout.
        seed: the render seed.

    Returns:
        ``(observation, info)``: the observation as :meth:`RenderSpec.assemble` builds
        it; a new info with ``orrb_qpos``, ``orrb_seed`` and the components' streams
        (``float32 [k]`` each).
    """
    info = with_render_state(info, qpos, seed)
    response = handle.render(qpos[None], np.array([seed]))
    for key in handle.stream_keys():
        info[key] = response[key][0]
    return spec.assemble(response, 0, state), info
