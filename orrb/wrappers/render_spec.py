"""What an env renders, in a picklable form shared by single envs and vector wrappers.

- ``RenderSpec``: the renderer config, the component chain, the randomization schedule
  and how images join the env's own observation. Envs expose it as ``orrb_render_spec``
  so a vector wrapper in the parent process can render for sub-envs in subprocesses.
- ``SeedSchedule``: draws the per-entry render seed per episode or per step.
- ``resolve_renderer``: the renderer to use (an owned ``LocalRenderer``, or a shared one,
  checked against the spec).

Sub-envs report their render-layout state in ``info["orrb_qpos"]`` (float64 ``[K]``) and
their render seed in ``info["orrb_seed"]`` (int) on every ``reset`` and ``step``.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import gymnasium as gym
import numpy as np

from orrb.config import RemoteRendererConfig, RendererConfig

__all__ = ["QPOS_KEY", "SEED_KEY", "RANDOMIZE_MODES", "RenderSpec", "SeedSchedule", "release_renderer", "resolve_renderer"]

QPOS_KEY = "orrb_qpos"
SEED_KEY = "orrb_seed"
RANDOMIZE_MODES = ("episode", "step")
# How the env's own observation joins the images: dropped, put under "state", or its
# Dict entries merged in.
STATE_MODES = ("drop", "key", "merge")
_SEED_HIGH = 2**63 - 1


@dataclasses.dataclass
class RenderSpec:
    """What an env renders and how the images join its observation (picklable).

    Attributes:
        config: ``RemoteRendererConfig.to_dict()`` of the scene, cameras, size and modalities.
        renderer_config_json: the component chain as JSON when given as an object (it
            overrides ``config['renderer_config_path']``), else ``None``.
        randomize: ``"episode"`` (one seed per episode) or ``"step"`` (a new seed every step).
        state_mode: ``"drop"`` (images only), ``"key"`` (the env's observation under
            ``"state"``) or ``"merge"`` (the env's ``Dict`` observation merged in).
        deferred: True when the env leaves rendering to a vector wrapper.
    """

    config: dict[str, Any]
    renderer_config_json: str | None
    randomize: str
    state_mode: str
    deferred: bool = False

    @property
    def remote_config(self) -> RemoteRendererConfig:
        return RemoteRendererConfig.from_dict(self.config)

    @property
    def renderer_config(self) -> RendererConfig | None:
        if self.renderer_config_json is None:
            return None
        return RendererConfig.from_json(self.renderer_config_json)

    @property
    def camera_names(self) -> list[str]:
        return list(self.config["camera_names"])

    def image_keys(self) -> list[str]:
        """Response keys that become observation entries, in order."""
        keys = []
        for cam in self.config["camera_names"]:
            keys.append(cam)
            if self.config["render_depth"]:
                keys.append(f"{cam}_depth")
            if self.config["render_normals"]:
                keys.append(f"{cam}_normals")
            if self.config["render_segmentation"]:
                keys.append(f"{cam}_segmentation")
        return keys

    def image_spaces(self) -> dict[str, gym.spaces.Box]:
        """The observation entries of one env: ``{key: Box}``.

        Colour ``uint8 (H, W, 3)`` in [0, 255] (4 channels with ``render_alpha``), depth
        ``float32 (H, W)`` metres in [0, inf), normals ``float32 (H, W, 3)`` in [0, 1],
        segmentation ``uint8 (H, W)`` class ids.
        """
        h, w = self.config["image_height"], self.config["image_width"]
        channels = 4 if self.config["render_alpha"] else 3
        spaces: dict[str, gym.spaces.Box] = {}
        for key in self.image_keys():
            if key.endswith("_depth"):
                spaces[key] = gym.spaces.Box(0.0, np.inf, (h, w), np.float32)
            elif key.endswith("_normals"):
                spaces[key] = gym.spaces.Box(0.0, 1.0, (h, w, 3), np.float32)
            elif key.endswith("_segmentation"):
                spaces[key] = gym.spaces.Box(0, 255, (h, w), np.uint8)
            else:
                spaces[key] = gym.spaces.Box(0, 255, (h, w, channels), np.uint8)
        return spaces

    def observation_space(self, state_space: gym.Space) -> gym.spaces.Dict:
        """The full observation space of one env, given the env's own observation space."""
        spaces: dict[str, gym.Space] = dict(self.image_spaces())
        if self.state_mode == "key":
            spaces["state"] = state_space
        elif self.state_mode == "merge":
            if not isinstance(state_space, gym.spaces.Dict):
                raise TypeError(f"state_mode 'merge' needs a Dict observation space, got {state_space}")
            for key, space in state_space.spaces.items():
                if key in spaces:
                    raise ValueError(f"observation key {key!r} is both an image and a state entry")
                spaces[key] = space
        return gym.spaces.Dict(spaces)

    def assemble(self, response: dict[str, np.ndarray], rows, state: Any) -> dict[str, Any]:
        """Builds observations from response rows and the env's own observation.

        Args:
            response: a render response (``[B, ...]`` arrays).
            rows: an index (one env) or a slice / index array (a batch).
            state: the env's own observation for those rows (or ``None`` with ``"drop"``).

        Returns:
            ``{key: array}``; image arrays are fresh copies the caller owns.
        """
        obs: dict[str, Any] = {key: np.array(response[key][rows]) for key in self.image_keys()}
        if self.state_mode == "key":
            obs["state"] = state
        elif self.state_mode == "merge":
            obs.update(state)
        return obs

    def aux_keys(self, response: dict[str, Any]) -> list[str]:
        """Response keys that are components' auxiliary streams ``[B, k]`` (they go into ``info``)."""
        return [k for k, v in response.items()
                if k not in ("qpos", "seed", "seeds") and isinstance(v, np.ndarray) and v.ndim == 2]

    def same_scene(self, other: RenderSpec) -> bool:
        return self.config == other.config and self.renderer_config_json == other.renderer_config_json


class SeedSchedule:
    """Draws render seeds from a generator, per episode or per step.

    Args:
        randomize: ``"episode"``: one seed drawn at ``reset`` serves every step of the
            episode; ``"step"``: a new seed at every ``reset`` and ``step``.
    """

    def __init__(self, randomize: str):
        if randomize not in RANDOMIZE_MODES:
            raise ValueError(f"randomize must be one of {RANDOMIZE_MODES}, got {randomize!r}")
        self.randomize = randomize
        self.seed: int | None = None

    def on_reset(self, rng: np.random.Generator) -> int:
        self.seed = int(rng.integers(0, _SEED_HIGH))
        return self.seed

    def on_step(self, rng: np.random.Generator) -> int:
        if self.randomize == "step" or self.seed is None:
            self.seed = int(rng.integers(0, _SEED_HIGH))
        return self.seed


def check_randomize(randomize: str) -> str:
    if randomize not in RANDOMIZE_MODES:
        raise ValueError(f"randomize must be one of {RANDOMIZE_MODES} (when to draw new randomization), got {randomize!r}")
    return randomize


def renderer_config_fields(renderer_config: Any, default_path: str | None) -> tuple[str | None, str | None]:
    """Splits a ``renderer_config`` argument into ``(path, json)``.

    Accepts ``"default"`` (``default_path``), ``None`` (no components), a path, or an
    :class:`orrb.RendererConfig` (kept as JSON).
    """
    if isinstance(renderer_config, str) and renderer_config == "default":
        return default_path, None
    if renderer_config is None:
        return None, None
    if isinstance(renderer_config, RendererConfig):
        return None, renderer_config.to_json(indent=None)
    if isinstance(renderer_config, (str, os.PathLike)):
        path = os.path.abspath(os.path.expanduser(os.fspath(renderer_config)))
        if not os.path.isfile(path):
            raise FileNotFoundError(f"renderer config file not found: {path}")
        RendererConfig.load(path)  # fail here, in the caller, on a bad file
        return path, None
    raise TypeError(
        f"renderer_config must be 'default', None, a path or an orrb.RendererConfig, got {type(renderer_config).__name__}"
    )


def resolve_renderer(spec: RenderSpec, renderer: Any) -> tuple[Any, bool]:
    """The renderer for ``spec``: ``(renderer, owned)``.

    ``None`` builds an in-process :class:`orrb.LocalRenderer` (owned: the caller shuts
    it down). Anything else must have the renderer API (``render_batch``, ``columns``)
    and, when it exposes ``config``, render the same scene file, the needed cameras,
    the same image size and the needed modalities.

    Raises:
        TypeError: ``renderer`` lacks ``render_batch``.
        ValueError: the renderer's config does not fit the env's (names the field).
    """
    if renderer is None:
        from orrb.local import LocalRenderer

        return LocalRenderer(spec.remote_config, spec.renderer_config), True
    if not callable(getattr(renderer, "render_batch", None)):
        raise TypeError(
            f"renderer must be an orrb.LocalRenderer / orrb.RemoteRenderer (with render_batch), got {type(renderer).__name__}"
        )
    theirs = getattr(renderer, "config", None)
    if isinstance(theirs, RemoteRendererConfig):
        mine = spec.remote_config
        if theirs.resolve(theirs.model_xml_path) != mine.resolve(mine.model_xml_path):
            raise ValueError(
                f"the shared renderer renders {theirs.resolve(theirs.model_xml_path)}, the env needs "
                f"{mine.resolve(mine.model_xml_path)}"
            )
        missing = [c for c in mine.camera_names if c not in theirs.camera_names]
        if missing:
            raise ValueError(
                f"the shared renderer lacks cameras {missing}; it renders {theirs.camera_names}, the env needs "
                f"{mine.camera_names}"
            )
        if (theirs.image_width, theirs.image_height) != (mine.image_width, mine.image_height):
            raise ValueError(
                f"the shared renderer renders {theirs.image_width}x{theirs.image_height} images, the env needs "
                f"{mine.image_width}x{mine.image_height} (width x height)"
            )
        for flag in ("render_alpha", "render_depth", "render_normals", "render_segmentation"):
            if getattr(mine, flag) and not getattr(theirs, flag):
                raise ValueError(f"the env needs {flag}=True but the shared renderer's config has it off")
        if theirs.render_alpha != mine.render_alpha:
            raise ValueError(f"render_alpha differs: renderer {theirs.render_alpha}, env {mine.render_alpha}")
    return renderer, False


def render_request(qpos: np.ndarray, seeds: np.ndarray) -> dict[str, np.ndarray]:
    return {"qpos": np.ascontiguousarray(qpos, dtype=np.float64), "seeds": np.asarray(seeds, dtype=np.int64)}


def release_renderer(owner) -> None:
    """Detaches ``owner._renderer`` and shuts it down if ``owner`` created it (a shared
    renderer is left running). Idempotent."""
    renderer, owned = owner._renderer, owner._owns_renderer
    owner._renderer, owner._owns_renderer = None, False
    if renderer is not None and owned:
        renderer.shutdown()
