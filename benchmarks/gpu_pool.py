"""Server pool on one NVIDIA GPU: EGL device mapping, frame correctness, images/s for 1-8 servers.

Self-contained, for a lent GPU machine with a few minutes of budget:

    python benchmarks/gpu_pool.py --out /tmp/gpu_pool.json [--quick]

Steps (each guarded: a failure is recorded and the script goes on):
1. EGL devices and their CUDA indices (``orrb.egl_device``); the EGL index chosen for GPU 0.
2. One server on GPU 0: its log must show the CUDA->EGL mapping; frames must not be
   blank and must match a second server's render of the same request bit for bit
   (and LocalRenderer in this process, reported as max abs difference).
3. In this process: images/s with the image stage (post-processing) overlapped with drawing
   and after it.
4. images/s at 128x128 and 200x200 for pools of 1, 2, 4, 8 servers on GPU 0
   (3 cameras, the Dactyl renderer config when its components load, else none).
Writes ``--out`` (JSON) and the same path with ``.md`` (a markdown table). Stays
under ~5 minutes (``--quick``: ~1.5).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402

import _common  # noqa: E402
import orrb  # noqa: E402
from orrb import egl_device  # noqa: E402


free_base_port = orrb.utils.free_base_port


def say(*args) -> None:
    print(*args, flush=True)


def main() -> int:
    import logging

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="JSON summary path (a .md table is written beside it)")
    p.add_argument("--quick", action="store_true", help="fewer sizes, pools and repeats (~1.5 min)")
    p.add_argument("--states", type=int, default=64, help="states per batch (default 64)")
    p.add_argument("--budget-s", type=float, default=270.0, help="stop starting new measurements after this")
    p.add_argument("--pools", default=None, help="comma-separated server counts (default 1,2,4,8; --quick 1,2,4)")
    p.add_argument("--repeats", type=int, default=None, help="timed batches per measurement (default 3; --quick 2)")
    p.add_argument("--sizes", default=None, help="comma-separated image sizes (default 128,200; --quick 128)")
    p.add_argument("--pools-only", action="store_true", help="skip steps 1-3 (devices, frames, in-process engine)")
    p.add_argument("--also-bare", action="store_true",
                   help="also measure every pool with no components (render cost alone)")
    args = p.parse_args()
    t0 = time.monotonic()
    summary: dict = {"machine": _common.machine(), "renderer_version": orrb.get_renderer_version(),
                     "nvidia_gpu_present": egl_device.nvidia_gpu_present(), "errors": [], "throughput": []}

    def record_error(step: str) -> None:
        text = traceback.format_exc()
        say(f"!! {step} failed:\n{text}")
        summary["errors"].append({"step": step, "error": text[-2000:]})

    def save() -> None:
        with open(args.out, "w") as f:
            json.dump(summary, f, indent=2)
        lines = ["# GPU pool benchmark", "", f"machine: {summary['machine']}", "",
                 f"- EGL devices (CUDA index per EGL device): {summary.get('egl_devices')}",
                 f"- EGL index for CUDA 0: {summary.get('egl_index_for_cuda0')}",
                 f"- server log device line: {summary.get('server_device_line')}",
                 f"- frames: {summary.get('frames')}", f"- config: {summary.get('config')}",
                 f"- image stage in one process (images/s, inline vs overlapped): {summary.get('image_stage')}", "",
                 "| size | config | servers | images/s | x 1 server |", "|---|---|---|---|---|"]
        for row in summary["throughput"]:
            lines.append(f"| {row['size']} | {row['config']} | {row['servers']} | {row['images_per_s']:.1f} | {row['x_one_server']:.2f} |")
        if summary["errors"]:
            lines += ["", "## errors", *[f"- {e['step']}: `{e['error'].strip().splitlines()[-1]}`" for e in summary["errors"]]]
        with open(os.path.splitext(args.out)[0] + ".md", "w") as f:
            f.write("\n".join(lines) + "\n")

    # 1. EGL mapping
    try:
        summary["egl_devices"] = egl_device.egl_cuda_devices()
        summary["egl_index_for_cuda0"] = egl_device.egl_index_for_cuda_device(0)
        say(f"EGL devices -> CUDA index: {summary['egl_devices']}; CUDA 0 is EGL {summary['egl_index_for_cuda0']}")
    except Exception:
        record_error("egl device query")

    config_path = "dactyl.renderer_config.json"
    try:
        orrb.RendererConfig.load(orrb.utils.package_relative_path("assets/" + config_path))
    except Exception as e:
        say(f"dactyl renderer config does not load ({e}); benchmarking without components")
        config_path = None
    summary["config"] = config_path or "none"
    states = _common.dactyl_states(args.states if not args.quick else 32)
    batch = {"qpos": states, "seed": 0}

    if not args.pools_only:
        # 2. correctness on GPU 0
        try:
            config = _common.dactyl_config(128, config_path)
            config.render_depth = True
            base = free_base_port(2)
            with orrb.RemoteRenderer("gpu-check-a", [[0, base]], config, start_timeout=60) as a, \
                    orrb.RemoteRenderer("gpu-check-b", [[0, base + 1]], config, start_timeout=60) as b:
                ra, rb = a.render_batch(batch), b.render_batch(batch)
                with open(a.log_files[0]) as f:
                    lines = [ln.strip() for ln in f if "device 0" in ln or "CPU rendering" in ln]
                summary["server_device_line"] = lines[0] if lines else None
            std = {c: float(ra[c].std()) for c in config.camera_names}
            identical = all(np.array_equal(ra[k], rb[k]) for k in ra if k not in ("qpos", "seed"))
            frames = {"std_per_camera": std, "not_blank": all(s > 5 for s in std.values()),
                      "two_servers_bit_identical": identical}
            try:
                with orrb.LocalRenderer(config) as local:
                    rl = local.render_batch(batch)
                frames["max_abs_diff_vs_local"] = {c: int(np.abs(ra[c].astype(int) - rl[c].astype(int)).max())
                                                   for c in config.camera_names}
            except Exception:
                record_error("LocalRenderer comparison")
            summary["frames"] = frames
            if summary["nvidia_gpu_present"] and "EGL device" not in (summary["server_device_line"] or ""):
                summary["errors"].append({"step": "EGL mapping", "error": f"server did not map CUDA 0 to an EGL device: "
                                          f"{summary['server_device_line']}"})
            if not (frames["not_blank"] and identical):
                summary["errors"].append({"step": "frames", "error": f"blank or not identical: {frames}"})
            say(f"server device line: {summary['server_device_line']}")
            say(f"frames: {frames}")
        except Exception:
            record_error("correctness check on GPU 0")
        save()

        # 3. in this process: the image stage (post-processing) overlapped with drawing vs after it
        try:
            from orrb.engine import EngineOptions, RenderEngine

            overlap: dict = {}
            for size in ([128] if args.quick else [128, 200]):
                config = _common.dactyl_config(size, config_path)
                with RenderEngine(config, options=EngineOptions(image_overlap=False)) as inline, \
                        RenderEngine(config, options=EngineOptions(image_overlap=True)) as overlapped:
                    engines = {"inline": inline, "overlapped": overlapped}
                    summary["gl_hardware"] = overlapped.gl_hardware
                    seeds = np.arange(len(states), dtype=np.uint64)
                    for engine in engines.values():
                        engine.render(states, seeds)
                    times: dict = {"inline": [], "overlapped": []}
                    for _ in range(3):
                        for label, engine in engines.items():
                            start = time.perf_counter()
                            engine.render(states, seeds)
                            times[label].append(time.perf_counter() - start)
                    images = len(states) * len(_common.CAMERAS)
                    overlap[size] = {k: images / min(v) for k, v in times.items()}
                    say(f"{size}x{size} in-process engine: " + ", ".join(f"{k} {r:.1f} images/s" for k, r in overlap[size].items()))
            summary["image_stage"] = overlap
        except Exception:
            record_error("image stage overlap")
        save()

    # 4. throughput
    sizes = [128] if args.quick else [128, 200]
    if args.sizes:
        sizes = [int(n) for n in args.sizes.split(",")]
    pools = [1, 2, 4] if args.quick else [1, 2, 4, 8]
    if args.pools:
        pools = [int(n) for n in args.pools.split(",")]
    repeats = args.repeats or (2 if args.quick else 3)
    variants = [(size, config_path) for size in sizes]
    if args.also_bare and config_path is not None:
        variants += [(size, None) for size in sizes]
    for size, variant_config in variants:
        config = _common.dactyl_config(size, variant_config)
        label = variant_config or "no components"
        images = len(states) * len(config.camera_names)
        one = None
        for n in pools:
            if time.monotonic() - t0 > args.budget_s:
                say(f"time budget reached; skipping {size}px x {n} servers")
                continue
            try:
                configs = orrb.utils.build_server_configs(1, n, free_base_port(n))
                with orrb.RemoteRenderer(f"gpu-bench-{n}", configs, config, start_timeout=90) as r:
                    r.render_batch(batch)  # warm up
                    start = time.perf_counter()
                    for _ in range(repeats):
                        r.render_batch(batch)
                    rate = images * repeats / (time.perf_counter() - start)
                one = one or rate
                summary["throughput"].append({"size": size, "config": label, "servers": n,
                                              "images_per_s": rate, "x_one_server": rate / one})
                say(f"{size}x{size} {label}, {n} server(s): {rate:8.1f} images/s  ({rate / one:.2f}x one server)")
            except Exception:
                record_error(f"throughput {size}px x {n} servers")
            save()
    summary["elapsed_s"] = time.monotonic() - t0
    save()
    say(f"wrote {args.out} and {os.path.splitext(args.out)[0]}.md in {summary['elapsed_s']:.0f} s")
    return 1 if summary["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
