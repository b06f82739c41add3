"""Train PPO (MultiInputPolicy) on OrrbDactyl-v0's randomized camera images, rendered in batches by a pool.

    python examples/train_ppo_dactyl.py --timesteps 2048 --envs 4 --servers 2 --logdir runs/ppo_dactyl
    tensorboard --logdir runs/ppo_dactyl

The envs simulate in subprocesses (SubprocVecEnv) and report their states; one
``render_batch`` per step renders all of them on an ``orrb.RemoteRenderer`` pool
(``--renderer local`` renders in this process instead).
"""

from __future__ import annotations

import argparse
import time

import orrb
from orrb.wrappers.sb3 import make_sb3_vec


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """The docstring as written, and every option's default."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=_HelpFormatter)
    parser.add_argument("--timesteps", type=int, default=100_000, help="total env steps to train for")
    parser.add_argument("--envs", type=int, default=4, help="number of envs (subprocesses)")
    parser.add_argument("--renderer", choices=["remote", "local"], default="remote", help="render pool or in-process")
    parser.add_argument("--servers", type=int, default=2, help="render servers in the pool (--renderer remote)")
    parser.add_argument("--size", type=int, default=64, help="image width and height (>= 36 for SB3's CNN)")
    parser.add_argument("--cameras", default="vision_cam_left,vision_cam_right,vision_cam_top", help="comma-separated")
    parser.add_argument("--randomize", choices=["episode", "step"], default="episode",
                        help="one randomization draw per episode or per step")
    parser.add_argument("--n-steps", type=int, default=256, help="PPO rollout length per env")
    parser.add_argument("--logdir", default="runs/ppo_dactyl", help="tensorboard log folder")
    parser.add_argument("--save", default=None, help="where to save the trained model (.zip)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the envs, the renders and PPO")
    args = parser.parse_args()

    from stable_baselines3 import PPO

    cameras = [c for c in args.cameras.split(",") if c]
    renderer = None
    if args.renderer == "remote":
        config = orrb.envs.dactyl_render_config(cameras, args.size, args.size)
        renderer = orrb.RemoteRenderer(
            "ppo-dactyl", orrb.utils.build_server_configs(1, args.servers, orrb.utils.free_base_port(args.servers)),
            config)
        renderer.start()
    venv = make_sb3_vec("OrrbDactyl-v0", args.envs, renderer=renderer, seed=args.seed, camera_names=cameras,
                        width=args.size, height=args.size, randomize=args.randomize)
    try:
        batch = min(args.n_steps * args.envs, 256)
        model = PPO("MultiInputPolicy", venv, n_steps=args.n_steps, batch_size=batch, seed=args.seed, verbose=1,
                    tensorboard_log=args.logdir, device="cpu")
        start = time.perf_counter()
        model.learn(total_timesteps=args.timesteps, tb_log_name="ppo")
        elapsed = time.perf_counter() - start
        print(f"trained {model.num_timesteps} steps in {elapsed:.1f} s ({model.num_timesteps / elapsed:.1f} steps/s); "
              f"logs in {args.logdir}")
        if args.save:
            model.save(args.save)
    finally:
        venv.close()
        if renderer is not None:
            renderer.shutdown()


if __name__ == "__main__":
    main()
