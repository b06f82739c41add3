"""stable-baselines3: batched rendering of VecEnvs, true terminal observations, PPO on images."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

pytest.importorskip("stable_baselines3")
from stable_baselines3 import PPO  # noqa: E402
from stable_baselines3.common.vec_env import DummyVecEnv  # noqa: E402

import orrb  # noqa: E402
from orrb.envs.dactyl import dactyl_render_config  # noqa: E402
from orrb.wrappers.sb3 import OrrbVecEnvObservation, make_sb3_vec  # noqa: E402

from conftest import CountingRenderer  # noqa: E402

CAM = "vision_cam_left"
KW = dict(width=36, height=36, camera_names=[CAM])


def test_terminal_observation_holds_the_images_of_the_true_terminal_state():
    actions = np.random.default_rng(1).uniform(-1, 1, (2, 2, 20)).astype(np.float32)
    with orrb.LocalRenderer(dactyl_render_config(**KW)) as local:
        counting = CountingRenderer(local)
        fns = [lambda: gym.make("OrrbDactyl-v0", max_episode_steps=2, defer_rendering=True, **KW)] * 2
        venv = OrrbVecEnvObservation(DummyVecEnv(fns), renderer=counting)
        venv.seed(20)
        try:
            venv.reset()
            venv.step(actions[0])
            obs, _, dones, infos = venv.step(actions[1])
        finally:
            venv.close()
    assert dones.all()
    assert counting.calls == [2, 2, 4], "one batch per step; terminal states ride along"
    for i in range(2):
        env = gym.make("OrrbDactyl-v0", max_episode_steps=2, **KW)
        try:
            env.reset(seed=20 + i)
            env.step(actions[0, i])
            terminal = env.step(actions[1, i])[0]
            reset = env.reset()[0]
        finally:
            env.close()
        np.testing.assert_array_equal(infos[i]["terminal_observation"][CAM], terminal[CAM])
        np.testing.assert_array_equal(infos[i]["terminal_observation"]["state"], terminal["state"])
        np.testing.assert_array_equal(obs[CAM][i], reset[CAM])
        assert not np.array_equal(reset[CAM], terminal[CAM])


def test_ppo_multi_input_policy_trains_on_batched_images():
    venv = make_sb3_vec("OrrbDactyl-v0", 2, subproc=False, seed=0, renderer_config=None, **KW)
    try:
        assert venv.observation_space[CAM].shape == (36, 36, 3)
        model = PPO("MultiInputPolicy", venv, n_steps=64, batch_size=64, n_epochs=1, seed=0, device="cpu",
                    policy_kwargs=dict(net_arch=[32], features_extractor_kwargs=dict(cnn_output_dim=32)))
        model.learn(total_timesteps=256)
        assert model.num_timesteps >= 256
        obs = venv.reset()
        action, _ = model.predict(obs, deterministic=True)
        assert action.shape == (2, 20)
    finally:
        venv.close()


def test_example_trains_through_a_render_pool_and_logs_for_tensorboard(tmp_path):
    import os
    import subprocess
    import sys

    script = os.path.join(orrb.utils.package_relative_path(""), "..", "examples", "train_ppo_dactyl.py")
    if not os.path.isfile(script):
        script = os.path.join(os.path.dirname(__file__), "..", "examples", "train_ppo_dactyl.py")
    result = subprocess.run(
        [sys.executable, script, "--timesteps", "64", "--envs", "2", "--servers", "1", "--size", "36",
         "--cameras", "vision_cam_left", "--n-steps", "32", "--logdir", str(tmp_path)],
        capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "trained 64 steps" in result.stdout
    assert any(f.startswith("events.out.tfevents") for _, _, files in os.walk(tmp_path) for f in files)
