#!/usr/bin/env python
"""Asynchronous rendering with several batches in flight, and live ``update()`` between two configs.

Queues batches with ``render_batch_async`` on a render pool (``orrb.RemoteRenderer``;
``--workers 0`` renders in this process with ``orrb.LocalRenderer``), keeping several in
flight, and before each one switches the running component chain with ``update()``
between two configs:

- ``A``: the shipped ``dactyl.renderer_config.json`` as loaded;
- ``B``: the same with coloured lights, textured materials and strong camera jitter.

A batch renders with the config current when it was queued, not when it runs, so every batch
queued under A must be identical to every other A batch (same states and seed), and
differ from the B batches. The script checks this and writes one PNG per batch.

Usage: python examples/batch_demo.py [--batches 6] [--batch 4] [--in-flight 3] [--out-dir batch_demo_out]
"""

import argparse
import os
import queue
import time

import numpy as np

import orrb


def two_configs():
    """The updates that switch the chain to A and to B (each names every property it touches)."""
    a = orrb.RendererConfig()
    a.add("LightRandomizer", "light_randomizer", randomize_hue=False)
    a.add("MaterialRandomizer", "material_randomizer", randomize_textures=False)
    a.add("CameraRandomizer", "camera_randomizer", position_radius=0.01, quat_radius=0.03, fov_radius=1.0)
    b = orrb.RendererConfig()
    b.add("LightRandomizer", "light_randomizer", randomize_hue=True)
    b.add("MaterialRandomizer", "material_randomizer", randomize_textures=True)
    b.add("CameraRandomizer", "camera_randomizer", position_radius=0.1, quat_radius=0.1, fov_radius=5.0)
    return {"A": a, "B": b}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=6, help="batches to render (default: %(default)s)")
    parser.add_argument("--batch", type=int, default=4, help="states per batch (default: %(default)s)")
    parser.add_argument("--in-flight", type=int, default=3, help="batches queued at once (default: %(default)s)")
    parser.add_argument("--size", type=int, default=128, help="image width and height (default: %(default)s)")
    parser.add_argument("--workers", type=int, default=2, help="render servers; 0 renders in this process (default: %(default)s)")
    parser.add_argument("--base-port", type=int, default=15650, help="first server port (default: %(default)s)")
    parser.add_argument("--out-dir", default="batch_demo_out", help="folder for the PNGs (default: %(default)s)")
    return parser.parse_args(argv)


def run(args: argparse.Namespace) -> dict:
    """Renders the batches; returns ``{"A": [...], "B": [...]}`` (each batch's images, ``uint8
    [2H, B*W, 3]``, in completion order), ``most_in_flight`` and ``elapsed_s``."""
    config = orrb.RemoteRendererConfig(
        camera_names=["vision_cam_left", "vision_cam_right"], image_width=args.size, image_height=args.size,
        model_xml_path="dactyl.xml", model_mapping_path="dactyl.mapping",
        renderer_config_path="dactyl.renderer_config.json",
        asset_basedir=orrb.utils.package_relative_path("assets"))
    if args.workers > 0:
        servers = orrb.utils.build_server_configs(1, args.workers, args.base_port)
        renderer = orrb.RemoteRenderer("batch_demo", servers, config)
    else:
        renderer = orrb.LocalRenderer(config)
    configs = two_configs()
    qpos = np.loadtxt(orrb.utils.package_relative_path("assets/states/qpos.csv"), delimiter=",")[:args.batch]
    os.makedirs(args.out_dir, exist_ok=True)
    results = queue.Queue()
    by_config: dict[str, list[np.ndarray]] = {"A": [], "B": []}
    most_in_flight = 0

    def collect():
        response = results.get()
        if isinstance(response, BaseException):
            raise response
        name = response["config_name"]
        images = np.concatenate([np.concatenate(list(response[c]), axis=1) for c in config.camera_names], axis=0)
        by_config[name].append(images)
        from PIL import Image

        path = os.path.join(args.out_dir, f"batch_{int(response['batch_id']):02d}_{name}.png")
        Image.fromarray(images).save(path)
        print(f"  batch {int(response['batch_id'])} ({name}) done -> {path}", flush=True)

    started = time.perf_counter()
    with renderer:
        in_flight = 0
        for k in range(args.batches):
            name = "AB"[k % 2]
            renderer.update(configs[name])  # applies to this batch and later ones, not to queued ones
            renderer.render_batch_async({"qpos": qpos, "seed": 0, "batch_id": k, "config_name": name}, results)
            in_flight += 1
            most_in_flight = max(most_in_flight, in_flight)
            print(f"queued batch {k} with config {name} ({in_flight} in flight)", flush=True)
            if in_flight >= args.in_flight:
                collect()
                in_flight -= 1
        while in_flight:
            collect()
            in_flight -= 1
    return {**by_config, "most_in_flight": most_in_flight, "elapsed_s": time.perf_counter() - started,
            "cameras": list(config.camera_names)}


def main(argv=None):
    args = parse_args(argv)
    out = run(args)
    by_config, most_in_flight, elapsed = {k: out[k] for k in "AB"}, out["most_in_flight"], out["elapsed_s"]
    same = all(np.array_equal(imgs[0], other) for imgs in by_config.values() if imgs for other in imgs[1:])
    differ = bool(by_config["A"] and by_config["B"]) and not np.array_equal(by_config["A"][0], by_config["B"][0])
    print(f"{args.batches} batches x {args.batch} states x {len(out['cameras'])} cameras in {elapsed:.1f} s, "
          f"up to {most_in_flight} in flight")
    print(f"batches queued under the same config are identical: {same}; A and B differ: {differ}")
    return 0 if same and (differ or args.batches < 2) else 1


if __name__ == "__main__":
    raise SystemExit(main())
