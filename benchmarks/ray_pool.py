"""Throughput of RayRenderer against RemoteRenderer: what running the servers on Ray costs.

One run, interleaved: a RemoteRenderer with 2 spawned servers, a RayRenderer with 2
server actors (on a Ray runtime started on this machine, or the cluster at --address),
and, to tell Ray's cost from encryption's, a RemoteRenderer with 2 ``orrb serve``
servers using a shared secret, render the same batch (3 cameras, 200x200, the Dactyl
config). All pools render with the same server code; the Ray pool's traffic is
CURVE-encrypted (its per-renderer secret), the spawned pool's is plain ZeroMQ on loopback.

    python benchmarks/ray_pool.py [--quick] [--config dactyl|none] [--size 200] [--states 16] [--address ADDR]

Target: RayRenderer >= 0.95x RemoteRenderer images/s (Ray's overhead under 5%).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _common  # noqa: E402

import orrb  # noqa: E402


def main() -> None:
    p = _common.parser(__doc__.split("\n\n")[0])
    p.add_argument("--config", choices=["dactyl", "none"], default="dactyl",
                   help="renderer config: the shipped dactyl.renderer_config.json or no components")
    p.add_argument("--address", default=None,
                   help="Ray cluster to join (default: start Ray on this machine, on loopback)")
    p.add_argument("--gpus-per-server", type=float, default=0, help="GPUs per Ray server actor (default 0)")
    args = p.parse_args()
    if args.address is None:  # a one-machine runtime that dials only loopback
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    import ray

    from orrb.ray import RayRenderer

    states_n, repeats = (8, 3) if args.quick else (args.states, args.repeats)
    path = "dactyl.renderer_config.json" if args.config == "dactyl" else None
    config = _common.dactyl_config(args.size, path)
    batch = {"qpos": _common.dactyl_states(states_n), "seed": 0}
    images = states_n * len(config.camera_names)
    if args.address is None:
        ray.init(address="local", num_cpus=4, include_dashboard=False, log_to_driver=False)
    else:
        ray.init(address=args.address, log_to_driver=False)
    remote = orrb.RemoteRenderer("bench-remote2", orrb.utils.build_server_configs(
        1, 2, orrb.utils.free_base_port(2)), config).start()
    on_ray = RayRenderer("bench-ray2", config, 2, gpus_per_server=args.gpus_per_server).start()
    secret_file = tempfile.NamedTemporaryFile("w", suffix=".secret")
    secret_file.write("benchmark-secret\n")
    secret_file.flush()
    base = orrb.utils.free_base_port(2)
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    serves = [subprocess.Popen([sys.executable, "-m", "orrb", "serve", "--port", str(base + i), "--secret-file",
                                secret_file.name, "--lp-threads", "0"], env=env, stderr=subprocess.DEVNULL)
              for i in range(2)]
    curve = orrb.RemoteRenderer("bench-curve2", [f"tcp://127.0.0.1:{base + i}" for i in range(2)], config,
                                secret="benchmark-secret").start()
    try:
        for r in (remote, on_ray, curve):  # warm up (first-render costs)
            r.render_batch(batch)
        seconds = _common.interleaved({
            "RemoteRenderer, 2 servers": lambda: remote.render_batch(batch),
            "RayRenderer, 2 servers": lambda: on_ray.render_batch(batch),
            "RemoteRenderer, 2 servers, CURVE": lambda: curve.render_batch(batch),
        }, repeats)
    finally:
        remote.shutdown()
        on_ray.shutdown()
        curve.shutdown()
        for proc in serves:
            proc.terminate()
            proc.wait()
        secret_file.close()
        ray.shutdown()
    rates = {name: images / s for name, s in seconds.items()}
    print(f"batch: {states_n} states x {len(config.camera_names)} cameras, {args.size}x{args.size}, "
          f"config {args.config}, {repeats} repeats (median)")
    _common.report("RayRenderer vs RemoteRenderer", rates, "images/s", [
        ("RayRenderer / RemoteRenderer", rates["RayRenderer, 2 servers"] / rates["RemoteRenderer, 2 servers"], 0.95),
        ("RayRenderer / RemoteRenderer with CURVE",
         rates["RayRenderer, 2 servers"] / rates["RemoteRenderer, 2 servers, CURVE"], None),
        ("RemoteRenderer with CURVE / plain",
         rates["RemoteRenderer, 2 servers, CURVE"] / rates["RemoteRenderer, 2 servers"], None),
    ])


if __name__ == "__main__":
    main()
