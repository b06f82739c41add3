"""OrrbDactyl-v0: Gymnasium/SB3 conventions, reproducible randomization, real physics."""

from __future__ import annotations

import gymnasium as gym
import mujoco
import numpy as np
import pytest

import orrb
from orrb.envs.dactyl import OrrbDactylEnv

SMALL = dict(width=36, height=36, camera_names=["vision_cam_left"])


def emitting_dactyl_config() -> orrb.RendererConfig:
    """The shipped Dactyl config with every randomizer emitting what it drew."""
    config = orrb.RendererConfig.load(orrb.utils.package_relative_path("assets/dactyl.renderer_config.json"))
    for spec in config:
        if "emit_values" in spec.component_class.Properties.__dataclass_fields__:
            spec.set(emit_values=True)
    return config


def drawn_values(info: dict) -> dict[str, np.ndarray]:
    """The randomizers' emitted draws in an info dict (tracker streams are labels, not draws)."""
    return {k: np.asarray(v) for k, v in info.items()
            if not k.startswith(("tracker_", "orrb_")) and k not in ("is_success", "goal_distance")}


def test_registered_by_import_and_reachable_with_module_prefix():
    assert "OrrbDactyl-v0" in gym.registry
    env = gym.make("orrb:OrrbDactyl-v0", **SMALL)
    try:
        assert env.spec.max_episode_steps == 100
        assert env.observation_space["vision_cam_left"] == gym.spaces.Box(0, 255, (36, 36, 3), np.uint8)
        assert env.observation_space["state"].shape == (55,)
        assert env.observation_space["goal"].shape == (4,)
        assert env.action_space == gym.spaces.Box(-1, 1, (20,), np.float32)
    finally:
        env.close()


def test_gymnasium_check_env_passes():
    from gymnasium.utils.env_checker import check_env

    env = gym.make("OrrbDactyl-v0", render_mode="rgb_array", **SMALL)
    try:
        check_env(env.unwrapped, skip_render_check=False)
    finally:
        env.close()


def test_sb3_check_env_passes():
    from stable_baselines3.common.env_checker import check_env

    env = gym.make("OrrbDactyl-v0", **SMALL)
    try:
        check_env(env, warn=True)
    finally:
        env.close()


def test_same_seed_gives_identical_images_and_other_seed_differs():
    env = gym.make("OrrbDactyl-v0", **SMALL)
    try:
        first = env.reset(seed=3)[0]["vision_cam_left"]
        step_a = env.step(np.zeros(20))[0]["vision_cam_left"]
        again = env.reset(seed=3)[0]["vision_cam_left"]
        step_b = env.step(np.zeros(20))[0]["vision_cam_left"]
        other = env.reset(seed=4)[0]["vision_cam_left"]
    finally:
        env.close()
    assert first.std() > 5, "blank image"
    np.testing.assert_array_equal(first, again)
    np.testing.assert_array_equal(step_a, step_b)
    assert np.abs(first.astype(int) - other.astype(int)).mean() > 2


@pytest.mark.parametrize("randomize", ["episode", "step"])
def test_randomizers_draw_per_episode_or_per_step(randomize):
    env = OrrbDactylEnv(renderer_config=emitting_dactyl_config(), randomize=randomize, **SMALL)
    try:
        _, info0 = env.reset(seed=0)
        draws = drawn_values(info0)
        assert len(draws) >= 5, f"no emitted draws in info: {sorted(info0)}"
        step_infos = [env.step(np.zeros(20))[4] for _ in range(2)]
        _, info_next = env.reset()
    finally:
        env.close()
    # draws that a new episode changes (some emitted values are constant: features switched off)
    varying = [k for k in draws if not np.array_equal(info_next[k], draws[k])]
    assert len(varying) >= 10, f"a new episode redrew only {varying}"
    for info in step_infos:
        redrawn = [k for k in varying if not np.array_equal(info[k], draws[k])]
        if randomize == "episode":
            assert redrawn == [], f"per-episode randomization redrew {redrawn} within the episode"
        else:
            assert redrawn == varying, f"per-step randomization kept {set(varying) - set(redrawn)}"


def test_info_carries_success_and_tracker_streams_and_reward_is_minus_angle():
    env = OrrbDactylEnv(**SMALL)
    try:
        env.reset(seed=1)
        _, reward, _, _, info = env.step(np.zeros(20))
    finally:
        env.close()
    assert isinstance(info["is_success"], bool)
    assert reward == pytest.approx(-info["goal_distance"] + (5.0 if info["is_success"] else 0.0))
    x, y = info["tracker_cube_X_vision_cam_left"]
    assert 0 < x < 1 and 0 < y < 1, "the cube is inside the left camera's image"


def test_success_bonus_is_paid_when_the_cube_matches_the_goal():
    env = OrrbDactylEnv(defer_rendering=True)
    try:
        env.reset(seed=0)
        env.goal = env.cube_quat  # the cube already has the goal orientation
        _, reward, _, _, info = env.step(np.zeros(20))
    finally:
        env.close()
    assert info["is_success"]
    assert reward == pytest.approx(5.0 - info["goal_distance"])


def test_render_rgb_array_tiles_the_cameras():
    env = OrrbDactylEnv(width=32, height=24, renderer_config=None, render_mode="rgb_array")
    try:
        obs, _ = env.reset(seed=0)
        frame = env.render()
    finally:
        env.close()
    assert frame.shape == (24, 96, 3) and frame.dtype == np.uint8
    np.testing.assert_array_equal(frame[:, 32:64], obs["vision_cam_right"])


def test_images_only_and_extra_modalities():
    env = OrrbDactylEnv(images_only=True, render_depth=True, renderer_config=None, **SMALL)
    try:
        obs, _ = env.reset(seed=0)
    finally:
        env.close()
    assert set(obs) == {"vision_cam_left", "vision_cam_left_depth"}
    depth = obs["vision_cam_left_depth"]
    assert depth.dtype == np.float32 and depth.shape == (36, 36)
    assert 0.3 < np.median(depth[depth > 0]) < 2.0  # metres from camera to hand


def test_shared_renderer_is_used_and_left_running():
    config = orrb.envs.dactyl_render_config(["vision_cam_left"], 36, 36, renderer_config=None)
    with orrb.LocalRenderer(config) as shared:
        env_a = OrrbDactylEnv(renderer=shared, renderer_config=None, **SMALL)
        env_b = OrrbDactylEnv(renderer_config=None, **SMALL)
        a = env_a.reset(seed=5)[0]["vision_cam_left"]
        b = env_b.reset(seed=5)[0]["vision_cam_left"]
        env_a.close()
        env_b.close()
        env_a.close()  # idempotent
        np.testing.assert_array_equal(a, b)
        assert shared.render_batch({"qpos": np.zeros((1, 31)), "seed": 0})["vision_cam_left"].shape == (1, 36, 36, 3)
        with pytest.raises(ValueError, match="64x64"):
            OrrbDactylEnv(renderer=shared, width=64, height=64, camera_names=["vision_cam_left"], renderer_config=None)


def test_env_made_with_a_shared_renderer_keeps_its_spec_without_warnings(recwarn):
    config = orrb.envs.dactyl_render_config(["vision_cam_left"], 36, 36, renderer_config=None)
    with orrb.LocalRenderer(config) as shared:
        env = gym.make("OrrbDactyl-v0", renderer=shared, renderer_config=None, **SMALL)
        try:
            spec = env.spec  # Gymnasium deep-copies the spec's kwargs: the renderer is shared, not copied
        finally:
            env.close()
    assert spec is not None and spec.kwargs["renderer"] is shared
    assert not [w for w in recwarn if "spec" in str(w.message)], [str(w.message) for w in recwarn]


def test_render_fps_follows_the_control_step():
    for n_substeps, fps in ((20, 25), (10, 50)):
        env = OrrbDactylEnv(n_substeps=n_substeps, renderer_config=None, **SMALL)
        try:
            assert env.metadata["render_fps"] == fps == round(1 / env.dt)
        finally:
            env.close()
    assert OrrbDactylEnv.metadata["render_fps"] == 25  # the class's default is left alone


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(randomize="sometimes"), ValueError, "episode"),
    (dict(camera_names="vision_cam_left"), TypeError, "list of camera names"),
    (dict(goal_rotation="x"), ValueError, "goal_rotation"),
    (dict(renderer_config=3), TypeError, "renderer_config"),
    (dict(renderer=object()), TypeError, r"orrb.renderer.Renderer.*lacks \['class_names', 'close', 'columns'"),
])
def test_bad_arguments_name_the_problem(kwargs, error, match):
    with pytest.raises(error, match=match):
        OrrbDactylEnv(**kwargs)


def test_cube_stays_in_hand_for_a_zero_action_episode():
    env = gym.make("OrrbDactyl-v0", defer_rendering=True)
    try:
        env.reset(seed=0)
        heights, terminated, steps = [], False, 0
        while not terminated and steps < 100:
            _, _, terminated, truncated, _ = env.step(np.zeros(20))
            heights.append(env.unwrapped.cube_position[2])
            steps += 1
    finally:
        env.close()
    assert not terminated and truncated
    # resting on the palm (palm surface ~0.14 m, cube half-size 0.0245 m)
    assert np.mean(np.abs(np.array(heights) - 0.165) < 0.02) > 0.9


def test_cube_falls_when_the_hand_is_turned_over():
    env = OrrbDactylEnv(defer_rendering=True)
    try:
        model = env.model
        mount = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, "robot0:hand mount")
        flip = np.zeros(4)
        mujoco.mju_axisAngle2Quat(flip, np.array([0.0, 1.0, 0.0]), np.pi)  # about the forearm: palm down
        turned = np.zeros(4)
        mujoco.mju_mulQuat(turned, flip, model.body_quat[mount].copy())
        model.body_quat[mount] = turned
        env.reset(seed=0)
        palm = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, "robot0:palm")
        # the cube starts against the (now downward-facing) palm, as it lay on it before
        tz = model.jnt_qposadr[mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_JOINT, "cube:cube_tz")]
        env.data.qpos[tz] = (env.data.xpos[palm][2] - 0.045) - 0.2
        env.data.qvel[:] = 0
        mujoco.mj_forward(model, env.data)
        terminated, steps = False, 0
        while not terminated and steps < 50:
            _, _, terminated, _, _ = env.step(np.zeros(20))
            steps += 1
        height = env.cube_position[2]
    finally:
        env.close()
    assert terminated, f"the cube stayed at z={height:.3f}"
    assert height < 0.1
