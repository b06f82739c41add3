"""``make_vec``: the common case of batched rendering, one call.

``orrb.make_vec("OrrbDactyl-v0", num_envs=8, renderer="remote")`` builds 8 sub-envs (in
subprocesses by default) that simulate only, and one :class:`OrrbVectorObservation` that
renders all of them with one ``render_batch`` per step.
"""

from __future__ import annotations

from typing import Any, Callable

import gymnasium as gym

from orrb.wrappers.render_spec import RenderSpec, resolve_renderer

__all__ = ["env_factory", "make_renderer", "make_vec"]


def _is_orrb_env(env_id: str) -> bool:
    spec = gym.spec(env_id)
    entry = spec.entry_point if isinstance(spec.entry_point, str) else getattr(spec.entry_point, "__module__", "")
    return str(entry).startswith("orrb.")


def env_factory(env_id: str, env_kwargs: dict | None, wrapper_kwargs: dict | None) -> Callable[[], gym.Env]:
    """A picklable-enough factory for one sub-env that defers rendering to a vector wrapper."""
    env_kwargs = dict(env_kwargs or {})
    wrapper_kwargs = dict(wrapper_kwargs or {})
    import orrb  # noqa: F401  (registers orrb's envs)

    if _is_orrb_env(env_id):
        if wrapper_kwargs:
            raise ValueError(f"{env_id} takes its image arguments directly; wrapper_kwargs {sorted(wrapper_kwargs)} apply to other envs")
        env_kwargs["defer_rendering"] = True

        def make() -> gym.Env:
            import orrb  # noqa: F401

            return gym.make(env_id, **env_kwargs)
    else:
        wrapper_kwargs["defer_rendering"] = True

        def make() -> gym.Env:
            from orrb.wrappers.observation import OrrbObservation

            return OrrbObservation(gym.make(env_id, **env_kwargs), **wrapper_kwargs)

    return make


def make_renderer(spec: RenderSpec, renderer: Any, num_servers: int = 2) -> tuple[Any, bool]:
    """Turns a ``renderer`` argument into ``(renderer, owned)``.

    ``None`` or ``"local"``: an in-process :class:`orrb.LocalRenderer`; ``"remote"``: an
    :class:`orrb.RemoteRenderer` pool of ``num_servers`` server processes on this machine;
    a renderer object: used as is (shared, never shut down by the env).
    """
    if renderer is None or (isinstance(renderer, str) and renderer == "local"):
        return resolve_renderer(spec, None)
    if isinstance(renderer, str) and renderer in ("remote", "pool"):
        import orrb
        from orrb.utils import build_server_configs

        config = spec.remote_config
        if spec.renderer_config_json is not None:
            raise ValueError("a RemoteRenderer loads its components from a file: pass renderer_config as a path")
        pool = orrb.RemoteRenderer("orrb-vec", build_server_configs(1, num_servers, orrb.utils.free_base_port(num_servers)), config)
        pool.start()
        return pool, True
    if isinstance(renderer, str):
        raise ValueError(f"renderer must be None, 'local', 'remote' or a renderer object, got {renderer!r}")
    return resolve_renderer(spec, renderer)


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

    Args:
        env_id: ``"OrrbDactyl-v0"`` (image arguments such as ``width``, ``camera_names`` in
            ``env_kwargs``) or any MuJoCo env id such as ``"Ant-v5"`` (wrapped in
            :class:`orrb.wrappers.OrrbObservation` with ``wrapper_kwargs``).
        num_envs: number of sub-envs.
        renderer: ``None``/``"local"`` (in-process), ``"remote"`` (a pool of
            ``num_servers`` render servers, owned and shut down on ``close()``) or a
            renderer object to share (left running).
        vectorization_mode: ``"async"`` (``AsyncVectorEnv``, sub-envs in subprocesses) or
            ``"sync"``.
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

    from orrb.wrappers.vector import OrrbVectorObservation, get_render_spec

    if not isinstance(num_envs, int) or num_envs < 1:
        raise ValueError(f"num_envs must be an int >= 1, got {num_envs!r}")
    if vectorization_mode not in ("async", "sync"):
        raise ValueError(f"vectorization_mode must be 'async' or 'sync', got {vectorization_mode!r}")
    fns = [env_factory(env_id, env_kwargs, wrapper_kwargs) for _ in range(num_envs)]
    cls = AsyncVectorEnv if vectorization_mode == "async" else SyncVectorEnv
    envs = cls(fns, **(vector_kwargs or {}))
    try:
        spec = get_render_spec(envs.get_attr("orrb_render_spec"), "make_vec")
        renderer_obj, owned = make_renderer(spec, renderer, num_servers)
        wrapped = OrrbVectorObservation(envs, renderer_obj)
    except BaseException:
        envs.close()
        raise
    wrapped._owns_renderer = owned
    return wrapped
