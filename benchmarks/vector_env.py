"""Env-steps/s of orrb's batched vector wrapper vs Gymnasium's own rendering, Ant-v5, 4 envs.

    python benchmarks/vector_env.py [--quick] [--renderer remote|local] [--servers 2] [--steps 60] [--size 64]

Compares, in one run, at the same image size and 4x MSAA:
  baseline  AsyncVectorEnv(4) of AddRenderObservation(Ant-v5, render_only=False): each
            subprocess renders its own frame with Gymnasium's MujocoRenderer;
  orrb      orrb.make_vec("Ant-v5", 4) over AsyncVectorEnv: subprocesses simulate, one
            render_batch per step renders all 4 on the pool (--renderer remote) or in
            this process (--renderer local).
Two like-for-like pairs: unrandomized with Ant-v5's shadow-casting light in both, and
randomized (assets/gym.renderer_config.json, whose light rig casts no shadows) against
Gymnasium with the model's shadows turned off. Target: >= 1.5x with randomization on.
"""

from __future__ import annotations

import argparse
import time

import gymnasium as gym
import numpy as np

import orrb
from _common import report


def measure(envs, steps: int, warmup: int = 5) -> float:
    envs.reset(seed=0)
    rng = np.random.default_rng(0)
    actions = rng.uniform(-1, 1, (steps + warmup, *envs.action_space.shape)).astype(np.float32)
    for a in actions[:warmup]:
        envs.step(a)
    start = time.perf_counter()
    for a in actions[warmup:]:
        envs.step(a)
    return steps * envs.num_envs / (time.perf_counter() - start)


def _no_shadows(env):
    """Turns off the model's shadow-casting lights (MuJoCo reads them at every frame)."""
    env.unwrapped.model.light_castshadow[:] = 0
    return env


def baseline(num_envs: int, size: int, shadows: bool):
    def make():
        env = gym.make("Ant-v5", render_mode="rgb_array", width=size, height=size)
        if not shadows:
            _no_shadows(env)
        return gym.wrappers.AddRenderObservation(env, render_only=False)

    # spawn: AddRenderObservation renders once in the parent to size its space, and a forked
    # child cannot use the parent's EGL context (it hangs)
    return gym.vector.AsyncVectorEnv([make] * num_envs, context="spawn")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--renderer", choices=["remote", "local"], default="remote")
    parser.add_argument("--servers", type=int, default=2)
    parser.add_argument("--envs", type=int, default=4)
    parser.add_argument("--steps", type=int, default=60, help="vector steps measured per configuration")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--quick", action="store_true", help="20 vector steps per configuration")
    args = parser.parse_args()
    if args.quick:
        args.steps = 20

    def gymnasium(shadows: bool) -> float:
        envs = baseline(args.envs, args.size, shadows)
        try:
            obs, _ = envs.reset(seed=0)
            if obs["pixels"].std() == 0:
                raise RuntimeError("Gymnasium rendered blank frames")
            return measure(envs, args.steps)
        finally:
            envs.close()

    def ours(config) -> float:
        envs = orrb.make_vec("Ant-v5", args.envs, renderer=args.renderer, num_servers=args.servers,
                             wrapper_kwargs=dict(width=args.size, height=args.size, renderer_config=config),
                             vector_kwargs=dict(context="spawn"))
        try:
            return measure(envs, args.steps)
        finally:
            envs.close()

    # Like-for-like pairs (same image size, 4x MSAA, same shadows):
    # - as shipped: Ant-v5's light casts shadows in both Gymnasium's and orrb's render;
    # - randomized: gym.renderer_config.json replaces the lights by a rig that casts no shadows,
    #   so Gymnasium's baseline renders with shadows off too.
    rates = {
        "gymnasium AddRenderObservation, shadows": gymnasium(True),
        f"orrb ({args.renderer}), no randomization, shadows": ours(None),
        "gymnasium AddRenderObservation, no shadows": gymnasium(False),
        f"orrb ({args.renderer}), randomized (gym config), no shadows": ours("default"),
    }
    names = list(rates)
    report(f"vector env: Ant-v5, {args.envs} envs (AsyncVectorEnv), {args.size}x{args.size}, 4x MSAA, "
           f"{args.steps} vector steps each, {args.servers} servers" if args.renderer == "remote" else
           f"vector env: Ant-v5, {args.envs} envs, {args.size}x{args.size}, in-process renderer", rates, "env-steps/s",
           [("orrb randomized / gymnasium, no shadows", rates[names[3]] / rates[names[2]], 1.5),
            ("orrb unrandomized / gymnasium, shadows", rates[names[1]] / rates[names[0]], None)])


if __name__ == "__main__":
    main()
