"""``OrrbVecEnvObservation``: the batched renderer for stable-baselines3 ``VecEnv``s.

Importing this module imports stable-baselines3 (and torch); ``import orrb`` does not.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from orrb.extras import import_optional

import_optional("stable_baselines3", "orrb's stable-baselines3 wrappers (make_sb3_vec)")  # else: the install line

from stable_baselines3.common.vec_env import VecEnv, VecEnvWrapper  # noqa: E402
from stable_baselines3.common.vec_env.base_vec_env import VecEnvObs, VecEnvStepReturn  # noqa: E402

from orrb.wrappers.handle import RendererHandle  # noqa: E402
from orrb.wrappers.make import make_sb3_vec  # noqa: E402
from orrb.wrappers.render_spec import QPOS_KEY, SEED_KEY, shared_render_spec  # noqa: E402

__all__ = ["OrrbVecEnvObservation", "make_sb3_vec"]


class OrrbVecEnvObservation(VecEnvWrapper):
    """Renders all envs of a ``DummyVecEnv`` / ``SubprocVecEnv`` with one ``render_batch`` per step.

    The envs defer rendering (``OrrbDactyl-v0(defer_rendering=True)`` or
    :class:`orrb.wrappers.OrrbDeferredObservation`); each reports its render-layout
    ``qpos`` and seed in ``info``. SB3 resets a finished env inside ``step``: the
    returned observation is rendered from the reset state (the innermost vector env's
    ``reset_infos[i]``, so SB3 wrappers such as ``VecMonitor`` may sit in between) and
    ``infos[i]["terminal_observation"]`` from the true terminal state (``infos[i]``), both
    in the same batch. Observations: ``{camera: uint8 [N, H, W, 3], ...state entries}``,
    ready for ``MultiInputPolicy`` (SB3 transposes the images itself).

    Args:
        venv: the SB3 vector env.
        renderer: ``None``: an owned in-process :class:`orrb.LocalRenderer`; a renderer:
            shared (never shut down here); a :class:`orrb.wrappers.RendererHandle`: taken
            over (``close()`` closes it).
    """

    def __init__(self, venv: VecEnv, renderer: Any = None):
        self._handle: RendererHandle | None = None
        spec = shared_render_spec(venv.get_attr("orrb_render_spec"), type(self).__name__)
        self.orrb_render_spec = spec
        super().__init__(venv, observation_space=spec.observation_space(venv.observation_space))
        # rows 0..N-1: the state each env shows now; rows N..2N-1: terminal states of envs that were reset
        self._qpos = np.zeros((2 * self.num_envs, spec.columns), dtype=np.float64)
        self._seeds = np.zeros(2 * self.num_envs, dtype=np.int64)
        self._handle = RendererHandle.for_spec(spec, renderer)

    @property
    def renderer(self) -> Any:
        """The renderer (``None`` once closed)."""
        return self._handle.renderer if self._handle is not None else None

    @property
    def _reset_infos(self) -> list[dict]:
        """The reset infos of the envs themselves: an SB3 ``VecEnvWrapper`` between them and
        this wrapper (``VecMonitor``, ...) keeps reset infos of its own, always empty."""
        return self.venv.unwrapped.reset_infos

    def _put(self, row: int, info: dict, where: str) -> None:
        if QPOS_KEY not in info:
            raise KeyError(f"OrrbVecEnvObservation: {where} has no {QPOS_KEY!r}; build the envs with "
                           "defer_rendering=True or wrap them in OrrbDeferredObservation")
        self._qpos[row] = info[QPOS_KEY]
        self._seeds[row] = info[SEED_KEY]

    def reset(self) -> VecEnvObs:
        obs = self.venv.reset()
        n = self.num_envs
        for i, info in enumerate(self._reset_infos):
            self._put(i, info, f"reset_infos[{i}]")
        response = self._handle.render(self._qpos[:n], self._seeds[:n])
        return self.orrb_render_spec.assemble(response, slice(0, n), obs)

    def step_wait(self) -> VecEnvStepReturn:
        obs, rewards, dones, infos = self.venv.step_wait()
        n = self.num_envs
        terminal = np.flatnonzero(dones)
        for i in range(n):
            if dones[i]:
                self._put(i, self._reset_infos[i], f"reset_infos[{i}]")
            else:
                self._put(i, infos[i], f"infos[{i}]")
        for j, i in enumerate(terminal):
            self._put(n + j, infos[i], f"infos[{i}] (terminal)")
        response = self._handle.render(self._qpos[:n + len(terminal)], self._seeds[:n + len(terminal)])
        spec = self.orrb_render_spec
        out = spec.assemble(response, slice(0, n), obs)
        streams = self._handle.stream_keys()
        infos = list(infos)
        for i in range(n):
            for key in streams:
                infos[i][key] = np.array(response[key][i])
        for j, i in enumerate(terminal):
            infos[i]["terminal_observation"] = spec.assemble(response, n + j, infos[i]["terminal_observation"])
            for key in streams:
                infos[i][f"terminal_{key}"] = np.array(response[key][n + j])
        return out, rewards, dones, infos

    def close(self) -> None:
        """Closes the vector env and the renderer this wrapper owns (idempotent)."""
        try:
            if self._handle is not None:
                self._handle.close()
        finally:
            self.venv.close()
