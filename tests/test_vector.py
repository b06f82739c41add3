"""Batched rendering of Gymnasium vector envs: one render_batch per step, same images as single envs."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.vector import AutoresetMode, SyncVectorEnv

import orrb
from orrb.envs.dactyl import OrrbDactylEnv, dactyl_render_config
from orrb.renderer import Renderer
from orrb.wrappers import OrrbDeferredObservation, OrrbObservation, OrrbVectorObservation, RendererHandle

from conftest import CountingRenderer

CAM = "vision_cam_left"
KW = dict(width=36, height=36, camera_names=[CAM], randomize="step")


@pytest.fixture
def counting_renderer():
    with orrb.LocalRenderer(dactyl_render_config(**{k: v for k, v in KW.items() if k != "randomize"})) as r:
        yield CountingRenderer(r)


def single_env_run(seed: int, actions: np.ndarray, max_steps: int):
    """Images of one env stepped alone, resetting by hand as a vector env would."""
    env = gym.make("OrrbDactyl-v0", max_episode_steps=max_steps, **KW)
    try:
        frames = [env.reset(seed=seed)[0][CAM]]
        finals = []
        for action in actions:
            obs, _, term, trunc, _ = env.step(action)
            frames.append(obs[CAM])
            if term or trunc:
                finals.append(obs[CAM])
                frames.append(env.reset()[0][CAM])
        return frames, finals
    finally:
        env.close()


def make_envs(mode: AutoresetMode, max_steps: int, n: int = 2):
    fns = [lambda: gym.make("OrrbDactyl-v0", max_episode_steps=max_steps, defer_rendering=True, **KW)] * n
    return SyncVectorEnv(fns, autoreset_mode=mode)


def test_one_render_batch_per_step_with_the_images_of_single_envs(counting_renderer):
    assert isinstance(counting_renderer, Renderer), "a stand-in satisfying the Renderer protocol is accepted"
    envs = OrrbVectorObservation(make_envs(AutoresetMode.NEXT_STEP, max_steps=2), renderer=counting_renderer)
    actions = np.random.default_rng(0).uniform(-1, 1, (4, 2, 20)).astype(np.float32)
    try:
        obs, _ = envs.reset(seed=10)
        assert obs[CAM].shape == (2, 36, 36, 3) and obs[CAM].dtype == np.uint8
        assert envs.observation_space[CAM].shape == (2, 36, 36, 3)
        frames = [obs[CAM]]
        for a in actions:
            obs, _, term, trunc, info = envs.step(a)
            frames.append(obs[CAM])
        assert "tracker_cube_X_vision_cam_left" in info
    finally:
        envs.close()
    assert counting_renderer.calls == [2] * 5, "one batch of 2 per reset/step"
    for i in range(2):
        # NEXT_STEP: step 2 ends the episode, step 3 only resets (its action is ignored)
        single, _ = single_env_run(10 + i, actions[[0, 1, 3], i], max_steps=2)
        for t in range(5):
            np.testing.assert_array_equal(frames[t][i], single[t], err_msg=f"env {i}, frame {t}")
    assert frames[0].std() > 5


def test_same_step_autoreset_renders_terminal_observations_in_the_same_batch(counting_renderer):
    envs = OrrbVectorObservation(make_envs(AutoresetMode.SAME_STEP, max_steps=2), renderer=counting_renderer)
    actions = np.zeros((2, 2, 20), np.float32)
    try:
        envs.reset(seed=3)
        envs.step(actions[0])
        obs, _, _, trunc, info = envs.step(actions[1])
    finally:
        envs.close()
    assert trunc.all()
    assert counting_renderer.calls == [2, 2, 4], "the two terminal states ride in the step's batch"
    for i in range(2):
        frames, finals = single_env_run(3 + i, actions[:, i], max_steps=2)
        np.testing.assert_array_equal(info["final_obs"][i][CAM], finals[0])
        np.testing.assert_array_equal(obs[CAM][i], frames[3])  # the reset observation


def test_make_vec_async_matches_sync_and_closes_its_renderer():
    kwargs = dict(KW, renderer_config=None)
    sync = orrb.make_vec("OrrbDactyl-v0", num_envs=2, vectorization_mode="sync", **kwargs)
    asyn = orrb.make_vec("orrb:OrrbDactyl-v0", num_envs=2, vectorization_mode="async", **kwargs)  # as gymnasium.make
    try:
        a, _ = sync.reset(seed=0)
        b, _ = asyn.reset(seed=0)
        action = np.full((2, 20), 0.3, np.float32)
        a2 = sync.step(action)[0]
        b2 = asyn.step(action)[0]
    finally:
        sync.close()
        asyn.close()
        asyn.close()  # idempotent
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])
        np.testing.assert_array_equal(a2[key], b2[key])
    assert sync.renderer is None  # the owned renderer was shut down


def test_make_vec_wraps_plain_mujoco_envs():
    envs = orrb.make_vec("Ant-v5", num_envs=2, vectorization_mode="sync",
                         wrapper_kwargs=dict(camera_names=["track"], width=36, height=36, renderer_config=None))
    try:
        obs, _ = envs.reset(seed=0)
        obs, *_ = envs.step(envs.action_space.sample())
    finally:
        envs.close()
    assert obs["track"].shape == (2, 36, 36, 3)
    assert obs["state"].shape == (2, 105)


def test_sub_envs_that_render_themselves_are_refused():
    envs = SyncVectorEnv([lambda: OrrbDactylEnv(renderer_config=None, **{k: v for k, v in KW.items() if k != "randomize"})])
    try:
        with pytest.raises(ValueError, match="defer_rendering=True"):
            OrrbVectorObservation(envs)
    finally:
        envs.close()


def test_make_vec_renders_deferred_mujoco_envs_on_a_pool_with_an_inline_renderer_config():
    chain = orrb.RendererConfig.load(orrb.utils.package_relative_path("assets/gym.renderer_config.json"))
    wrapper_kwargs = dict(camera_names=["track"], width=36, height=36, renderer_config=chain)
    envs = orrb.make_vec("Ant-v5", num_envs=2, renderer="remote", num_servers=1, vectorization_mode="sync",
                         wrapper_kwargs=wrapper_kwargs)
    single = OrrbObservation(gym.make("Ant-v5"), **wrapper_kwargs)
    try:
        assert isinstance(envs.renderer, orrb.RemoteRenderer)
        obs, _ = envs.reset(seed=4)
        alone, _ = single.reset(seed=4)
    finally:
        envs.close()
        single.close()
    assert envs.renderer is None, "the pool make_vec started is shut down by close()"
    np.testing.assert_array_equal(obs["track"][0], alone["track"])
    np.testing.assert_array_equal(obs["state"][0], alone["state"])
    assert obs["track"][0].std() > 5


def test_deferred_observation_keeps_the_env_observation_and_reports_the_state_to_render():
    env = OrrbDeferredObservation(gym.make("Ant-v5"), camera_names=["track"], width=36, height=36)
    plain = gym.make("Ant-v5")
    try:
        assert env.observation_space == plain.observation_space
        obs, info = env.reset(seed=0)
        ref, _ = plain.reset(seed=0)
    finally:
        env.close()
        plain.close()
    np.testing.assert_array_equal(obs, ref)
    np.testing.assert_array_equal(info["orrb_qpos"], env.unwrapped.data.qpos)
    assert isinstance(info["orrb_seed"], int)
    assert env.orrb_render_spec.deferred and env.orrb_render_spec.columns == len(info["orrb_qpos"])


def test_renderer_handle_shuts_down_only_the_renderer_it_owns(counting_renderer):
    env = OrrbDactylEnv(defer_rendering=True, **KW)
    spec = env.orrb_render_spec
    env.close()
    owned = RendererHandle.for_spec(spec)
    shared = RendererHandle.for_spec(spec, counting_renderer)
    qpos = np.zeros((1, spec.columns))
    mine, theirs = owned.render(qpos, [5])[CAM], shared.render(qpos, [5])[CAM]
    local = owned.renderer
    for handle in (owned, shared):
        handle.close()
        handle.close()  # idempotent
    np.testing.assert_array_equal(mine, theirs)
    assert local.closed and owned.renderer is None
    assert counting_renderer.render_batch({"qpos": qpos, "seed": 0})[CAM].shape == (1, 36, 36, 3), "shared one runs on"
    with pytest.raises(orrb.RendererError, match="after close"):
        owned.render(qpos, [5])


def test_make_vec_names_the_install_line_when_the_env_needs_a_missing_extra():
    # Gymnasium's MuJoCo envs need imageio (the mujoco-envs extra); hide it in a fresh process
    import subprocess
    import sys

    code = ("import sys; sys.modules['imageio'] = None\n"
            "import orrb\n"
            "try:\n"
            "    orrb.make_vec('Ant-v5', num_envs=1, vectorization_mode='sync')\n"
            "except ModuleNotFoundError as e:\n"
            "    print('ERROR', e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120).stdout
    assert "ERROR Ant-v5 needs the module 'imageio'" in out and 'pip install "orrb[mujoco-envs]"' in out, out
