"""Env-steps/s of orrb's batched vector wrapper vs Gymnasium's own rendering, Ant-v5, 4 envs.

    python benchmarks/vector_env.py [--renderer remote|local] [--servers 2] [--steps 60] [--size 64]

Compares, in one run and at the same image size and render settings (the model's own:
shadows on, 4x MSAA):
  baseline  AsyncVectorEnv(4) of AddRenderObservation(Ant-v5, render_only=False): each
            subprocess renders its own frame with Gymnasium's MujocoRenderer;
  orrb      orrb.make_vec("Ant-v5", 4) over AsyncVectorEnv: subprocesses simulate, one
            render_batch per step renders all 4 on the pool (--renderer remote) or in
            this process (--renderer local), with and without randomization
            (assets/gym.renderer_config.json).
Prints steps/s and the ratios to the baseline. Target: >= 1.5x with randomization on.
"""

from __future__ import annotations

import argparse
import time

import gymnasium as gym
import numpy as np

import orrb


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


def baseline(num_envs: int, size: int):
    def make():
        env = gym.make("Ant-v5", render_mode="rgb_array", width=size, height=size)
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
    args = parser.parse_args()

    results = {}
    envs = baseline(args.envs, args.size)
    try:
        obs, _ = envs.reset(seed=0)
        assert obs["pixels"].std() > 0, "Gymnasium rendered blank frames"
        results["gymnasium AddRenderObservation"] = measure(envs, args.steps)
    finally:
        envs.close()
    for label, config in (("orrb, no randomization", None), ("orrb, randomized", "default")):
        envs = orrb.make_vec("Ant-v5", args.envs, renderer=args.renderer, num_servers=args.servers,
                             wrapper_kwargs=dict(width=args.size, height=args.size, renderer_config=config),
                             vector_kwargs=dict(context="spawn"))
        try:
            results[f"{label} ({args.renderer})"] = measure(envs, args.steps)
        finally:
            envs.close()
    base = results["gymnasium AddRenderObservation"]
    print(f"Ant-v5, {args.envs} envs, {args.size}x{args.size}, model render settings (shadows, MSAA), "
          f"{args.steps} vector steps each")
    for label, rate in results.items():
        print(f"  {label:45s} {rate:8.1f} env-steps/s   {rate / base:5.2f}x")


if __name__ == "__main__":
    main()
