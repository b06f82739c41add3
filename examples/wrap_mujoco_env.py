#!/usr/bin/env python
"""Randomized camera images for an existing MuJoCo env: ``OrrbObservation`` on Gymnasium's Ant-v5.

Wraps ``gymnasium.make("Ant-v5")`` so that every observation carries a domain-randomized
image from the model's ``track`` camera and from a free camera (placed like
Gymnasium's ``default_camera_config``), next to the env's own state vector under
``state``. The randomization (``assets/gym.renderer_config.json``: lights, materials,
camera jitter, colour grading) is drawn once per episode; ``reset(seed=...)`` makes the
images reproducible. Runs a few random-action episodes and writes a filmstrip PNG.

Needs Gymnasium's MuJoCo envs: ``pip install "orrb[mujoco-envs]"``.

Usage: python examples/wrap_mujoco_env.py [--steps 40] [--size 96] [--out ant_orrb.png]
"""

import argparse

import gymnasium
import numpy as np

import orrb  # sets MUJOCO_GL=egl before gymnasium imports mujoco
import orrb.extras
from orrb.wrappers import OrrbObservation


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=40, help="env steps (default: %(default)s)")
    parser.add_argument("--episode-length", type=int, default=10, help="steps per episode (default: %(default)s)")
    parser.add_argument("--size", type=int, default=96, help="image width and height (default: %(default)s)")
    parser.add_argument("--randomize", choices=("episode", "step"), default="episode",
                        help="one randomization draw per episode or per step (default: %(default)s)")
    parser.add_argument("--out", default="ant_orrb.png", help="filmstrip PNG (default: %(default)s)")
    return parser.parse_args(argv)


def run(args: argparse.Namespace) -> dict:
    """Runs the episodes; returns ``observation_space``, ``frames`` (``uint8 [2H, W, 3]`` each),
    ``first`` and ``again`` (the images of two ``reset(seed=0)``) and the info ``streams``."""
    try:
        orrb.extras.import_optional("imageio", "examples/wrap_mujoco_env.py (Gymnasium's MuJoCo envs)")
    except ModuleNotFoundError as e:
        raise SystemExit(str(e)) from None
    env = gymnasium.make("Ant-v5", max_episode_steps=args.episode_length)
    env = OrrbObservation(env, camera_names=["track"],
                          free_camera={"distance": 5.0, "azimuth": 135.0, "elevation": -25.0, "trackbodyid": 1},
                          width=args.size, height=args.size, randomize=args.randomize)
    frames = []
    try:
        obs, info = env.reset(seed=0)
        first = {k: obs[k].copy() for k in ("track", "free")}
        for step in range(args.steps):
            if step % 5 == 0:
                frames.append(np.concatenate([obs["track"], obs["free"]], axis=0))
            obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
            if terminated or truncated:
                obs, info = env.reset()
        streams = sorted(k for k in info if not k.startswith("orrb_") and isinstance(info[k], np.ndarray))
        again, _ = env.reset(seed=0)
        space = env.observation_space
    finally:
        env.close()
    return {"observation_space": space, "frames": frames, "first": first, "again": again, "streams": streams}


def main(argv=None):
    args = parse_args(argv)
    out = run(args)
    frames, first, again = out["frames"], out["first"], out["again"]
    print(f"observation space: {out['observation_space']}")
    streams = out["streams"]
    print(f"info from the renderer: orrb_qpos, orrb_seed{', ' + ', '.join(streams) if streams else ''}")
    reproducible = all(np.array_equal(first[k], again[k]) for k in first)
    print(f"reset(seed=0) reproduces the images: {reproducible}")
    blank = [i for i, f in enumerate(frames) if f.std() < 5]
    if blank:
        raise SystemExit(f"frames {blank} are blank")

    from PIL import Image

    Image.fromarray(np.concatenate(frames, axis=1)).save(args.out)
    print(f"wrote {args.out}: {len(frames)} frames (top: track camera, bottom: free camera)")
    return 0 if reproducible else 1


if __name__ == "__main__":
    raise SystemExit(main())
