"""``OrrbDactyl-v0``: Shadow Hand in-hand cube reorientation with randomized camera images.

The task of Dactyl (OpenAI, "Learning Dexterous In-Hand Manipulation") and of
Gymnasium-Robotics' ``HandManipulateBlock``: turn the lettered cube lying on the palm
to a goal orientation with the hand's 20 position actuators. Physics is MuJoCo on
``assets/dactyl.xml`` (actuators, tendons, contacts, the cube on 3 slide joints and a ball
joint: a free body); images are rendered by an orrb renderer from the simulated state
mapped through ``dactyl.mapping``, exactly as a user of :class:`orrb.RemoteRenderer` would.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import mujoco
import numpy as np

from orrb.config import RemoteRendererConfig, RenderSettings
from orrb.scene import Mapping
from orrb.utils import package_relative_path
from orrb.wrappers.handle import RendererHandle, observe
from orrb.wrappers.render_spec import RenderSpec, SeedSchedule, renderer_config_fields, with_render_state

__all__ = ["DACTYL_CAMERAS", "OrrbDactylEnv", "dactyl_render_config"]

DACTYL_CAMERAS = ("vision_cam_left", "vision_cam_right", "vision_cam_top")
_HAND_JOINTS = 24


def dactyl_render_config(
    camera_names=DACTYL_CAMERAS,
    width: int = 100,
    height: int = 100,
    renderer_config: Any = "default",
    render_depth: bool = False,
    render_normals: bool = False,
    render_segmentation: bool = False,
    render_settings: RenderSettings | None = None,
):
    """The :class:`orrb.RemoteRendererConfig` an ``OrrbDactyl-v0`` env with these arguments renders with.

    Use it to build a shared renderer (``orrb.RemoteRenderer(name, servers, config)``) for
    ``OrrbDactyl-v0(renderer=...)`` or :func:`orrb.make_vec`. The config names its
    component chain by path; a :class:`orrb.RendererConfig` object goes to the renderer
    instead (``orrb.RemoteRenderer(name, servers, config, renderer_config)``).

    Raises:
        TypeError: ``renderer_config`` is a ``RendererConfig`` object.
    """
    path, as_json = renderer_config_fields(renderer_config, package_relative_path("assets/dactyl.renderer_config.json"))
    if as_json is not None:
        raise TypeError("dactyl_render_config takes a renderer config path; pass a RendererConfig object to the "
                        "renderer: orrb.RemoteRenderer(name, servers, config, renderer_config) or "
                        "orrb.LocalRenderer(config, renderer_config)")
    return RemoteRendererConfig(
        camera_names=list(camera_names), image_width=width, image_height=height,
        model_xml_path="dactyl.xml", model_mapping_path="dactyl.mapping", renderer_config_path=path,
        asset_basedir=package_relative_path("assets"), render_depth=render_depth, render_normals=render_normals,
        render_segmentation=render_segmentation, render_settings=render_settings or RenderSettings(),
    )


def _quat_angle(q1: np.ndarray, q2: np.ndarray) -> float:
    """Rotation angle (radians, in [0, pi]) between two unit quaternions (w, x, y, z)."""
    dot = abs(float(np.dot(q1, q2)) / (np.linalg.norm(q1) * np.linalg.norm(q2)))
    return 2.0 * float(np.arccos(min(1.0, dot)))


class OrrbDactylEnv(gym.Env):
    """Shadow Hand in-hand cube reorientation with randomized camera images (``OrrbDactyl-v0``).

    - **Action**: ``float32 (20,)`` in [-1, 1], one per position actuator, mapped linearly
      onto the actuator's control range (0 = mid-range; with ``relative_control`` the
      range is centred on the joint's current position instead), held for ``n_substeps``
      physics steps of 2 ms (one env step = 40 ms by default).
    - **Observation**: a ``Dict`` with one ``uint8 Box(0, 255, (H, W, 3))`` per camera (plus
      ``<camera>_depth`` float32 ``(H, W)`` metres, ``<camera>_normals`` float32 ``(H, W, 3)``,
      ``<camera>_segmentation`` uint8 ``(H, W)`` when asked for), ``state`` (float64 ``(55,)``:
      24 hand joint angles (rad), 24 hand joint velocities (rad/s), cube position (m, world)
      and orientation (quaternion w, x, y, z)) and ``goal`` (float64 ``(4,)``: the goal
      orientation quaternion). ``images_only=True`` leaves out ``state`` and ``goal``.
    - **Reward**: ``-angle(cube, goal)`` in radians, plus ``success_bonus`` (default 5, as
      in Dactyl) on a step where the angle is below ``success_threshold`` (0.4 rad).
    - **Termination**: the cube's centre falls below ``drop_height`` (0.1 m; it rests on
      the palm at about 0.165 m). **Truncation**: after 100 steps (``gymnasium.make``'s
      ``TimeLimit``; pass ``max_episode_steps`` to change it).
    - **Info**: ``is_success`` (bool), ``goal_distance`` (rad), ``orrb_qpos`` (float64
      ``[31]`` the state in ``dactyl.mapping`` layout), ``orrb_seed`` (the render seed) and
      the components' auxiliary streams (e.g. ``tracker_cube_X_vision_cam_left``).

    Randomization: the renderer config (default ``assets/dactyl.renderer_config.json``) is
    drawn anew every episode (``randomize="episode"``: every step of an episode looks the
    same apart from the motion) or every step (``"step"``). Render seeds come from the
    env's ``np_random``, so ``reset(seed=s)`` reproduces an episode's images exactly.

    Args:
        camera_names: cameras of ``assets/dactyl.xml`` to render.
        width, height: image size in pixels.
        render_depth, render_normals, render_segmentation: extra modalities per camera.
        images_only: leave ``state`` and ``goal`` out of the observation.
        renderer_config: ``"default"``, ``None`` (no randomization), a path or an
            :class:`orrb.RendererConfig`, for an owned renderer (a shared one draws with
            the chain it was built with).
        randomize: ``"episode"`` or ``"step"``.
        renderer: a shared renderer (e.g. :class:`orrb.RemoteRenderer`, or any object
            satisfying :class:`orrb.renderer.Renderer`) built with
            :func:`dactyl_render_config`; the env never shuts it down. ``None``: an
            in-process :class:`orrb.LocalRenderer` the env owns.
        render_settings: :class:`orrb.RenderSettings` (MSAA, shadows) for an owned renderer.
        render_mode: ``None`` or ``"rgb_array"`` (the cameras' images side by side).
        goal_rotation: ``"xyz"`` (uniformly random goal orientation) or ``"z"`` (about the
            vertical axis only).
        success_threshold: radians. success_bonus: reward added on success.
        drop_height: metres. n_substeps: physics steps per env step.
        relative_control: centre actions on the current joint positions.
        defer_rendering: return no images and leave rendering to a vector wrapper
            (:class:`orrb.wrappers.OrrbVectorObservation`), which reads ``orrb_qpos`` and
            ``orrb_seed`` from ``info`` and renders all sub-envs in one batch.

    Example::

        env = gymnasium.make("orrb:OrrbDactyl-v0", width=64, height=64)
        obs, info = env.reset(seed=0)
        obs["vision_cam_left"].shape      # (64, 64, 3) uint8
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 25}

    def __init__(
        self,
        camera_names=DACTYL_CAMERAS,
        width: int = 100,
        height: int = 100,
        render_depth: bool = False,
        render_normals: bool = False,
        render_segmentation: bool = False,
        images_only: bool = False,
        renderer_config: Any = "default",
        randomize: str = "episode",
        renderer: Any = None,
        render_settings: RenderSettings | None = None,
        render_mode: str | None = None,
        goal_rotation: str = "xyz",
        success_threshold: float = 0.4,
        success_bonus: float = 5.0,
        drop_height: float = 0.1,
        n_substeps: int = 20,
        relative_control: bool = False,
        defer_rendering: bool = False,
    ):
        self._handle: RendererHandle | None = None
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode must be None or 'rgb_array', got {render_mode!r}")
        if goal_rotation not in ("xyz", "z"):
            raise ValueError(f"goal_rotation must be 'xyz' or 'z', got {goal_rotation!r}")
        if isinstance(camera_names, str):
            raise TypeError(f"camera_names must be a list of camera names, got the string {camera_names!r}")
        if not isinstance(n_substeps, int) or n_substeps < 1:
            raise ValueError(f"n_substeps must be an int >= 1, got {n_substeps!r}")
        self.render_mode = render_mode
        self.goal_rotation = goal_rotation
        self.success_threshold = float(success_threshold)
        self.success_bonus = float(success_bonus)
        self.drop_height = float(drop_height)
        self.n_substeps = n_substeps
        self.relative_control = bool(relative_control)
        self._seeds = SeedSchedule(randomize)
        config = dactyl_render_config(camera_names, width, height, "default", render_depth, render_normals,
                                      render_segmentation, render_settings)
        path, as_json = renderer_config_fields(renderer_config, config.renderer_config_path)
        config.renderer_config_path = path
        config.validate()

        # -- physics: the same scene file the renderer draws -----------------------------------------
        xml = package_relative_path("assets/dactyl.xml")
        self.model = mujoco.MjModel.from_xml_path(xml)
        self.data = mujoco.MjData(self.model)
        model = self.model
        self._mapping = Mapping(model, package_relative_path("assets/dactyl.mapping"))
        self._render_columns = self._mapping.columns
        self.orrb_render_spec = RenderSpec(config.to_dict(), as_json, self._render_columns,
                                           "drop" if images_only else "merge", deferred=defer_rendering)
        hand = [j for j in range(model.njnt) if (mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_JOINT, j) or "").startswith("robot0:")]
        if len(hand) != _HAND_JOINTS:
            raise RuntimeError(f"{xml}: expected {_HAND_JOINTS} hand joints, found {len(hand)}")
        self._hand_qpos = model.jnt_qposadr[hand]
        self._hand_qvel = model.jnt_dofadr[hand]
        self._cube_body = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, "cube")
        slides = [mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_JOINT, f"cube:cube_t{a}") for a in "xyz"]
        self._cube_slides = model.jnt_qposadr[slides]
        self._cube_ball = model.jnt_qposadr[mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_JOINT, "cube:cube_rot")]
        self._act_joint_qpos = model.jnt_qposadr[model.actuator_trnid[:, 0]]
        low, high = model.actuator_ctrlrange.T.copy()
        self._ctrl_low, self._ctrl_high = low, high
        self._ctrl_center = (low + high) / 2.0
        self._ctrl_half = (high - low) / 2.0
        self.dt = model.opt.timestep * n_substeps
        self.metadata = {**self.metadata, "render_fps": int(round(1 / self.dt))}  # videos play in real time

        # -- spaces ----------------------------------------------------------------------------------
        self.action_space = gym.spaces.Box(-1.0, 1.0, (model.nu,), np.float32)
        self._state_space = gym.spaces.Dict({
            "state": gym.spaces.Box(-np.inf, np.inf, (2 * _HAND_JOINTS + 7,), np.float64),
            "goal": gym.spaces.Box(-1.0, 1.0, (4,), np.float64),
        })
        if defer_rendering:
            self.observation_space = self._state_space
        else:
            self.observation_space = self.orrb_render_spec.observation_space(self._state_space)
        # with defer_rendering only render() uses it; an owned LocalRenderer starts on first use
        self._handle = RendererHandle.for_spec(self.orrb_render_spec, renderer)
        self.goal = np.array([1.0, 0.0, 0.0, 0.0])
        self._last_images: dict[str, np.ndarray] | None = None

    # -- state -------------------------------------------------------------------------------------
    @property
    def cube_position(self) -> np.ndarray:
        """float64 ``(3,)`` the cube's centre in world coordinates (m)."""
        return self.data.xpos[self._cube_body].copy()

    @property
    def cube_quat(self) -> np.ndarray:
        """float64 ``(4,)`` the cube's orientation (w, x, y, z)."""
        return self.data.xquat[self._cube_body].copy()

    def render_qpos(self) -> np.ndarray:
        """float64 ``[31]``: the simulated state in ``dactyl.mapping`` layout (what the renderer needs)."""
        out = np.zeros(self._render_columns)
        out[self._mapping.src] = self.data.qpos[self._mapping.dst]
        return out

    def _state_obs(self) -> dict[str, np.ndarray]:
        d = self.data
        state = np.concatenate([d.qpos[self._hand_qpos], d.qvel[self._hand_qvel], self.cube_position, self.cube_quat])
        return {"state": state, "goal": self.goal.copy()}

    # -- gymnasium API -------------------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        model, data, rng = self.model, self.data, self.np_random
        mujoco.mj_resetData(model, data)
        # the cube on the palm, turned about the vertical by a random angle, nudged a little
        yaw = rng.uniform(-np.pi, np.pi)
        data.qpos[self._cube_ball:self._cube_ball + 4] = [np.cos(yaw / 2), 0.0, 0.0, np.sin(yaw / 2)]
        data.qpos[self._cube_slides[:2]] += rng.normal(0.0, 0.005, 2)
        if self.goal_rotation == "z":
            g = rng.uniform(-np.pi, np.pi)
            self.goal = np.array([np.cos(g / 2), 0.0, 0.0, np.sin(g / 2)])
        else:
            q = rng.normal(size=4)
            self.goal = q / np.linalg.norm(q)
        # let the hand reach its mid-range pose and the cube settle on the palm
        data.ctrl[:] = self._ctrl_center
        mujoco.mj_step(model, data, nstep=10 * self.n_substeps)
        seed_r = self._seeds.on_reset(rng)
        obs, info = self._observe(seed_r)
        return obs, info

    def step(self, action):
        action = np.asarray(action, dtype=np.float64)
        if action.shape != self.action_space.shape:
            raise ValueError(f"action must have shape {self.action_space.shape} (one value per actuator), got {action.shape}")
        if not np.all(np.isfinite(action)):
            raise ValueError("action contains NaN or inf")
        action = np.clip(action, -1.0, 1.0)
        center = self.data.qpos[self._act_joint_qpos] if self.relative_control else self._ctrl_center
        self.data.ctrl[:] = np.clip(center + action * self._ctrl_half, self._ctrl_low, self._ctrl_high)
        mujoco.mj_step(self.model, self.data, nstep=self.n_substeps)
        seed_r = self._seeds.on_step(self.np_random)
        obs, info = self._observe(seed_r)
        success = info["is_success"]
        reward = -info["goal_distance"] + (self.success_bonus if success else 0.0)
        terminated = bool(self.cube_position[2] < self.drop_height)
        return obs, float(reward), terminated, False, info

    def _observe(self, render_seed: int):
        distance = _quat_angle(self.cube_quat, self.goal)
        qpos = self.render_qpos()
        info: dict[str, Any] = {"is_success": bool(distance < self.success_threshold), "goal_distance": distance}
        state = self._state_obs()
        spec = self.orrb_render_spec
        if spec.deferred:
            self._last_images = None
            return state, with_render_state(info, qpos, render_seed)
        obs, info = observe(self._handle, spec, state, info, qpos, render_seed)
        self._last_images = {c: obs[c] for c in spec.camera_names}
        return obs, info

    def render(self):
        """``rgb_array``: uint8 ``(H, W * cameras, 3)``, the cameras' latest images side by side."""
        if self.render_mode is None:
            gym.logger.warn("render() called without render_mode; use render_mode='rgb_array'")
            return None
        if self._last_images is None:
            seed = self._seeds.seed if self._seeds.seed is not None else 0
            response = self._handle.render(self.render_qpos()[None], np.array([seed]))
            self._last_images = {c: response[c][0] for c in self.orrb_render_spec.camera_names}
        return np.concatenate([self._last_images[c][..., :3] for c in self.orrb_render_spec.camera_names], axis=1)

    def close(self):
        """Shuts down the renderer if the env created it (a shared one is left running). Idempotent."""
        if self._handle is not None:
            self._handle.close()
        super().close()
