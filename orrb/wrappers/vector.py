"""``OrrbVectorObservation``: renders every sub-env of a Gymnasium vector env in one batch per step."""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium.vector import AutoresetMode, VectorEnv, VectorWrapper
from gymnasium.vector.utils import batch_space

from orrb.wrappers.render_spec import (
    QPOS_KEY,
    SEED_KEY,
    RenderSpec,
    release_renderer,
    render_request,
    resolve_renderer,
)

__all__ = ["OrrbVectorObservation", "get_render_spec"]


def get_render_spec(specs, where: str) -> RenderSpec:
    """The one ``RenderSpec`` all sub-envs share (they must render the same scene, deferred)."""
    specs = list(specs)
    first = specs[0]
    if not isinstance(first, RenderSpec):
        raise TypeError(f"{where}: the sub-envs' orrb_render_spec is {type(first).__name__}, expected an orrb RenderSpec")
    for i, spec in enumerate(specs[1:], 1):
        if not spec.same_scene(first):
            raise ValueError(f"{where}: sub-env {i} renders a different scene or cameras than sub-env 0; all must match")
    if not first.deferred:
        raise ValueError(
            f"{where}: the sub-envs render their own images; build them with defer_rendering=True "
            "(OrrbDactyl-v0(defer_rendering=True) or OrrbObservation(env, ..., defer_rendering=True)), "
            "or use orrb.make_vec"
        )
    return first


class OrrbVectorObservation(VectorWrapper):
    """Renders all sub-envs of a ``SyncVectorEnv`` or ``AsyncVectorEnv`` with one ``render_batch`` per step.

    The sub-envs are built with ``defer_rendering=True`` (``OrrbDactyl-v0`` or
    :class:`orrb.wrappers.OrrbObservation`): they return their state observation and
    put their render-layout ``qpos`` and render seed in ``info``; the vector env stacks
    those as ``[N, K]`` and ``[N]`` arrays (no extra pipe round trips), and this wrapper
    renders them in one call, so a pool renders all sub-envs in parallel.

    Observations are those of the single envs, batched: colour ``uint8 [N, H, W, 3]`` per
    camera, plus the state entries. The vector env's autoreset mode is respected:
    ``NEXT_STEP`` and ``DISABLED`` need nothing special (envs not reset keep their last
    state); with ``SAME_STEP`` the terminal states are rendered in the same batch and
    ``info["final_obs"]`` holds their full observations (images included).
    The images of sub-env ``i`` equal those its single env would render (same seeds).

    Args:
        env: the vector env.
        renderer: a shared renderer (not shut down by this wrapper), or ``None`` for an
            owned in-process :class:`orrb.LocalRenderer`.
    """

    def __init__(self, env: VectorEnv, renderer: Any = None):
        super().__init__(env)
        self._renderer = None
        self._owns_renderer = False
        self.spec_render = get_render_spec(env.get_attr("orrb_render_spec"), type(self).__name__)
        spec = self.spec_render
        self.single_observation_space = spec.observation_space(env.single_observation_space)
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.autoreset_mode = env.metadata.get("autoreset_mode", AutoresetMode.NEXT_STEP)
        self._renderer, self._owns_renderer = resolve_renderer(spec, renderer)
        self._qpos: np.ndarray | None = None  # [N, K], allocated on the first reset (K from info)
        self._seeds = np.zeros(self.num_envs, dtype=np.int64)

    @property
    def renderer(self):
        return self._renderer

    def _gather(self, infos: dict[str, Any]) -> None:
        """Copies the rows of sub-envs that reported a state into the ``[N, K]`` buffers."""
        if QPOS_KEY not in infos:
            raise KeyError(f"{type(self).__name__}: the sub-envs' info has no {QPOS_KEY!r}; build them with defer_rendering=True")
        qpos = np.asarray(infos[QPOS_KEY], dtype=np.float64)
        mask = np.asarray(infos.get(f"_{QPOS_KEY}", np.ones(self.num_envs, bool)), dtype=bool)
        if self._qpos is None:
            self._qpos = np.zeros((self.num_envs, qpos.shape[1]))
        self._qpos[mask] = qpos[mask]
        self._seeds[mask] = np.asarray(infos[SEED_KEY], dtype=np.int64)[mask]

    def _render(self, extra_qpos: np.ndarray | None = None, extra_seeds: np.ndarray | None = None):
        qpos, seeds = self._qpos, self._seeds
        if extra_qpos is not None and len(extra_qpos):
            qpos = np.concatenate([qpos, extra_qpos])
            seeds = np.concatenate([seeds, extra_seeds])
        return self._renderer.render_batch(render_request(qpos, seeds))

    def _finish(self, obs, infos, response) -> tuple[dict, dict]:
        spec = self.spec_render
        n = self.num_envs
        out = spec.assemble(response, slice(0, n), obs)
        for key in spec.aux_keys(response):
            infos[key] = np.array(response[key][:n])
            infos[f"_{key}"] = np.ones(n, dtype=bool)
        return out, infos

    def reset(self, *, seed=None, options=None):
        obs, infos = self.env.reset(seed=seed, options=options)
        self._gather(infos)
        return self._finish(obs, infos, self._render())

    def step(self, actions):
        obs, rewards, terminations, truncations, infos = self.env.step(actions)
        self._gather(infos)
        final_rows = np.zeros(0, dtype=int)
        extra_qpos = extra_seeds = None
        if self.autoreset_mode == AutoresetMode.SAME_STEP and "final_info" in infos:
            final_rows = np.flatnonzero(infos.get("_final_obs", infos.get("_final_info")))
            final_info = infos["final_info"]
            extra_qpos = np.asarray(final_info[QPOS_KEY], dtype=np.float64)[final_rows]
            extra_seeds = np.asarray(final_info[SEED_KEY], dtype=np.int64)[final_rows]
        response = self._render(extra_qpos, extra_seeds)
        out, infos = self._finish(obs, infos, response)
        if len(final_rows):
            spec = self.spec_render
            final_obs = np.array(infos["final_obs"], dtype=object, copy=True)
            for j, i in enumerate(final_rows):
                final_obs[i] = spec.assemble(response, self.num_envs + j, final_obs[i])
            infos["final_obs"] = final_obs
        return out, rewards, terminations, truncations, infos

    def close(self):
        """Closes the vector env and the renderer this wrapper created (idempotent)."""
        try:
            release_renderer(self)
        finally:
            super().close()
