"""One call to a batched vector env: ``make_vec`` (Gymnasium) and ``make_sb3_vec`` (stable-baselines3).

``orrb.make_vec("OrrbDactyl-v0", num_envs=8, renderer="remote")`` builds 8 sub-envs (in
subprocesses by default) that simulate only, and one
:class:`~orrb.wrappers.OrrbVectorObservation` that renders all of them with one
``render_batch`` per step. ``orrb.make_sb3_vec`` does the same for stable-baselines3, with
its argument names (``n_envs``) and a ``VecMonitor`` so that PPO logs episode rewards.
Both work for orrb's envs and for any Gymnasium env built on MuJoCo (``"Ant-v5"``).

Importing this module does not import stable-baselines3; ``make_sb3_vec`` does, when called.
"""

from __future__ import annotations

import importlib
from typing import Any, Callable

import gymnasium as gym

from orrb.wrappers.handle import RendererHandle
from orrb.wrappers.render_spec import RenderSpec, shared_render_spec

__all__ = ["env_factory", "make_sb3_vec", "make_vec", "renderer_handle"]


def env_factory(env_id: str, env_kwargs: dict | None, wrapper_kwargs: dict | None) -> Callable[[], gym.Env]:
    """A picklable factory for one sub-env that leaves rendering to a vector wrapper.

    orrb's own envs (registered with an ``orrb.`` entry point, e.g. ``OrrbDactyl-v0``)
    take ``defer_rendering=True`` and their image arguments in ``env_kwargs``; any other
    env is wrapped in :class:`~orrb.wrappers.OrrbDeferredObservation` with ``wrapper_kwargs``.
    The factory carries the env's registration, so a subprocess needs no registry entry.

    Raises:
        gymnasium.error.Error: ``env_id`` is not registered.
        ValueError: ``wrapper_kwargs`` for one of orrb's envs.
    """
    env_kwargs = dict(env_kwargs or {})
    wrapper_kwargs = dict(wrapper_kwargs or {})
    module, _, name = env_id.rpartition(":")
    if module:  # "package:EnvId", as gymnasium.make takes it: the package registers the env on import
        importlib.import_module(module)
    spec = gym.spec(name)
    entry = spec.entry_point if isinstance(spec.entry_point, str) else getattr(spec.entry_point, "__module__", "")
    if str(entry).startswith("orrb."):
        if wrapper_kwargs:
            raise ValueError(f"{env_id} takes its image arguments directly; wrapper_kwargs {sorted(wrapper_kwargs)} "
                             "apply to other envs")
        env_kwargs["defer_rendering"] = True

        def make() -> gym.Env:
            return _gym_make(spec, env_kwargs)
    else:
        def make() -> gym.Env:
            from orrb.wrappers.observation import OrrbDeferredObservation

            return OrrbDeferredObservation(_gym_make(spec, env_kwargs), **wrapper_kwargs)

    return make


def _gym_make(spec, env_kwargs: dict) -> gym.Env:
    """``gymnasium.make``; an optional module the env needs (e.g. imageio for Gymnasium's MuJoCo
    envs) that is missing fails with the line that installs it."""
    from orrb.extras import EXTRAS, install_line

    try:
        return gym.make(spec, **env_kwargs)
    except ModuleNotFoundError as e:
        if not e.name or e.name.split(".")[0] not in EXTRAS:
            raise
        raise ModuleNotFoundError(f"{spec.id} needs the module {e.name!r}, which is not installed: "
                                  f"{install_line(e.name)}", name=e.name) from e


def renderer_handle(spec: RenderSpec, renderer: Any, num_servers: int = 2, name: str = "orrb-vec") -> RendererHandle:
    """Turns a ``renderer`` argument of :func:`make_vec` into a :class:`~orrb.wrappers.RendererHandle`.

    Args:
        spec: what the sub-envs render.
        renderer: ``None`` or ``"local"``: an owned in-process :class:`orrb.LocalRenderer`;
            ``"remote"``: an owned, started :class:`orrb.RemoteRenderer` pool of
            ``num_servers`` server processes on this machine (free ports chosen); a
            renderer object: shared (never shut down); a ``RendererHandle``: as is.
        num_servers: servers of a ``"remote"`` pool.
        name: the pool's name.

    Raises:
        ValueError: an unknown renderer name, or a renderer that does not fit ``spec``.
        orrb.RendererError: the pool did not start.
    """
    if renderer is None or (isinstance(renderer, str) and renderer == "local"):
        return RendererHandle.for_spec(spec, None)
    if isinstance(renderer, str) and renderer in ("remote", "pool"):
        from orrb.pool.client import RemoteRenderer
        from orrb.utils import build_server_configs, free_base_port

        if not isinstance(num_servers, int) or num_servers < 1:
            raise ValueError(f"num_servers must be an int >= 1, got {num_servers!r}")
        pool = RemoteRenderer(name, build_server_configs(1, num_servers, free_base_port(num_servers)),
                              spec.remote_config, spec.renderer_config)
        handle = RendererHandle(pool, owned=True)
        try:
            pool.start()
        except BaseException:
            handle.close()
            raise
        return handle
    if isinstance(renderer, str):
        raise ValueError(f"renderer must be None, 'local', 'remote' or a renderer object, got {renderer!r}")
    return RendererHandle.for_spec(spec, renderer)


def make_vec(
    env_id: str,
    num_envs: int = 1,
    *,
    renderer: Any = None,
    num_servers: int = 2,
    vectorization_mode: str = "async",
    wrapper_kwargs: dict | None = None,
    vector_kwargs: dict | None = None,
    **env_kwargs,
):
    """A Gymnasium vector env whose sub-envs are rendered with one ``render_batch`` per step.

    For stable-baselines3 use :func:`make_sb3_vec` (SB3 does not take Gymnasium vector envs).

    Args:
        env_id: ``"OrrbDactyl-v0"`` (image arguments such as ``width``, ``camera_names`` in
            ``env_kwargs``) or any MuJoCo env id such as ``"Ant-v5"`` (wrapped in
            :class:`orrb.wrappers.OrrbDeferredObservation` with ``wrapper_kwargs``, the
            arguments of :class:`orrb.wrappers.OrrbObservation`).
        num_envs: number of sub-envs.
        renderer: ``None``/``"local"`` (in-process), ``"remote"`` (a pool of
            ``num_servers`` render servers, owned and shut down on ``close()``) or a
            renderer object to share (left running).
        num_servers: render servers of a ``"remote"`` pool.
        vectorization_mode: ``"async"`` (``AsyncVectorEnv``, sub-envs in subprocesses) or
            ``"sync"``.
        wrapper_kwargs: arguments of the image wrapper, for envs other than orrb's.
        vector_kwargs: passed to the vector env (e.g. ``autoreset_mode``).
        **env_kwargs: passed to ``gymnasium.make``.

    Returns:
        :class:`orrb.wrappers.OrrbVectorObservation` with observations
        ``{camera: uint8 [N, H, W, 3], ...}``.

    Example::

        envs = orrb.make_vec("OrrbDactyl-v0", num_envs=8, renderer="remote", width=64, height=64)
        obs, infos = envs.reset(seed=0)
        obs["vision_cam_left"].shape     # (8, 64, 64, 3)
    """
    from gymnasium.vector import AsyncVectorEnv, SyncVectorEnv

    from orrb.wrappers.vector import OrrbVectorObservation

    if isinstance(num_envs, bool) or not isinstance(num_envs, int) or num_envs < 1:
        raise ValueError(f"num_envs must be an int >= 1, got {num_envs!r}")
    if vectorization_mode not in ("async", "sync"):
        raise ValueError(f"vectorization_mode must be 'async' or 'sync', got {vectorization_mode!r}")
    fns = [env_factory(env_id, env_kwargs, wrapper_kwargs) for _ in range(num_envs)]
    cls = AsyncVectorEnv if vectorization_mode == "async" else SyncVectorEnv
    envs = cls(fns, **(vector_kwargs or {}))
    handle = None
    try:
        spec = shared_render_spec(envs.get_attr("orrb_render_spec"), "make_vec")
        handle = renderer_handle(spec, renderer, num_servers)
        return OrrbVectorObservation(envs, renderer=handle)
    except BaseException:
        if handle is not None:
            handle.close()
        envs.close()
        raise


def make_sb3_vec(
    env_id: str,
    n_envs: int = 1,
    *,
    seed: int | None = None,
    renderer: Any = None,
    num_servers: int = 2,
    subproc: bool = True,
    monitor: bool = True,
    monitor_kwargs: dict | None = None,
    vec_env_kwargs: dict | None = None,
    wrapper_kwargs: dict | None = None,
    **env_kwargs,
):
    """A stable-baselines3 ``VecEnv`` whose envs are rendered with one ``render_batch`` per step.

    Build it under ``if __name__ == "__main__":`` in a script: ``SubprocVecEnv`` starts
    its workers by importing the main module again.

    Args:
        env_id: ``"OrrbDactyl-v0"`` (image arguments in ``env_kwargs``) or any MuJoCo env
            id (wrapped in :class:`orrb.wrappers.OrrbDeferredObservation` with
            ``wrapper_kwargs``).
        n_envs: number of envs (as SB3's ``make_vec_env``).
        seed: env ``i`` is seeded with ``seed + i`` at the first reset.
        renderer: ``None``/``"local"``, ``"remote"`` or a renderer object, as for :func:`make_vec`.
        num_servers: render servers of a ``"remote"`` pool.
        subproc: ``SubprocVecEnv`` (True: envs in subprocesses) or ``DummyVecEnv``.
        monitor: wrap in SB3's ``VecMonitor``, which puts each finished episode's reward
            and length in ``info["episode"]`` (PPO logs them as ``rollout/ep_rew_mean``
            and ``rollout/ep_len_mean``).
        monitor_kwargs: passed to ``VecMonitor`` (``filename``, ``info_keywords``).
        vec_env_kwargs: passed to the vector env (e.g. ``start_method`` of ``SubprocVecEnv``).
        wrapper_kwargs: arguments of the image wrapper, for envs other than orrb's.
        **env_kwargs: passed to ``gymnasium.make``.

    Returns:
        a ``VecMonitor`` over :class:`orrb.wrappers.OrrbVecEnvObservation` (or the latter
        alone with ``monitor=False``); observations ``{camera: uint8 [N, H, W, 3], ...}``,
        ready for ``PPO("MultiInputPolicy", venv)``. ``close()`` shuts down an owned renderer.

    Raises:
        ImportError: stable-baselines3 is not installed (``pip install "orrb[rl]"``).

    Example::

        if __name__ == "__main__":
            venv = orrb.make_sb3_vec("OrrbDactyl-v0", n_envs=4, renderer="remote", width=64, height=64)
            PPO("MultiInputPolicy", venv, tensorboard_log="runs").learn(100_000)
            venv.close()
    """
    from orrb.wrappers.sb3 import OrrbVecEnvObservation  # raises the install hint without SB3
    from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv, VecMonitor

    if isinstance(n_envs, bool) or not isinstance(n_envs, int) or n_envs < 1:
        raise ValueError(f"n_envs must be an int >= 1, got {n_envs!r}")
    fns = [env_factory(env_id, env_kwargs, wrapper_kwargs) for _ in range(n_envs)]
    venv = SubprocVecEnv(fns, **(vec_env_kwargs or {})) if subproc else DummyVecEnv(fns, **(vec_env_kwargs or {}))
    handle = None
    try:
        if seed is not None:
            venv.seed(seed)
        spec = shared_render_spec(venv.get_attr("orrb_render_spec"), "make_sb3_vec")
        handle = renderer_handle(spec, renderer, num_servers)
        wrapped = OrrbVecEnvObservation(venv, renderer=handle)
    except BaseException:
        if handle is not None:
            handle.close()
        venv.close()
        raise
    return VecMonitor(wrapped, **(monitor_kwargs or {})) if monitor else wrapped
