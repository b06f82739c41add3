"""``OrrbVecEnvObservation``: the batched renderer for stable-baselines3 ``VecEnv``s.

Importing this module imports stable-baselines3 (and torch); ``import orrb`` does not.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from orrb.extras import import_optional

import_optional("stable_baselines3", "orrb's stable-baselines3 wrappers (make_sb3_vec)")  # else: the install line

from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv, VecEnv, VecEnvWrapper
from stable_baselines3.common.vec_env.base_vec_env import VecEnvObs, VecEnvStepReturn

from orrb.wrappers.render_spec import QPOS_KEY, SEED_KEY, render_request, resolve_renderer
from orrb.wrappers.vector import get_render_spec

__all__ = ["OrrbVecEnvObservation", "make_sb3_vec"]


class OrrbVecEnvObservation(VecEnvWrapper):
    """Renders all envs of a ``DummyVecEnv`` / ``SubprocVecEnv`` with one ``render_batch`` per step.

    The envs are built with ``defer_rendering=True``; each reports its render-layout
    ``qpos`` and seed in ``info``. SB3 resets a finished env inside ``step``: the
    returned observation is rendered from the reset state (``venv.reset_infos[i]``) and
    ``infos[i]["terminal_observation"]`` from the true terminal state (``infos[i]``), both
    in the same batch. Observations: ``{camera: uint8 [N, H, W, 3], ...state entries}``,
    ready for ``MultiInputPolicy`` (SB3 transposes the images itself).

    Args:
        venv: the SB3 vector env.
        renderer: a shared renderer (not shut down here), or ``None`` for an owned
            :class:`orrb.LocalRenderer`.
    """

    def __init__(self, venv: VecEnv, renderer: Any = None):
        self._renderer = None
        self._owns_renderer = False
        spec = get_render_spec(venv.get_attr("orrb_render_spec"), type(self).__name__)
        self.spec_render = spec
        super().__init__(venv, observation_space=spec.observation_space(venv.observation_space))
        self._renderer, self._owns_renderer = resolve_renderer(spec, renderer)

    @property
    def renderer(self):
        return self._renderer

    @staticmethod
    def _row(info: dict, where: str) -> tuple[np.ndarray, int]:
        if QPOS_KEY not in info:
            raise KeyError(f"OrrbVecEnvObservation: {where} has no {QPOS_KEY!r}; build the envs with defer_rendering=True")
        return np.asarray(info[QPOS_KEY], dtype=np.float64), int(info[SEED_KEY])

    def _state_rows(self, obs, rows) -> Any:
        if isinstance(obs, dict):
            return {k: np.asarray(v)[rows] for k, v in obs.items()}
        return np.asarray(obs)[rows]

    def reset(self) -> VecEnvObs:
        obs = self.venv.reset()
        rows = [self._row(info, f"reset_infos[{i}]") for i, info in enumerate(self.venv.reset_infos)]
        response = self._renderer.render_batch(render_request(np.stack([r[0] for r in rows]), np.array([r[1] for r in rows])))
        return self.spec_render.assemble(response, slice(0, self.num_envs), obs)

    def step_wait(self) -> VecEnvStepReturn:
        obs, rewards, dones, infos = self.venv.step_wait()
        n = self.num_envs
        rows, terminal = [], []
        for i in range(n):
            if dones[i]:
                rows.append(self._row(self.venv.reset_infos[i], f"reset_infos[{i}]"))
                terminal.append(i)
            else:
                rows.append(self._row(infos[i], f"infos[{i}]"))
        rows += [self._row(infos[i], f"infos[{i}] (terminal)") for i in terminal]
        response = self._renderer.render_batch(render_request(np.stack([r[0] for r in rows]), np.array([r[1] for r in rows])))
        spec = self.spec_render
        out = spec.assemble(response, slice(0, n), obs)
        aux = spec.aux_keys(response)
        infos = list(infos)
        for i in range(n):
            for key in aux:
                infos[i][key] = np.array(response[key][i])
        for j, i in enumerate(terminal):
            infos[i]["terminal_observation"] = spec.assemble(response, n + j, infos[i]["terminal_observation"])
            for key in aux:
                infos[i][f"terminal_{key}"] = np.array(response[key][n + j])
        return out, rewards, dones, infos

    def close(self) -> None:
        """Closes the vector env and the renderer this wrapper created (idempotent)."""
        renderer, owned = self._renderer, self._owns_renderer
        self._renderer, self._owns_renderer = None, False
        try:
            if renderer is not None and owned:
                renderer.shutdown()
        finally:
            self.venv.close()


def make_sb3_vec(env_id: str, n_envs: int, *, renderer: Any = None, subproc: bool = True,
                 wrapper_kwargs: dict | None = None, seed: int | None = None, **env_kwargs) -> OrrbVecEnvObservation:
    """Builds ``n_envs`` envs in a ``SubprocVecEnv`` (or ``DummyVecEnv``) rendered in one batch per step.

    Args:
        env_id: ``"OrrbDactyl-v0"`` (image arguments go in ``env_kwargs``) or any MuJoCo env
            id (wrapped in :class:`orrb.wrappers.OrrbObservation` with ``wrapper_kwargs``).
        n_envs: number of envs.
        renderer: see :func:`orrb.make_vec`.
        subproc: ``SubprocVecEnv`` (True) or ``DummyVecEnv``.
        seed: seeds env ``i`` with ``seed + i`` at the first reset.
    """
    from orrb.envs.make import env_factory, make_renderer

    fns = [env_factory(env_id, env_kwargs, wrapper_kwargs) for _ in range(n_envs)]
    venv = SubprocVecEnv(fns) if subproc else DummyVecEnv(fns)
    if seed is not None:
        venv.seed(seed)
    spec = get_render_spec(venv.get_attr("orrb_render_spec"), "make_sb3_vec")
    renderer, owned = make_renderer(spec, renderer)
    wrapped = OrrbVecEnvObservation(venv, renderer)
    if owned:
        wrapped._owns_renderer = True
    return wrapped
