"""stable-baselines3: batched rendering of VecEnvs, true terminal observations, episode logging, PPO on images."""

from __future__ import annotations

import os
import subprocess
import sys

import gymnasium as gym
import numpy as np
import pytest

pytest.importorskip("stable_baselines3")
from stable_baselines3 import PPO  # noqa: E402
from stable_baselines3.common.logger import KVWriter, Logger  # noqa: E402
from stable_baselines3.common.vec_env import DummyVecEnv, VecMonitor  # noqa: E402

import orrb  # noqa: E402
from orrb.envs.dactyl import dactyl_render_config  # noqa: E402
from orrb.wrappers import OrrbVecEnvObservation  # noqa: E402

from conftest import CountingRenderer  # noqa: E402

CAM = "vision_cam_left"
KW = dict(width=36, height=36, camera_names=[CAM])
EXAMPLE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples", "train_ppo_dactyl.py")
# run Python with stable-baselines3 unimportable (as after `pip install orrb` without the rl extra)
WITHOUT_SB3 = "import sys; sys.modules['stable_baselines3'] = None; "


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


def test_renders_the_same_with_an_sb3_wrapper_between_it_and_the_envs():
    actions = np.random.default_rng(2).uniform(-1, 1, (2, 2, 20)).astype(np.float32)
    fns = [lambda: gym.make("OrrbDactyl-v0", max_episode_steps=2, defer_rendering=True, **KW)] * 2
    seen = []
    with orrb.LocalRenderer(dactyl_render_config(**KW)) as shared:
        for venv in (OrrbVecEnvObservation(DummyVecEnv(fns), renderer=shared),
                     OrrbVecEnvObservation(VecMonitor(DummyVecEnv(fns)), renderer=shared)):
            venv.seed(5)
            try:
                first = venv.reset()
                venv.step(actions[0])
                seen.append((first, *venv.step(actions[1])))
            finally:
                venv.close()
    (first, obs, _, dones, infos), (first_m, obs_m, _, dones_m, infos_m) = seen
    assert dones.all() and dones_m.all()
    np.testing.assert_array_equal(first_m[CAM], first[CAM])
    np.testing.assert_array_equal(obs_m[CAM], obs[CAM])  # rendered from the reset states
    for i in range(2):
        np.testing.assert_array_equal(infos_m[i]["terminal_observation"][CAM], infos[i]["terminal_observation"][CAM])
        assert infos_m[i]["episode"]["l"] == 2


def test_sub_envs_with_different_observations_are_refused_naming_the_one_that_differs():
    fns = [lambda: gym.make("OrrbDactyl-v0", defer_rendering=True, **KW),
           lambda: gym.make("OrrbDactyl-v0", defer_rendering=True, images_only=True, **KW)]
    venv = DummyVecEnv(fns)
    try:
        with pytest.raises(ValueError, match="sub-env 1 puts its own observation as 'drop', sub-env 0 as 'merge'"):
            OrrbVecEnvObservation(venv)
    finally:
        venv.close()


class Recorder(KVWriter):
    """Keeps every dump of an SB3 logger: ``[{key: value}, ...]``."""

    def __init__(self):
        self.dumps: list[dict] = []

    def write(self, key_values, key_excluded, step=0):
        self.dumps.append(dict(key_values))

    def close(self):
        pass


def test_ppo_learns_from_batched_images_and_logs_episode_rewards():
    venv = orrb.make_sb3_vec("OrrbDactyl-v0", n_envs=2, subproc=False, seed=0, renderer_config=None,
                             max_episode_steps=16, **KW)
    try:
        assert isinstance(venv, VecMonitor), "episode statistics are recorded by default"
        assert venv.observation_space[CAM].shape == (36, 36, 3)
        model = PPO("MultiInputPolicy", venv, n_steps=32, batch_size=64, n_epochs=2, seed=0, device="cpu",
                    policy_kwargs=dict(net_arch=[32], features_extractor_kwargs=dict(cnn_output_dim=32)))
        recorder = Recorder()
        model.set_logger(Logger(None, [recorder]))
        probe = model.policy.obs_to_tensor(venv.reset())[0]
        params_before = {k: v.clone() for k, v in model.policy.state_dict().items()}
        values_before = model.policy.predict_values(probe).detach().numpy()
        model.learn(total_timesteps=192)  # 3 rollouts of 2 x 32 steps, 3 updates
        values_after = model.policy.predict_values(probe).detach().numpy()
        action, _ = model.predict(venv.reset(), deterministic=True)
    finally:
        venv.close()
    assert action.shape == (2, 20)
    changed = [k for k, v in model.policy.state_dict().items() if not np.array_equal(v.numpy(), params_before[k].numpy())]
    assert any(k.startswith("features_extractor") for k in changed), "the image encoder did not train"
    assert any("value_net" in k for k in changed) and any("action_net" in k for k in changed)
    assert np.abs(values_after - values_before).max() > 1e-4, "value estimates did not move"
    value_losses = [d["train/value_loss"] for d in recorder.dumps if "train/value_loss" in d]
    assert len(value_losses) >= 2 and np.all(np.isfinite(value_losses))
    assert value_losses[0] != value_losses[1], "the value loss did not move across updates"
    episode_rewards = [d["rollout/ep_rew_mean"] for d in recorder.dumps if "rollout/ep_rew_mean" in d]
    assert episode_rewards and all(r < 0 for r in episode_rewards), "reward is minus the angle to the goal"
    assert all(d.get("rollout/ep_len_mean") == 16 for d in recorder.dumps if "rollout/ep_len_mean" in d)


def test_monitor_records_episodes_and_can_be_switched_off():
    with orrb.LocalRenderer(dactyl_render_config(**KW, renderer_config=None)) as shared:
        monitored = orrb.make_sb3_vec("OrrbDactyl-v0", n_envs=2, subproc=False, renderer=shared,
                                      renderer_config=None, max_episode_steps=2, **KW)
        bare = orrb.wrappers.make_sb3_vec("OrrbDactyl-v0", n_envs=2, subproc=False, renderer=shared,
                                          renderer_config=None, monitor=False, max_episode_steps=2, **KW)
        try:
            for venv in (monitored, bare):
                venv.reset()
                venv.step(np.zeros((2, 20)))
            _, rewards, dones, infos = monitored.step(np.zeros((2, 20)))
            _, _, _, bare_infos = bare.step(np.zeros((2, 20)))
        finally:
            monitored.close()
            bare.close()
            bare.close()  # idempotent
        # a shared renderer is left running
        assert shared.render_batch({"qpos": np.zeros((1, 31)), "seed": 0})[CAM].shape == (1, 36, 36, 3)
    assert dones.all()
    assert isinstance(bare, OrrbVecEnvObservation)
    assert all(info["episode"]["l"] == 2 for info in infos)
    assert all("episode" not in info for info in bare_infos)
    assert all(CAM in info["terminal_observation"] for info in bare_infos)


def test_example_trains_through_a_render_pool_and_logs_episode_reward_for_tensorboard(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    result = subprocess.run(
        [sys.executable, EXAMPLE, "--timesteps", "64", "--envs", "2", "--servers", "1", "--size", "36",
         "--cameras", CAM, "--n-steps", "32", "--episode-steps", "8", "--logdir", str(tmp_path)],
        capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr[-2000:]
    runs = [root for root, _, files in os.walk(tmp_path) if any(f.startswith("events.out.tfevents") for f in files)]
    assert len(runs) == 1
    events = EventAccumulator(runs[0]).Reload()
    scalars = events.Tags()["scalars"]
    assert "rollout/ep_rew_mean" in scalars and "rollout/ep_len_mean" in scalars
    assert [e.value for e in events.Scalars("rollout/ep_len_mean")][-1] == 8


def test_example_help_shows_defaults_without_stable_baselines3():
    code = WITHOUT_SB3 + f"import runpy; sys.argv = ['train_ppo_dactyl.py', '--help']; runpy.run_path({EXAMPLE!r}, run_name='__main__')"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "(default: 100000)" in result.stdout and "(default: remote)" in result.stdout


def test_make_sb3_vec_without_stable_baselines3_names_the_install_line_and_import_orrb_stays_light():
    code = WITHOUT_SB3 + (
        "import orrb; make = orrb.make_sb3_vec\n"
        "assert 'torch' not in sys.modules, 'import orrb loaded torch'\n"
        "try:\n    make('OrrbDactyl-v0', n_envs=1)\n"
        "except ImportError as e:\n    print(e)\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr[-2000:]
    assert 'pip install "orrb[rl]"' in result.stdout
