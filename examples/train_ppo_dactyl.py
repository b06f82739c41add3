"""Train PPO (MultiInputPolicy) on OrrbDactyl-v0's randomized camera images, rendered in batches by a pool.

    pip install "orrb[rl]" tensorboard
    python examples/train_ppo_dactyl.py --timesteps 2048 --envs 4 --servers 2 --logdir runs/ppo_dactyl
    tensorboard --logdir runs/ppo_dactyl

The envs simulate in subprocesses (SubprocVecEnv) and report their states; one
``render_batch`` per step renders all of them on an ``orrb.RemoteRenderer`` pool
(``--renderer local`` renders in this process instead). A ``VecMonitor`` records each
episode's reward and length, so TensorBoard shows ``rollout/ep_rew_mean`` and
``rollout/ep_len_mean`` next to PPO's losses.
"""

from __future__ import annotations

import argparse
import time

import orrb


def parse_args(argv=None) -> argparse.Namespace:
    class Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
        pass

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=Formatter)
    parser.add_argument("--timesteps", type=int, default=100_000, help="total env steps to train for")
    parser.add_argument("--envs", type=int, default=4, help="number of envs (subprocesses)")
    parser.add_argument("--renderer", choices=["remote", "local"], default="remote", help="render pool or in-process")
    parser.add_argument("--servers", type=int, default=2, help="render servers in the pool (--renderer remote)")
    parser.add_argument("--size", type=int, default=64, help="image width and height (>= 36 for SB3's CNN)")
    parser.add_argument("--cameras", default="vision_cam_left,vision_cam_right,vision_cam_top", help="comma-separated")
    parser.add_argument("--randomize", choices=["episode", "step"], default="episode",
                        help="new randomization per episode or per step")
    parser.add_argument("--episode-steps", type=int, default=100, help="steps before an episode is truncated")
    parser.add_argument("--n-steps", type=int, default=256, help="PPO rollout length per env")
    parser.add_argument("--logdir", default="runs/ppo_dactyl", help="TensorBoard log folder")
    parser.add_argument("--save", default=None, help="where to save the trained model (.zip)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the envs and of PPO")
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)  # --help works without stable-baselines3: it is imported below
    try:
        import tensorboard  # noqa: F401  (SB3 writes its logs with it)
        from stable_baselines3 import PPO
    except ImportError as e:
        raise SystemExit(f"this example needs stable-baselines3 and tensorboard ({e}): "
                         "pip install \"orrb[rl]\" tensorboard") from e

    cameras = [c for c in args.cameras.split(",") if c]
    venv = orrb.make_sb3_vec("OrrbDactyl-v0", n_envs=args.envs, seed=args.seed, renderer=args.renderer,
                             num_servers=args.servers, camera_names=cameras, width=args.size, height=args.size,
                             randomize=args.randomize, max_episode_steps=args.episode_steps)
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
        venv.close()  # also shuts down the render pool make_sb3_vec started


# The guard is required: SubprocVecEnv starts each env's worker process by importing this
# script again, and without it every worker would start its own training run.
if __name__ == "__main__":
    main()
