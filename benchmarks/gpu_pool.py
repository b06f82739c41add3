"""Server pool on one NVIDIA GPU: EGL device mapping, frame correctness, images/s for 1-8 servers.

Self-contained, for a lent GPU machine with a few minutes of budget:

    python benchmarks/gpu_pool.py --out /tmp/gpu_pool.json [--quick]

Steps (each guarded: a failure is recorded and the script goes on):
1. EGL devices and their CUDA indices (``orrb.egl_device``); the EGL index chosen for GPU 0.
2. One server on GPU 0: its log must show the CUDA->EGL mapping; frames must not be
   blank and must match a second server's render of the same request bit for bit
   (and LocalRenderer in this process, reported as max abs difference).
3. In this process, per size: images/s and CPU ms per image (process CPU over images) of
   the readback schedules: several entries per readback with and without pixel-buffer
   readback, one entry per readback (``EngineOptions``).
4. images/s at 128x128 and 200x200 for pools of 1, 2, 4, 8 servers on GPU 0, with the Dactyl
   renderer config and without components, plus the servers' CPU per image (all their
   threads, and the busiest thread: the one that limits a server) and the client's; frames
   checked per pool (not blank, bit-identical to the one-server pool: entries are tiled by
   seed, so sharding changes no bit); ``--readback-ab`` adds every pool with one entry per
   readback (the servers' default on hardware GL is several).
Writes ``--out`` (JSON) and the same path with ``.md`` (a markdown table). Stays
under ~7 minutes (``--quick``: ~1.5; on llvmpipe try ``--quick --states 8 --sizes 32``).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402

import _common  # noqa: E402
import orrb  # noqa: E402
from orrb import egl_device  # noqa: E402
from orrb.engine.options import ENTRIES_PER_READBACK_ENV as ENTRIES_ENV  # noqa: E402


free_base_port = orrb.utils.free_base_port


def say(*args) -> None:
    print(*args, flush=True)


def thread_cpu_seconds(pids) -> dict[tuple[int, int], float]:
    """``{(pid, tid): user + system CPU seconds}`` of every thread of processes ``pids``
    (from ``/proc``; threads that ended are missing)."""
    tick = os.sysconf("SC_CLK_TCK")
    out = {}
    for pid in pids:
        if pid is None:
            continue
        try:
            tids = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for tid in tids:
            try:
                with open(f"/proc/{pid}/task/{tid}/stat") as f:
                    fields = f.read().rsplit(") ", 1)[1].split()
            except (OSError, IndexError):
                continue
            out[(pid, int(tid))] = (int(fields[11]) + int(fields[12])) / tick
    return out


def client_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> int:
    import logging

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="JSON summary path (a .md table is written beside it)")
    p.add_argument("--quick", action="store_true", help="fewer sizes, pools and repeats (~1.5 min)")
    p.add_argument("--states", type=int, default=None, help="states per batch (default 64; --quick 32)")
    p.add_argument("--budget-s", type=float, default=400.0, help="stop starting new measurements after this")
    p.add_argument("--pools", default=None, help="comma-separated server counts (default 1,2,4,8; --quick 1,2,4)")
    p.add_argument("--repeats", type=int, default=None, help="timed batches per measurement (default 3; --quick 2)")
    p.add_argument("--sizes", default=None, help="comma-separated image sizes (default 128,200; --quick 128)")
    p.add_argument("--pools-only", action="store_true", help="skip steps 1-3 (devices, frames, in-process engine)")
    p.add_argument("--readback-ab", action="store_true",
                   help="also measure every pool with one entry per readback (ORRB_ENTRIES_PER_READBACK=1)")
    p.add_argument("--chain-only", action="store_true",
                   help="measure pools with the Dactyl chain only (default: also with no components)")
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
                 f"- GL on hardware: {summary.get('gl_hardware')}", "",
                 "readback schedules in one process (images/s, process CPU ms per image):", ""]
        for size, rows in (summary.get("readback") or {}).items():
            lines.append(f"- {size} px: " + ", ".join(f"{k} {v['images_per_s']:.1f}/s {v['cpu_ms_per_image']:.3f} ms"
                                                     for k, v in rows.items()))
        lines += ["", "| size | config | servers | images/s | x 1 server | server CPU ms/image | busiest thread ms/image "
                  "| client CPU ms/image | frames |", "|---|---|---|---|---|---|---|---|---|"]
        for row in summary["throughput"]:
            lines.append(f"| {row['size']} | {row['config']} | {row['servers']} | {row['images_per_s']:.1f} "
                         f"| {row['x_one_server']:.2f} | {row['server_cpu_ms_per_image']:.3f} "
                         f"| {row['busiest_thread_ms_per_image']:.3f} | {row['client_cpu_ms_per_image']:.3f} "
                         f"| {row['frames']} |")
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
    sizes = [128] if args.quick else [128, 200]
    if args.sizes:
        sizes = [int(n) for n in args.sizes.split(",")]
    states = _common.dactyl_states(args.states or (32 if args.quick else 64))
    batch = {"qpos": states, "seed": 0}

    if not args.pools_only:
        # 2. correctness on GPU 0
        try:
            config = _common.dactyl_config(sizes[0], config_path)
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

        # 3. in this process: readback schedules (entries per readback, pixel buffers)
        try:
            from orrb.engine import EngineOptions, RenderEngine

            schedules = {"tiles+pbo": EngineOptions(entries_per_readback=24, pbo_readback=True),
                         "tiles": EngineOptions(entries_per_readback=24, pbo_readback=False),
                         "one entry per readback": EngineOptions(entries_per_readback=1, pbo_readback=False)}
            readback: dict = {}
            for size in sizes:
                config = _common.dactyl_config(size, config_path)
                engines = {label: RenderEngine(config, options=options) for label, options in schedules.items()}
                try:
                    summary["gl_hardware"] = engines["tiles"].gl_hardware
                    seeds = np.arange(len(states), dtype=np.uint64)
                    outputs = {label: engine.render(states, seeds) for label, engine in engines.items()}
                    if not np.array_equal(outputs["tiles+pbo"][_common.CAMERAS[0]], outputs["tiles"][_common.CAMERAS[0]]):
                        summary["errors"].append({"step": "pbo", "error": f"{size} px: pixel-buffer readback differs"})
                    times: dict = {label: [] for label in engines}
                    cpu: dict = {label: [] for label in engines}
                    for _ in range(3):
                        for label, engine in engines.items():
                            start, start_cpu = time.perf_counter(), time.process_time()
                            engine.render(states, seeds)
                            times[label].append(time.perf_counter() - start)
                            cpu[label].append(time.process_time() - start_cpu)
                finally:
                    for engine in engines.values():
                        engine.close()
                images = len(states) * len(_common.CAMERAS)
                readback[size] = {k: {"images_per_s": images / min(v), "cpu_ms_per_image": 1e3 * min(cpu[k]) / images}
                                  for k, v in times.items()}
                say(f"{size}x{size} in-process engine: " + ", ".join(
                    f"{k} {r['images_per_s']:.1f} images/s {r['cpu_ms_per_image']:.3f} CPU ms/image"
                    for k, r in readback[size].items()))
            summary["readback"] = readback
        except Exception:
            record_error("readback schedules")
        save()

    # 4. throughput
    pools = [1, 2, 4] if args.quick else [1, 2, 4, 8]
    if args.pools:
        pools = [int(n) for n in args.pools.split(",")]
    repeats = args.repeats or (2 if args.quick else 3)
    variants = [(size, config_path, None) for size in sizes]
    if not args.chain_only and config_path is not None:
        variants += [(size, None, None) for size in sizes]
    if args.readback_ab:
        variants += [(size, path, "1") for size, path, _ in variants]
    for size, variant_config, entries in variants:
        config = _common.dactyl_config(size, variant_config)
        label = (variant_config or "no components") + (", one entry per readback" if entries else "")
        if entries:
            os.environ[ENTRIES_ENV] = entries  # the spawned servers inherit it
        else:
            os.environ.pop(ENTRIES_ENV, None)
        images = len(states) * len(config.camera_names)
        one = reference = None
        for n in pools:
            if time.monotonic() - t0 > args.budget_s:
                say(f"time budget reached; skipping {size}px x {n} servers")
                continue
            try:
                configs = orrb.utils.build_server_configs(1, n, free_base_port(n))
                with orrb.RemoteRenderer(f"gpu-bench-{n}", configs, config, start_timeout=90) as r:
                    first = r.render_batch(batch)  # warm up, and the frames checked
                    pids = r.server_pids
                    cpu_before, client_before = thread_cpu_seconds(pids), client_cpu_seconds()
                    start = time.perf_counter()
                    for _ in range(repeats):
                        r.render_batch(batch)
                    rate = images * repeats / (time.perf_counter() - start)
                    cpu_after, client_after = thread_cpu_seconds(pids), client_cpu_seconds()
                spent = {key: cpu_after[key] - cpu_before.get(key, 0.0) for key in cpu_after}
                served = images * repeats
                frames = "not blank" if all(first[c].std() > 5 for c in config.camera_names) else "BLANK"
                if reference is None:
                    reference = first
                elif all(np.array_equal(first[k], reference[k]) for k in reference if k not in ("qpos", "seed")):
                    frames += ", = 1 server"
                else:
                    frames += ", DIFFERS from 1 server"
                    summary["errors"].append({"step": "frames", "error": f"{size}px {label}: {n} servers differ from 1"})
                one = one or rate
                summary["throughput"].append({
                    "size": size, "config": label, "servers": n, "images_per_s": rate, "x_one_server": rate / one,
                    "server_cpu_ms_per_image": 1e3 * sum(spent.values()) / served,
                    # a server renders images / n of them: its busiest thread's CPU per image it rendered
                    "busiest_thread_ms_per_image": 1e3 * max(spent.values(), default=0.0) / (served / n),
                    "client_cpu_ms_per_image": 1e3 * (client_after - client_before) / served, "frames": frames})
                row = summary["throughput"][-1]
                say(f"{size}x{size} {label}, {n} server(s): {rate:8.1f} images/s  ({rate / one:.2f}x one server), "
                    f"server CPU {row['server_cpu_ms_per_image']:.3f} ms/image, busiest thread "
                    f"{row['busiest_thread_ms_per_image']:.3f} ms/image, client {row['client_cpu_ms_per_image']:.3f} "
                    f"ms/image, frames {frames}")
            except Exception:
                record_error(f"throughput {size}px x {n} servers")
            save()
    summary["elapsed_s"] = time.monotonic() - t0
    save()
    say(f"wrote {args.out} and {os.path.splitext(args.out)[0]}.md in {summary['elapsed_s']:.0f} s")
    return 1 if summary["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
