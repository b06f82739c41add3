"""Randomized camera images for any Gymnasium env built on MuJoCo.

- ``OrrbObservation``: renders every observation itself (``Dict`` of images and ``state``).
- ``OrrbDeferredObservation``: keeps the env's own observation and reports the state to
  render in ``info``, for a vector wrapper that renders all sub-envs in one batch.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import warnings
from typing import Any

import gymnasium as gym
import mujoco
import numpy as np

from orrb.config import RemoteRendererConfig, RenderSettings
from orrb.utils import package_relative_path
from orrb.wrappers.handle import RendererHandle, observe
from orrb.wrappers.render_spec import RenderSpec, SeedSchedule, renderer_config_fields, with_render_state

__all__ = ["FREE_CAMERA", "OrrbDeferredObservation", "OrrbObservation", "free_camera_pose"]

FREE_CAMERA = "free"
_FREE_KEYS = ("lookat", "distance", "azimuth", "elevation", "trackbodyid", "type", "fixedcamid")


def free_camera_pose(model: mujoco.MjModel, data: mujoco.MjData, camera_config: dict[str, Any]):
    """Where MuJoCo's free camera with Gymnasium's ``default_camera_config`` looks from.

    Starts from ``mjv_defaultFreeCamera`` (look at the model's centre from 1.5x its
    extent) and applies the given ``lookat`` (m), ``distance`` (m), ``azimuth`` and
    ``elevation`` (degrees), as Gymnasium's ``MujocoRenderer`` does; MuJoCo's own
    ``mjv_updateScene`` then computes the pose. A ``trackbodyid`` >= 0 makes it MuJoCo's
    tracking camera, which keeps that body's subtree centre of mass in view, as the config
    asks (the envs that set it, Hopper, Walker2d, Humanoid and others, move across the
    floor). Gymnasium 1.4's own ``rgb_array`` renderer ignores ``trackbodyid`` (its camera
    stays free), so for those envs ``env.render()`` shows another view.

    Returns:
        ``(pos float64 (3,), xyaxes float64 (6,), fovy degrees, trackbodyid)``.
    """
    unknown = set(camera_config) - set(_FREE_KEYS)
    if unknown:
        raise ValueError(f"free camera: unknown keys {sorted(unknown)}; accepted: {list(_FREE_KEYS)}")
    cam = mujoco.MjvCamera()
    mujoco.mjv_defaultFreeCamera(model, cam)
    for key, value in camera_config.items():
        if key in ("type", "fixedcamid"):
            continue
        if isinstance(getattr(cam, key), np.ndarray):
            getattr(cam, key)[:] = value
        else:
            setattr(cam, key, value)
    track = int(camera_config.get("trackbodyid", -1))
    if track >= 0:
        cam.type = mujoco.mjtCamera.mjCAMERA_TRACKING
    scene = mujoco.MjvScene(model, maxgeom=max(100, model.ngeom + 10))
    mujoco.mjv_updateScene(model, data, mujoco.MjvOption(), None, cam, mujoco.mjtCatBit.mjCAT_ALL, scene)
    gl = mujoco.mjv_averageCamera(scene.camera[0], scene.camera[1])  # the mono view mjr_render draws
    forward, up = np.array(gl.forward), np.array(gl.up)
    right = np.cross(forward, up)
    return np.array(gl.pos), np.concatenate([right, up]), float(model.vis.global_.fovy), track


def _model_cache_dir() -> str:
    path = os.path.join(tempfile.gettempdir(), f"orrb-models-{os.getuid() if hasattr(os, 'getuid') else 'user'}")
    os.makedirs(path, exist_ok=True)
    return path


def _xml_with_free_camera(xml_path: str, model: mujoco.MjModel, camera_config: dict[str, Any]) -> str:
    """Writes ``xml_path`` plus a camera named ``FREE_CAMERA`` at the free camera's pose.

    The file is named after its content in a per-user temporary folder, so every process
    (and every render server) building the same env finds the same file. Mesh and texture
    folders are made absolute so the copy loads from anywhere.
    """
    data = mujoco.MjData(model)
    mujoco.mj_forward(model, data)
    pos, xyaxes, fovy, track = free_camera_pose(model, data, camera_config)
    spec = mujoco.MjSpec.from_file(xml_path)
    base = os.path.dirname(os.path.abspath(xml_path))
    spec.meshdir = os.path.join(base, spec.meshdir or "")
    spec.texturedir = os.path.join(base, spec.texturedir or "")
    right, up = xyaxes[:3], xyaxes[3:]
    mat_world = np.stack([right / np.linalg.norm(right), up / np.linalg.norm(up), np.cross(right, up)], axis=1)
    if track >= 0:
        # a trackcom camera in the tracked body: MuJoCo keeps its offset from the subtree's
        # centre of mass (taken at qpos0) and its orientation fixed in the world frame.
        body_name = mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_BODY, track)
        parent = spec.body(body_name) if body_name else None
        if parent is None:
            raise ValueError(f"free camera: trackbodyid {track} has no name in the model; name the body to track it")
        rb = data.xmat[track].reshape(3, 3)
        local_pos = rb.T @ (pos - data.xpos[track])
        local_mat = rb.T @ mat_world
        mode = mujoco.mjtCamLight.mjCAMLIGHT_TRACKCOM
    else:
        parent = spec.worldbody
        local_pos, local_mat = pos, mat_world
        mode = mujoco.mjtCamLight.mjCAMLIGHT_FIXED
    quat = np.zeros(4)
    mujoco.mju_mat2Quat(quat, local_mat.reshape(-1))
    parent.add_camera(name=FREE_CAMERA, pos=local_pos, quat=quat, fovy=fovy, mode=mode)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # deprecation notes on the env's own XML are not ours to fix
        text = spec.to_xml()
    digest = hashlib.sha1(text.encode()).hexdigest()[:16]
    out = os.path.join(_model_cache_dir(), f"{os.path.splitext(os.path.basename(xml_path))[0]}-{digest}.xml")
    if not os.path.exists(out):
        tmp = f"{out}.{os.getpid()}.tmp"
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, out)
    return out


def mujoco_render_spec(env: gym.Env, camera_names: list[str] | None, free_camera: dict[str, Any] | None,
                      width: int, height: int, render_depth: bool, render_normals: bool, render_segmentation: bool,
                      images_only: bool, renderer_config: Any, render_settings: RenderSettings | None,
                      model_xml_path: str | None, deferred: bool, where: str) -> RenderSpec:
    """The ``RenderSpec`` of a Gymnasium MuJoCo env: checks the env and the arguments (see
    :class:`OrrbObservation`) and writes the free camera into a copy of the model file."""
    base = env.unwrapped
    model, data = getattr(base, "model", None), getattr(base, "data", None)
    if not isinstance(model, mujoco.MjModel) or not isinstance(data, mujoco.MjData):
        raise TypeError(
            f"{where} needs an env whose unwrapped env has MuJoCo `model` (MjModel) and `data` (MjData); "
            f"{type(base).__name__} has model={type(model).__name__}, data={type(data).__name__}"
        )
    xml_path = model_xml_path or getattr(base, "fullpath", None)
    if not xml_path or not os.path.isfile(xml_path):
        raise ValueError(
            f"{where} needs the env's model file: {type(base).__name__} has no `fullpath` "
            f"({xml_path!r}); pass model_xml_path="
        )
    if isinstance(camera_names, str):
        raise TypeError(f"camera_names must be a list of camera names, got the string {camera_names!r}")
    cameras = list(camera_names or [])
    known = [mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_CAMERA, i) for i in range(model.ncam)]
    unknown = [c for c in cameras if c not in known]
    if unknown:
        raise ValueError(f"unknown cameras {unknown}; the model {xml_path} has cameras {known} (or use free_camera=)")
    if free_camera is None and not cameras:
        gym_renderer = getattr(base, "mujoco_renderer", None)
        free_camera = dict(getattr(gym_renderer, "default_cam_config", None) or {})
    if free_camera is not None:
        if not isinstance(free_camera, dict):
            raise TypeError(f"free_camera must be a dict like Gymnasium's default_camera_config, got {free_camera!r}")
        if FREE_CAMERA in known:
            raise ValueError(f"the model already has a camera named {FREE_CAMERA!r}")
        xml_path = _xml_with_free_camera(os.path.abspath(xml_path), model, free_camera)
        cameras.append(FREE_CAMERA)
    path, as_json = renderer_config_fields(renderer_config, package_relative_path("assets/gym.renderer_config.json"))
    config = RemoteRendererConfig(
        camera_names=cameras, image_width=width, image_height=height, model_xml_path=os.path.abspath(xml_path),
        renderer_config_path=path, asset_basedir=os.path.dirname(os.path.abspath(xml_path)),
        render_depth=render_depth, render_normals=render_normals, render_segmentation=render_segmentation,
        render_settings=render_settings or RenderSettings(),
    )
    config.validate()
    return RenderSpec(config.to_dict(), as_json, model.nq, "drop" if images_only else "key", deferred=deferred)


class _RenderStateWrapper(gym.Wrapper):
    """Draws the render seed on ``reset``/``step`` and hands ``(obs, info, seed)`` to ``_observe``.

    Seeds come from a generator seeded by ``reset(seed=...)``, so a seeded reset
    reproduces the images exactly without touching the env's own ``np_random``.
    """

    orrb_render_spec: RenderSpec

    def __init__(self, env: gym.Env, randomize: str):
        gym.Wrapper.__init__(self, env)
        self._seeds = SeedSchedule(randomize)
        self._rng: np.random.Generator | None = None

    def _qpos(self) -> np.ndarray:
        return np.array(self.env.unwrapped.data.qpos, dtype=np.float64)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        obs, info = self.env.reset(seed=seed, options=options)
        if seed is not None or self._rng is None:
            self._rng = np.random.default_rng(seed)
        return self._observe(obs, info, self._seeds.on_reset(self._rng))

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        if self._rng is None:
            self._rng = np.random.default_rng()
        obs, info = self._observe(obs, info, self._seeds.on_step(self._rng))
        return obs, reward, terminated, truncated, info

    def _observe(self, obs, info, render_seed: int):
        raise NotImplementedError


class OrrbObservation(_RenderStateWrapper, gym.utils.RecordConstructorArgs):
    """Adds randomized camera images to a Gymnasium env whose ``unwrapped`` has MuJoCo ``model`` and ``data``.

    The env's full ``qpos`` is rendered by an orrb renderer (in-process by default) with
    the renderer config's randomization; the physics is untouched.

    Observation: ``Dict`` with ``uint8 Box(0, 255, (H, W, 3))`` per camera (``free`` for the
    free camera), ``<camera>_depth`` float32 ``(H, W)`` metres, ``<camera>_normals``
    float32 ``(H, W, 3)`` in [0, 1], ``<camera>_segmentation`` uint8 ``(H, W)`` when asked
    for, and the env's own observation under ``state`` (unless ``images_only``).
    ``info`` gains ``orrb_qpos``, ``orrb_seed`` and the components' auxiliary streams.

    Example::

        >>> env = OrrbObservation(gymnasium.make("Ant-v5"), camera_names=["track"], width=64, height=64)
        >>> env.observation_space["track"]
        Box(0, 255, (64, 64, 3), uint8)

    Args:
        env: the env; ``env.unwrapped`` must have ``model`` and ``data`` and a model file
            (``fullpath``, as Gymnasium's MuJoCo envs have, or ``model_xml_path``).
        camera_names: named cameras of the model (tracking cameras follow their body as
            in Gymnasium's renderer).
        free_camera: a free camera given like Gymnasium's ``default_camera_config``
            (``lookat``, ``distance``, ``azimuth``, ``elevation``, ``trackbodyid``: with
            it, the camera follows that body, as Gymnasium 1.4's own renderer does not);
            its observation key is ``"free"``. With neither argument, the free camera of
            the env's own ``default_camera_config`` is used.
        width, height: image size in pixels.
        render_depth, render_normals, render_segmentation: extra modalities.
        images_only: only images (no ``state``).
        renderer_config: ``"default"`` (``assets/gym.renderer_config.json``), ``None``
            (no randomization), a path or an :class:`orrb.RendererConfig`, for an owned
            renderer (a shared one draws with the chain it was built with).
        randomize: ``"episode"`` (one draw per episode) or ``"step"`` (a new draw each step).
            Seeds come from a generator seeded by ``reset(seed=...)``, so a seeded reset
            reproduces the images exactly without touching the env's own ``np_random``.
        renderer: a shared renderer (the wrapper never shuts it down); ``None``: an owned
            :class:`orrb.LocalRenderer`.
        render_settings: :class:`orrb.RenderSettings` (MSAA, shadows) for an owned renderer.
        model_xml_path: the env's model file, when ``unwrapped.fullpath`` does not exist.

    To render many envs in one batch per step, build them with
    :class:`OrrbDeferredObservation` (or use :func:`orrb.make_vec`).
    """

    def __init__(
        self,
        env: gym.Env,
        camera_names: list[str] | None = None,
        free_camera: dict[str, Any] | None = None,
        width: int = 64,
        height: int = 64,
        render_depth: bool = False,
        render_normals: bool = False,
        render_segmentation: bool = False,
        images_only: bool = False,
        renderer_config: Any = "default",
        randomize: str = "episode",
        renderer: Any = None,
        render_settings: RenderSettings | None = None,
        model_xml_path: str | None = None,
    ):
        self._handle: RendererHandle | None = None
        gym.utils.RecordConstructorArgs.__init__(
            self, camera_names=camera_names, free_camera=free_camera, width=width, height=height,
            render_depth=render_depth, render_normals=render_normals, render_segmentation=render_segmentation,
            images_only=images_only, renderer_config=renderer_config, randomize=randomize, renderer=renderer,
            render_settings=render_settings, model_xml_path=model_xml_path,
        )
        _RenderStateWrapper.__init__(self, env, randomize)
        self.orrb_render_spec = mujoco_render_spec(
            env, camera_names, free_camera, width, height, render_depth, render_normals, render_segmentation,
            images_only, renderer_config, render_settings, model_xml_path, deferred=False, where="OrrbObservation")
        self.observation_space = self.orrb_render_spec.observation_space(env.observation_space)
        self._handle = RendererHandle.for_spec(self.orrb_render_spec, renderer)

    @property
    def renderer(self) -> Any:
        """The renderer (``None`` once closed)."""
        return self._handle.renderer if self._handle is not None else None

    def _observe(self, obs, info, render_seed: int):
        return observe(self._handle, self.orrb_render_spec, obs, info, self._qpos(), render_seed)

    def close(self):
        """Closes the env and the renderer the wrapper created (a shared one is left running). Idempotent."""
        try:
            if self._handle is not None:
                self._handle.close()
        finally:
            super().close()


class OrrbDeferredObservation(_RenderStateWrapper, gym.utils.RecordConstructorArgs):
    """Reports the state to render for a vector wrapper, and renders nothing itself.

    The observation and its space stay the env's own; ``info`` gains ``orrb_qpos``
    (float64 ``[nq]``, the env's ``qpos``) and ``orrb_seed`` (the render seed, drawn as
    :class:`OrrbObservation` draws it), and ``orrb_render_spec`` says what to render. An
    :class:`orrb.wrappers.OrrbVectorObservation` (Gymnasium) or
    ``OrrbVecEnvObservation`` (stable-baselines3) over such envs renders all of them in
    one batch per step; the images of env ``i`` equal those ``OrrbObservation`` with the
    same arguments and reset seed would give.

    Example::

        fns = [lambda: OrrbDeferredObservation(gymnasium.make("Ant-v5"), camera_names=["track"])] * 4
        envs = OrrbVectorObservation(gymnasium.vector.AsyncVectorEnv(fns))

    Args:
        env, camera_names, free_camera, width, height, render_depth, render_normals,
        render_segmentation, images_only, renderer_config, randomize, render_settings,
        model_xml_path: as for :class:`OrrbObservation` (the vector wrapper owns the renderer).
    """

    def __init__(
        self,
        env: gym.Env,
        camera_names: list[str] | None = None,
        free_camera: dict[str, Any] | None = None,
        width: int = 64,
        height: int = 64,
        render_depth: bool = False,
        render_normals: bool = False,
        render_segmentation: bool = False,
        images_only: bool = False,
        renderer_config: Any = "default",
        randomize: str = "episode",
        render_settings: RenderSettings | None = None,
        model_xml_path: str | None = None,
    ):
        gym.utils.RecordConstructorArgs.__init__(
            self, camera_names=camera_names, free_camera=free_camera, width=width, height=height,
            render_depth=render_depth, render_normals=render_normals, render_segmentation=render_segmentation,
            images_only=images_only, renderer_config=renderer_config, randomize=randomize,
            render_settings=render_settings, model_xml_path=model_xml_path,
        )
        _RenderStateWrapper.__init__(self, env, randomize)
        self.orrb_render_spec = mujoco_render_spec(
            env, camera_names, free_camera, width, height, render_depth, render_normals, render_segmentation,
            images_only, renderer_config, render_settings, model_xml_path, deferred=True,
            where="OrrbDeferredObservation")

    def _observe(self, obs, info, render_seed: int):
        return obs, with_render_state(info, self._qpos(), render_seed)
