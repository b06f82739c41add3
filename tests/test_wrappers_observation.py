"""OrrbObservation on Gymnasium's MuJoCo envs: conventions, cameras, randomization."""

from __future__ import annotations

import gymnasium as gym
import mujoco
import numpy as np
import pytest

import orrb
from orrb.wrappers import OrrbObservation

SIZE = dict(width=36, height=36)
CHEETAH_CAMERA = dict(distance=4.0, azimuth=90.0, elevation=-20.0, lookat=[0.0, 0.0, 0.5])


def test_ant_with_default_camera_passes_gymnasium_and_sb3_checkers():
    from gymnasium.utils.env_checker import check_env
    from stable_baselines3.common.env_checker import check_env as sb3_check_env

    env = OrrbObservation(gym.make("Ant-v5"), **SIZE)
    try:
        assert env.observation_space["free"] == gym.spaces.Box(0, 255, (36, 36, 3), np.uint8)
        assert env.observation_space["state"] == gym.make("Ant-v5").observation_space
        check_env(env, skip_render_check=True)
        sb3_check_env(env, warn=True)
        obs, _ = env.reset(seed=0)
        assert obs["free"].std() > 5, "blank image"
    finally:
        env.close()


def test_half_cheetah_with_free_camera_and_images_only_passes_checkers():
    from gymnasium.utils.env_checker import check_env
    from stable_baselines3.common.env_checker import check_env as sb3_check_env

    env = OrrbObservation(gym.make("HalfCheetah-v5"), free_camera=CHEETAH_CAMERA, images_only=True, **SIZE)
    try:
        assert set(env.observation_space.spaces) == {"free"}
        check_env(env, skip_render_check=True)
        sb3_check_env(env, warn=True)
    finally:
        env.close()


def test_free_camera_renders_what_gymnasiums_renderer_shows():
    env = gym.make("HalfCheetah-v5", render_mode="rgb_array", width=48, height=48, default_camera_config=CHEETAH_CAMERA)
    wrapped = OrrbObservation(env, width=48, height=48, renderer_config=None)  # the env's own camera config
    try:
        obs, _ = wrapped.reset(seed=0)
        theirs = env.render()
    finally:
        wrapped.close()
    assert obs["free"].std() > 5
    # the camera pose goes through a quaternion: rounding may move a few edge pixels by one level
    diff = np.abs(obs["free"].astype(int) - theirs.astype(int))
    assert diff.max() <= 2 and (diff > 0).mean() < 0.02, f"max {diff.max()}, {(diff > 0).mean():.1%} of values differ"


def test_free_camera_with_trackbodyid_follows_that_body():
    from orrb.wrappers.observation import free_camera_pose

    env = gym.make("Hopper-v5")
    try:
        model, data = env.unwrapped.model, env.unwrapped.data
        config = {**env.unwrapped.mujoco_renderer.default_cam_config}
        assert config.get("trackbodyid", -1) >= 0, config
        mujoco.mj_forward(model, data)
        before = free_camera_pose(model, data, config)[0]
        data.qpos[0] += 1.0  # the hopper's root slides 1 m along x
        mujoco.mj_forward(model, data)
        after = free_camera_pose(model, data, config)[0]
        still = free_camera_pose(model, data, {k: v for k, v in config.items() if k != "trackbodyid"})[0]
    finally:
        env.close()
    np.testing.assert_allclose(after - before, [1.0, 0.0, 0.0], atol=1e-6)
    assert not np.allclose(still, after)


def test_tracking_camera_follows_the_body_like_gymnasiums_renderer():
    env = gym.make("Ant-v5", render_mode="rgb_array", width=48, height=48, camera_name="track")
    wrapped = OrrbObservation(env, camera_names=["track"], renderer_config=None, width=48, height=48)
    try:
        wrapped.reset(seed=1)
        for _ in range(15):
            obs, *_ = wrapped.step(wrapped.action_space.sample())
        base = env.unwrapped
        mujoco.mj_forward(base.model, base.data)  # Gymnasium draws poses from before the last substep
        theirs = env.render()
        assert np.linalg.norm(base.data.qpos[:2]) > 0.01, "the ant did not move"
    finally:
        wrapped.close()
    np.testing.assert_array_equal(obs["track"], theirs)


def test_same_seed_same_images_other_seed_other_images_and_env_rng_untouched():
    def episode(seed):
        env = OrrbObservation(gym.make("HalfCheetah-v5"), free_camera=CHEETAH_CAMERA, **SIZE)
        plain = gym.make("HalfCheetah-v5")
        try:
            obs, _ = env.reset(seed=seed)
            ref, _ = plain.reset(seed=seed)
            step = env.step(np.zeros(6))[0]
            return obs["free"], step["free"], obs["state"], ref
        finally:
            env.close()
            plain.close()

    a, a_step, a_state, ref = episode(7)
    b, b_step, _, _ = episode(7)
    c, _, _, _ = episode(8)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a_step, b_step)
    np.testing.assert_array_equal(a_state, ref)  # the env's own randomness is unchanged by the wrapper
    assert np.abs(a.astype(int) - c.astype(int)).mean() > 2


@pytest.mark.parametrize("randomize", ["episode", "step"])
def test_seed_schedule_per_episode_or_per_step(randomize):
    env = OrrbObservation(gym.make("HalfCheetah-v5"), free_camera=CHEETAH_CAMERA, randomize=randomize, **SIZE)
    try:
        _, info = env.reset(seed=0)
        seeds = [info["orrb_seed"]] + [env.step(np.zeros(6))[4]["orrb_seed"] for _ in range(3)]
        _, info2 = env.reset()
    finally:
        env.close()
    if randomize == "episode":
        assert len(set(seeds)) == 1
    else:
        assert len(set(seeds)) == 4
    assert info2["orrb_seed"] not in seeds


def test_depth_normals_segmentation_modalities():
    env = OrrbObservation(gym.make("Ant-v5"), camera_names=["track"], render_depth=True, render_normals=True,
                          render_segmentation=True, renderer_config=None, **SIZE)
    try:
        obs, _ = env.reset(seed=0)
        assert env.observation_space.contains(obs)
    finally:
        env.close()
    assert obs["track_depth"].dtype == np.float32 and obs["track_depth"].max() > 0
    assert obs["track_normals"].shape == (36, 36, 3)
    assert len(np.unique(obs["track_segmentation"])) >= 2


@pytest.mark.parametrize("make_env, kwargs, error, match", [
    (lambda: gym.make("CartPole-v1"), {}, TypeError, "MuJoCo `model`"),
    (lambda: gym.make("Ant-v5"), dict(camera_names=["trak"]), ValueError, "track"),
    (lambda: gym.make("Ant-v5"), dict(free_camera=dict(zoom=2)), ValueError, "lookat"),
    (lambda: gym.make("Ant-v5"), dict(randomize="never"), ValueError, "episode"),
    (lambda: gym.make("Ant-v5"), dict(width=0), ValueError, "image_width"),
])
def test_bad_arguments_name_the_problem(make_env, kwargs, error, match):
    env = make_env()
    try:
        with pytest.raises(error, match=match):
            OrrbObservation(env, **kwargs)
    finally:
        env.close()
