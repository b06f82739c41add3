"""The two backends side by side: images/s of "gl" and "warp" for the Dactyl scene.

Three cameras; image sizes 64, 128 and 200 px; batches of 16, 64 and 256 entries; with no
components and with the full Dactyl chain (``assets/dactyl.renderer_config.json``). Each
(backend, chain, size) renderer is built once and warmed up with one batch (Warp compiles its
kernels then), every batch size is timed ``--repeats`` times and the median counts. Frames are
checked for content (not blank, entries differ) before they are timed.

    python benchmarks/backends.py [--quick] [--servers N] [--backends gl,warp]

``--servers N`` renders through a pool of N render servers on this machine (device 0) instead
of a LocalRenderer in this process. ``--quick``: batches of 16 and 64, one repeat (this 2-core
machine). On a GPU machine with ``orrb[warp]`` installed the warp backend renders on CUDA.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402

import orrb  # noqa: E402
from _common import CAMERAS, dactyl_config, dactyl_states, machine  # noqa: E402

CHAIN = "dactyl.renderer_config.json"


def check_frames(result: dict, n: int) -> None:
    """Raises when a batch's frames are blank or all alike."""
    for camera in CAMERAS:
        frames = result[camera]
        if frames.shape[0] != n or frames.std() < 5 or np.array_equal(frames[0], frames[-1]):
            raise RuntimeError(f"{camera}: frames without content (std {frames.std():.1f})")


def renderer_for(config: orrb.RemoteRendererConfig, servers: int):
    if servers <= 0:
        return orrb.LocalRenderer(config)
    configs = orrb.utils.build_server_configs(1, servers, orrb.utils.free_base_port(servers))
    return orrb.RemoteRenderer(f"bench-{config.backend}", configs, config)


def picture(path: str) -> str:
    """Renders the same 3 states and seeds with the Dactyl chain on both backends (two cameras,
    128 px, colour, depth and segmentation) and writes the two contact sheets side by side."""
    from orrb.contact_sheet import contact_sheet, save_png

    states = dactyl_states(3)
    sheets = []
    for backend in ("gl", "warp"):
        config = dactyl_config(128, CHAIN)
        config.camera_names = ["vision_cam_left", "vision_cam_top"]
        config.render_depth = config.render_segmentation = True
        config.backend = backend
        with orrb.LocalRenderer(config) as renderer:
            result = renderer.render_batch({"qpos": states, "seeds": np.array([3, 4, 5], dtype=np.uint64)})
            sheets.append(contact_sheet(result, renderer.layout, column_labels=["seed 3", "seed 4", "seed 5"],
                                        title=f'backend="{backend}"'))
    height = max(s.shape[0] for s in sheets)
    padded = [np.pad(s, ((0, height - s.shape[0]), (0, 0), (0, 0)), constant_values=40) for s in sheets]
    return save_png(np.concatenate([padded[0], np.full((height, 8, 3), 255, np.uint8), padded[1]], axis=1), path)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="batches of 16 and 64, one repeat")
    p.add_argument("--sizes", default="64,128,200", help="image sizes in pixels (default 64,128,200)")
    p.add_argument("--batches", default=None, help="entries per batch (default 16,64,256; --quick 16,64)")
    p.add_argument("--repeats", type=int, default=None, help="timed batches per measurement (default 3; --quick 1)")
    p.add_argument("--servers", type=int, default=0, help="render servers (0: LocalRenderer in this process)")
    p.add_argument("--backends", default="gl,warp", help="backends to measure (default gl,warp)")
    p.add_argument("--picture", default=None,
                   help="only write a side-by-side PNG of both backends (same states and seeds) to this path")
    args = p.parse_args(argv)
    if args.picture:
        print(picture(args.picture))
        return
    sizes = [int(s) for s in args.sizes.split(",")]
    batches = [int(b) for b in (args.batches or ("16,64" if args.quick else "16,64,256")).split(",")]
    repeats = args.repeats or (1 if args.quick else 3)
    backends = args.backends.split(",")
    states = dactyl_states(max(batches))
    where = f"{args.servers} servers" if args.servers else "LocalRenderer"
    print(f"== backends: {len(CAMERAS)} cameras, Dactyl scene, {where}, median of {repeats}")
    print(f"machine: {machine()}")
    if "warp" in backends:
        from orrb.engine.warp_backend import default_device

        print(f"warp device: {default_device()}")
    print(f"{'backend':<8} {'chain':<7} {'size':>5} " + " ".join(f"{f'B={b}':>10}" for b in batches)
          + "   images/s (build + first batch s)")
    for backend in backends:
        for chain in (None, CHAIN):
            for size in sizes:
                config = dactyl_config(size, chain)
                config.backend = backend
                started = time.perf_counter()
                with renderer_for(config, args.servers) as renderer:
                    check_frames(renderer.render_batch({"qpos": states[:16], "seed": 0}), 16)
                    warm = time.perf_counter() - started
                    rates = []
                    for b in batches:
                        renderer.render_batch({"qpos": states[:b], "seed": 1})  # a new batch size: warm it up
                        seconds = []
                        for r in range(repeats):
                            t = time.perf_counter()
                            result = renderer.render_batch({"qpos": states[:b], "seed": 2 + r})
                            seconds.append(time.perf_counter() - t)
                        check_frames(result, b)
                        rates.append(b * len(CAMERAS) / statistics.median(seconds))
                print(f"{backend:<8} {'dactyl' if chain else 'none':<7} {size:>5} "
                      + " ".join(f"{r:10.1f}" for r in rates) + f"   ({warm:.1f} s)", flush=True)


if __name__ == "__main__":
    main()
