"""Throughput of the server pool against LocalRenderer, and the share of time spent in transport.

One run, interleaved: LocalRenderer (llvmpipe's own threads), a pool of 1 and a pool
of 2 servers (one llvmpipe thread each) render the same batch (3 cameras, 200x200,
the Dactyl config). Transport share: the pool of 1's wall time per batch minus the
server's own render time, over the render time (everything the pool adds: checks,
framing, sockets, copies into the output arrays).

    python benchmarks/pool.py [--quick] [--config dactyl|none] [--size 200] [--states 16]

Targets on 2 cores: 2 servers >= 1.9x 1 server; 2 servers >= 1.5x LocalRenderer;
transport < 2% of render time.
"""

from __future__ import annotations

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _common  # noqa: E402

import orrb  # noqa: E402


free_base_port = orrb.utils.free_base_port


def main() -> None:
    p = _common.parser(__doc__.split("\n\n")[0])
    p.add_argument("--config", choices=["dactyl", "none"], default="dactyl",
                   help="renderer config: the shipped dactyl.renderer_config.json or no components")
    args = p.parse_args()
    states_n, repeats = (8, 2) if args.quick else (args.states, args.repeats)
    path = "dactyl.renderer_config.json" if args.config == "dactyl" else None
    config = _common.dactyl_config(args.size, path)
    batch = {"qpos": _common.dactyl_states(states_n), "seed": 0}
    images = states_n * len(config.camera_names)

    local = orrb.LocalRenderer(config).start()
    pool1 = orrb.RemoteRenderer("bench-pool1", orrb.utils.build_server_configs(1, 1, free_base_port(1)), config).start()
    pool2 = orrb.RemoteRenderer("bench-pool2", orrb.utils.build_server_configs(1, 2, free_base_port(2)), config).start()
    try:
        for r in (local, pool1, pool2):  # warm up (first-render costs)
            r.render_batch(batch)
        pool1_wall = []

        def pool1_batch():
            start, render_before = time.perf_counter(), pool1.stats["server_render_s"]
            pool1.render_batch(batch)
            pool1_wall.append((time.perf_counter() - start, pool1.stats["server_render_s"] - render_before))

        seconds = _common.interleaved({
            "LocalRenderer": lambda: local.render_batch(batch),
            "pool, 1 server": pool1_batch,
            "pool, 2 servers": lambda: pool2.render_batch(batch),
        }, repeats)
        wall_total = sum(w for w, _ in pool1_wall)
        render_total = sum(r for _, r in pool1_wall)
    finally:
        local.shutdown()
        pool1.shutdown()
        pool2.shutdown()

    rates = {name: images / s for name, s in seconds.items()}
    overhead = (wall_total - render_total) / len(pool1_wall)
    transport = (wall_total - render_total) / render_total
    print(f"batch: {states_n} states x {len(config.camera_names)} cameras, {args.size}x{args.size}, "
          f"config {args.config}, {repeats} repeats (median)")
    _common.report("server pool throughput", rates, "images/s", [
        ("2 servers / 1 server", rates["pool, 2 servers"] / rates["pool, 1 server"], 1.9),
        ("2 servers / LocalRenderer", rates["pool, 2 servers"] / rates["LocalRenderer"], 1.5),
        ("1 server / LocalRenderer", rates["pool, 1 server"] / rates["LocalRenderer"], None),
    ])
    print(f"transport: {1000 * overhead:.2f} ms per batch = {100 * transport:.2f}% of the server's render time "
          f"{1000 * render_total / len(pool1_wall):.1f} ms (target < 2%)")
    print(f"ratio: transport share of render time = {transport:.4f} (target <= 0.02)")


if __name__ == "__main__":
    main()
