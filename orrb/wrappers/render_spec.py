"""What an env renders, in a picklable form shared by single envs and vector wrappers.

- ``RenderSpec``: the renderer config, the component chain, the randomization schedule
  and how images join the env's own observation. Envs expose it as ``orrb_render_spec``
  so a vector wrapper in the parent process can render for sub-envs in subprocesses.
- ``shared_render_spec``: the one spec all sub-envs of a vector env share.
- ``SeedSchedule``: draws the per-entry render seed per episode or per step.
- ``renderer_config_fields``: a ``renderer_config`` argument as ``(path, json)``.

Sub-envs report their render-layout state in ``info["orrb_qpos"]`` (float64 ``[K]``) and
their render seed in ``info["orrb_seed"]`` (int) on every ``reset`` and ``step``.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from typing import Any, Iterable

import gymnasium as gym
import numpy as np

from orrb.config import RemoteRendererConfig, RendererConfig
from orrb.renderer import ResponseLayout

__all__ = ["QPOS_KEY", "RANDOMIZE_MODES", "SEED_KEY", "RenderSpec", "SeedSchedule", "render_request",
           "renderer_config_fields", "shared_render_spec", "with_render_state"]

QPOS_KEY = "orrb_qpos"
SEED_KEY = "orrb_seed"
RANDOMIZE_MODES = ("episode", "step")
_SEED_HIGH = 2**63 - 1


@dataclasses.dataclass
class RenderSpec:
    """What an env renders and how the images join its observation (picklable).

    Attributes:
        config: ``RemoteRendererConfig.to_dict()`` of the scene, cameras, size and modalities.
        renderer_config_json: the component chain as JSON when given as an object (it
            overrides ``config['renderer_config_path']``), else ``None``.
        columns: K, the length of the state the env reports in ``info["orrb_qpos"]``
            (what the renderer's ``columns`` must be).
        state_mode: how the env's own observation joins the images: ``"drop"`` (images
            only), ``"key"`` (under ``"state"``) or ``"merge"`` (the env's ``Dict``
            observation merged in).
        deferred: True when the env leaves rendering to a vector wrapper.
    """

    config: dict[str, Any]
    renderer_config_json: str | None
    columns: int
    state_mode: str
    deferred: bool = False

    def __post_init__(self):
        if self.state_mode not in ("drop", "key", "merge"):
            raise ValueError(f"RenderSpec state_mode must be 'drop', 'key' or 'merge', got {self.state_mode!r}")

    @property
    def remote_config(self) -> RemoteRendererConfig:
        """A fresh :class:`orrb.RemoteRendererConfig` of the scene, cameras, size and modalities."""
        return RemoteRendererConfig.from_dict(self.config)

    @property
    def renderer_config(self) -> RendererConfig | None:
        """The inline component chain, or ``None`` (the config's ``renderer_config_path`` applies)."""
        if self.renderer_config_json is None:
            return None
        return RendererConfig.from_json(self.renderer_config_json)

    @property
    def camera_names(self) -> list[str]:
        return list(self.config["camera_names"])

    @functools.cached_property
    def layout(self) -> ResponseLayout:
        """The image outputs the env observes (cameras x enabled modalities, in response order)."""
        return ResponseLayout.from_config(self.remote_config)

    def image_keys(self) -> list[str]:
        """Response keys that become observation entries, in order."""
        return [o.key for o in self.layout.images]

    def observation_space(self, state_space: gym.Space) -> gym.spaces.Dict:
        """The full observation space of one env, given the env's own observation space.

        Per image output the layout's ``Box``: colour ``uint8 (H, W, 3)`` in [0, 255] (4
        channels with ``render_alpha``), depth ``float32 (H, W)`` metres in [0, inf),
        normals ``float32 (H, W, 3)`` in [0, 1], segmentation ``uint8 (H, W)`` class ids;
        then the env's own observation as ``state_mode`` says.
        """
        spaces: dict[str, gym.Space] = dict(self.layout.spaces())
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
            state: the env's own observation for those rows (ignored with ``"drop"``).

        Returns:
            ``{key: array}``; image arrays are fresh copies the caller owns.
        """
        obs: dict[str, Any] = {key: np.array(response[key][rows]) for key in self.image_keys()}
        if self.state_mode == "key":
            obs["state"] = state
        elif self.state_mode == "merge":
            obs.update(state)
        return obs

    def same_scene(self, other: RenderSpec) -> bool:
        """Whether ``other`` renders the same scene, cameras, modalities and components."""
        return (self.config == other.config and self.renderer_config_json == other.renderer_config_json
                and self.columns == other.columns)


def shared_render_spec(specs: Iterable[Any], where: str) -> RenderSpec:
    """The one ``RenderSpec`` all sub-envs of a vector env share (same scene, deferred rendering).

    Args:
        specs: the sub-envs' ``orrb_render_spec`` attributes (``VectorEnv.get_attr``).
        where: the caller's name, for error messages.

    Raises:
        TypeError: a sub-env has no orrb ``RenderSpec``.
        ValueError: sub-envs render different scenes, or render their own images.
    """
    specs = list(specs)
    first = specs[0]
    if not isinstance(first, RenderSpec):
        raise TypeError(f"{where}: the sub-envs' orrb_render_spec is {type(first).__name__}, expected an orrb RenderSpec")
    for i, spec in enumerate(specs[1:], 1):
        if not isinstance(spec, RenderSpec) or not spec.same_scene(first):
            raise ValueError(f"{where}: sub-env {i} renders a different scene or cameras than sub-env 0; all must match")
        if spec.state_mode != first.state_mode:  # one observation space for the batch
            raise ValueError(f"{where}: sub-env {i} puts its own observation as {spec.state_mode!r}, sub-env 0 as "
                             f"{first.state_mode!r} (images_only and the state entries must match)")
    if not all(spec.deferred for spec in specs):
        raise ValueError(
            f"{where}: the sub-envs render their own images; build them with defer_rendering=True "
            "(OrrbDactyl-v0(defer_rendering=True)) or wrap them in orrb.wrappers.OrrbDeferredObservation, "
            "or use orrb.make_vec"
        )
    return first


class SeedSchedule:
    """Draws render seeds from a generator, per episode or per step.

    Args:
        randomize: ``"episode"``: one seed drawn at ``reset`` serves every step of the
            episode; ``"step"``: a new seed at every ``reset`` and ``step``.

    Raises:
        ValueError: ``randomize`` is neither.
    """

    def __init__(self, randomize: str):
        if randomize not in RANDOMIZE_MODES:
            raise ValueError(
                f"randomize must be one of {RANDOMIZE_MODES} (when to draw new randomization), got {randomize!r}")
        self.randomize = randomize
        self.seed: int | None = None

    def on_reset(self, rng: np.random.Generator) -> int:
        """The render seed of the first observation of an episode (a new draw)."""
        self.seed = int(rng.integers(0, _SEED_HIGH))
        return self.seed

    def on_step(self, rng: np.random.Generator) -> int:
        """The render seed after a step (the episode's seed, or a new draw per step)."""
        if self.randomize == "step" or self.seed is None:
            self.seed = int(rng.integers(0, _SEED_HIGH))
        return self.seed


def renderer_config_fields(renderer_config: Any, default_path: str | None) -> tuple[str | None, str | None]:
    """Splits a ``renderer_config`` argument into ``(path, json)``.

    Accepts ``"default"`` (``default_path``), ``None`` (no components), a path, or an
    :class:`orrb.RendererConfig` (kept as JSON).

    Raises:
        FileNotFoundError: the path does not exist.
        TypeError: any other kind of argument.
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


def with_render_state(info: dict[str, Any], qpos: np.ndarray, seed: int) -> dict[str, Any]:
    """A copy of ``info`` with the state to render (``orrb_qpos``, float64 ``[K]``) and its seed (``orrb_seed``)."""
    info = dict(info)
    info[QPOS_KEY] = qpos
    info[SEED_KEY] = seed
    return info


def render_request(qpos: np.ndarray, seeds: np.ndarray) -> dict[str, np.ndarray]:
    """A render request for states ``qpos`` float64 ``[B, K]`` with per-entry ``seeds`` int ``[B]``."""
    return {"qpos": np.ascontiguousarray(qpos, dtype=np.float64), "seeds": np.asarray(seeds, dtype=np.int64)}
