"""``OrrbVectorObservation``: renders every sub-env of a Gymnasium vector env in one batch per step."""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium.vector import AutoresetMode, VectorEnv, VectorWrapper
from gymnasium.vector.utils import batch_space

from orrb.wrappers.handle import RendererHandle
from orrb.wrappers.render_spec import QPOS_KEY, SEED_KEY, shared_render_spec

__all__ = ["OrrbVectorObservation"]


class OrrbVectorObservation(VectorWrapper):
    """Renders all sub-envs of a ``SyncVectorEnv`` or ``AsyncVectorEnv`` with one ``render_batch`` per step.

    The sub-envs defer rendering (``OrrbDactyl-v0(defer_rendering=True)`` or
    :class:`orrb.wrappers.OrrbDeferredObservation`): they return their own observation
    and put their render-layout ``qpos`` and render seed in ``info``; the vector env
    stacks those as ``[N, K]`` and ``[N]`` arrays (no extra pipe round trips), and this
    wrapper renders them in one call, so a pool renders all sub-envs in parallel.

    Observations are those of the single envs, batched: colour ``uint8 [N, H, W, 3]`` per
    camera, plus the state entries. The vector env's autoreset mode is respected:
    ``NEXT_STEP`` and ``DISABLED`` need nothing special (envs not reset keep their last
    state); with ``SAME_STEP`` the terminal states are rendered in the same batch and
    ``info["final_obs"]`` holds their full observations (images included).
    The images of sub-env ``i`` equal those its single env would render (same seeds).

    Args:
        env: the vector env.
        renderer: ``None``: an owned in-process :class:`orrb.LocalRenderer`; a renderer:
            shared (never shut down by this wrapper); a
            :class:`orrb.wrappers.RendererHandle`: taken over (``close()`` closes it).
    """

    def __init__(self, env: VectorEnv, renderer: Any = None):
        super().__init__(env)
        self._handle: RendererHandle | None = None
        self.orrb_render_spec = shared_render_spec(env.get_attr("orrb_render_spec"), type(self).__name__)
        spec = self.orrb_render_spec
        self.single_observation_space = spec.observation_space(env.single_observation_space)
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.autoreset_mode = env.metadata.get("autoreset_mode", AutoresetMode.NEXT_STEP)
        # rows 0..N-1: each sub-env's latest state; rows N..2N-1: terminal states (SAME_STEP)
        self._qpos = np.zeros((2 * self.num_envs, spec.columns), dtype=np.float64)
        self._seeds = np.zeros(2 * self.num_envs, dtype=np.int64)
        self._all = np.ones(self.num_envs, dtype=bool)
        self._handle = RendererHandle.for_spec(spec, renderer)

    @property
    def renderer(self) -> Any:
        """The renderer (``None`` once closed)."""
        return self._handle.renderer if self._handle is not None else None

    def _gather(self, infos: dict[str, Any]) -> None:
        """Copies the rows of sub-envs that reported a state into rows ``0..N-1`` of the buffers."""
        if QPOS_KEY not in infos:
            raise KeyError(f"{type(self).__name__}: the sub-envs' info has no {QPOS_KEY!r}; build them with "
                           "defer_rendering=True or wrap them in OrrbDeferredObservation")
        n = self.num_envs
        mask = np.asarray(infos.get(f"_{QPOS_KEY}", self._all), dtype=bool)
        self._qpos[:n][mask] = np.asarray(infos[QPOS_KEY], dtype=np.float64)[mask]
        self._seeds[:n][mask] = np.asarray(infos[SEED_KEY], dtype=np.int64)[mask]

    def _finish(self, obs, infos, response) -> tuple[dict, dict]:
        spec = self.orrb_render_spec
        n = self.num_envs
        out = spec.assemble(response, slice(0, n), obs)
        for key in self._handle.stream_keys():
            infos[key] = np.array(response[key][:n])
            infos[f"_{key}"] = self._all.copy()
        return out, infos

    def reset(self, *, seed=None, options=None):
        obs, infos = self.env.reset(seed=seed, options=options)
        self._gather(infos)
        n = self.num_envs
        return self._finish(obs, infos, self._handle.render(self._qpos[:n], self._seeds[:n]))

    def step(self, actions):
        obs, rewards, terminations, truncations, infos = self.env.step(actions)
        self._gather(infos)
        n = self.num_envs
        final_rows = np.zeros(0, dtype=int)
        if self.autoreset_mode == AutoresetMode.SAME_STEP and "final_info" in infos:
            final_rows = np.flatnonzero(infos.get("_final_obs", infos.get("_final_info")))
            final_info = infos["final_info"]
            self._qpos[n:n + len(final_rows)] = np.asarray(final_info[QPOS_KEY], dtype=np.float64)[final_rows]
            self._seeds[n:n + len(final_rows)] = np.asarray(final_info[SEED_KEY], dtype=np.int64)[final_rows]
        rows = n + len(final_rows)
        response = self._handle.render(self._qpos[:rows], self._seeds[:rows])
        out, infos = self._finish(obs, infos, response)
        if len(final_rows):
            spec = self.orrb_render_spec
            final_obs = np.array(infos["final_obs"], dtype=object, copy=True)
            for j, i in enumerate(final_rows):
                final_obs[i] = spec.assemble(response, n + j, final_obs[i])
            infos["final_obs"] = final_obs
        return out, rewards, terminations, truncations, infos

    def close(self, **kwargs):
        """Closes the vector env and the renderer this wrapper owns (idempotent)."""
        try:
            if self._handle is not None:
                self._handle.close()
        finally:
            super().close(**kwargs)
