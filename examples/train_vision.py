#!/usr/bin/env python
"""Vision-training demo: does domain randomization help a CNN find the cube?

A small CNN (PyTorch, CPU) regresses the image position of the Dactyl cube,
``tracker_cube_X_vision_cam_left`` (normalized, x right, y down), from
``vision_cam_left`` renders. Two copies of the same CNN are trained on batches
streamed from a pool of render servers (``orrb.RemoteRenderer``) with random states
(hand joints in their ranges, cube near the palm with a random orientation):

- ``randomized``: the ``demo_keras`` randomization (camera jitter, lights,
  materials, colour grading), as the original Keras demo;
- ``unrandomized``: the same scene with no randomization (a tracker only).

Both are tested, in pixels, on (a) the demo_keras randomization with fixed seeds, (b)
a held-out domain (``assets/heldout.renderer_config.json``: an offset camera, a low
coloured light rig, other cube colours, stronger grading and grain) and (c) the plain
unrandomized scene. Prints a table, writes a picture of predictions vs truth on
held-out test images and a JSON of the numbers.

The network: strided convolutions down to 1/4 resolution, dilated convolutions for
context, a one-channel heat map and a spatial soft-argmax that outputs (x, y).

Usage:
    python examples/train_vision.py                      # defaults: well under 30 min on 2 cores
    python examples/train_vision.py --train-images 256 --test-images 32 --image-size 64   # smoke test
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import time

import numpy as np

import orrb
from orrb.dataset import sample_states
from orrb.scene import Mapping, compile_spec, load_spec

CAMERA = "vision_cam_left"
LABEL = f"tracker_cube_X_{CAMERA}"
ASSETS = orrb.utils.package_relative_path("assets")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--train-images", type=int, default=6144, help="images streamed per model")
    p.add_argument("--repeats", type=int, default=2, help="optimizer steps on each streamed batch")
    p.add_argument("--test-images", type=int, default=256, help="images per test set")
    p.add_argument("--image-size", type=int, default=200, help="image width and height (px)")
    p.add_argument("--batch-size", type=int, default=32, help="images per render request and per step")
    p.add_argument("--workers", type=int, default=2, help="render server processes (0: render in this process)")
    p.add_argument("--base-port", type=int, default=15800, help="first server port")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument("--lr", type=float, default=2e-3, help="Adam learning rate")
    p.add_argument("--position-noise", type=float, default=0.03, help="cube position noise (m, half width)")
    p.add_argument("--seed", type=int, default=0, help="seed of states, render seeds and weights")
    p.add_argument("--out-dir", default="train_vision_out", help="where the plot and results go")
    return p.parse_args(argv)


# -- data ------------------------------------------------------------------------------------------
def renderer_config_file(kind: str, out_dir: str) -> str:
    """Path of the component chain for ``kind``: randomized, unrandomized or heldout."""
    if kind == "randomized":
        return os.path.join(ASSETS, "demo_keras.renderer_config.json")
    if kind == "heldout":
        return os.path.join(ASSETS, "heldout.renderer_config.json")
    # unrandomized: only what labels the images (the same tracker) and hides the touch sites
    base = orrb.RendererConfig.load(os.path.join(ASSETS, "demo_keras.renderer_config.json"))
    chain = orrb.RendererConfig()
    for name in ("tracker", "hide_touch_sensors"):
        spec = base[name]
        chain.add(spec.type, spec.name, spec.path, **spec.properties)
    path = os.path.join(out_dir, "unrandomized.renderer_config.json")
    chain.save(path)
    return path


class Scene:
    """Samples request states for the Dactyl scene (see ``orrb.dataset.sample_states``)."""

    def __init__(self, position_noise: float):
        xml = os.path.join(ASSETS, "dactyl.xml")
        self.model = compile_spec(load_spec(xml), xml)
        self.mapping = Mapping(self.model, os.path.join(ASSETS, "dactyl.mapping"))
        self.position_noise = position_noise

    def states(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return sample_states(self.model, self.mapping, n, rng, position_noise=self.position_noise)


def make_renderer(kind: str, args, out_dir: str, port_offset: int):
    config = orrb.RemoteRendererConfig(
        camera_names=[CAMERA], image_width=args.image_size, image_height=args.image_size,
        model_xml_path="dactyl.xml", model_mapping_path="dactyl.mapping",
        renderer_config_path=renderer_config_file(kind, out_dir), asset_basedir=ASSETS)
    if args.workers == 0:  # in this process (small runs: no server start-up)
        return orrb.LocalRenderer(config).start()
    servers = orrb.utils.build_server_configs(1, args.workers, args.base_port + port_offset)
    return orrb.RemoteRenderer(f"train_vision_{kind}", servers, config).start()


def stream(renderer, scene: Scene, batches: int, batch_size: int, rng: np.random.Generator, seed0: int,
           in_flight: int = 3):
    """Yields ``(images uint8 [B, H, W, 3], targets float32 [B, 2])``, keeping batches queued
    on the pool so the servers render while the caller trains."""
    results: queue.Queue = queue.Queue()
    sent = 0
    for _ in range(min(in_flight, batches)):
        renderer.render_batch_async({"qpos": scene.states(batch_size, rng), "seed": seed0 + sent * batch_size}, results)
        sent += 1
    for _ in range(batches):
        response = results.get()
        if isinstance(response, BaseException):
            raise response
        if sent < batches:
            renderer.render_batch_async({"qpos": scene.states(batch_size, rng), "seed": seed0 + sent * batch_size},
                                        results)
            sent += 1
        yield response[CAMERA], response[LABEL].astype(np.float32)


def test_set(kind: str, args, scene: Scene, out_dir: str, port_offset: int):
    """A fixed test set: its own states and seeds, the same for every model."""
    rng = np.random.default_rng([args.seed, 1000 + port_offset])
    renderer = make_renderer(kind, args, out_dir, port_offset)
    try:
        images, targets = [], []
        n_batches = -(-args.test_images // args.batch_size)
        for x, y in stream(renderer, scene, n_batches, args.batch_size, rng, seed0=10**9 + 10**6 * port_offset):
            images.append(x)
            targets.append(y)
    finally:
        renderer.shutdown()
    return np.concatenate(images)[:args.test_images], np.concatenate(targets)[:args.test_images]


# -- model -----------------------------------------------------------------------------------------
def build_model(torch):
    nn = torch.nn

    def block(cin, cout, stride=1, dilation=1):
        return [nn.Conv2d(cin, cout, 3, stride=stride, padding=dilation, dilation=dilation, bias=False),
                nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]

    class SoftArgmax(nn.Module):
        """Heat map ``[B, 1, h, w]`` -> expected (x, y) of pixel centres, normalized to [0, 1]."""

        def forward(self, heat):
            b, _, h, w = heat.shape
            p = torch.softmax(heat.reshape(b, -1), dim=1).reshape(b, h, w)
            xs = (torch.arange(w, dtype=heat.dtype) + 0.5) / w
            ys = (torch.arange(h, dtype=heat.dtype) + 0.5) / h
            return torch.stack([(p.sum(1) * xs).sum(1), (p.sum(2) * ys).sum(1)], dim=1)

    return nn.Sequential(
        nn.Conv2d(3, 16, 5, stride=2, padding=2, bias=False), nn.BatchNorm2d(16), nn.ReLU(inplace=True),
        *block(16, 32, stride=2), *block(32, 32), *block(32, 32, dilation=2), *block(32, 32, dilation=4),
        *block(32, 32, dilation=8), nn.Conv2d(32, 1, 1), SoftArgmax())


def to_tensor(torch, images: np.ndarray):
    return torch.from_numpy(images).permute(0, 3, 1, 2).float().div_(255.0)


def train(kind: str, args, scene: Scene, out_dir: str, port_offset: int, torch):
    torch.manual_seed(args.seed)
    model = build_model(torch)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    batches = max(1, args.train_images // args.batch_size)
    steps = batches * args.repeats
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=args.lr, total_steps=steps, pct_start=0.15)
    rng = np.random.default_rng([args.seed, port_offset])
    renderer = make_renderer(kind, args, out_dir, port_offset)
    started = time.perf_counter()
    wait = 0.0
    losses = []
    try:
        model.train()
        data = stream(renderer, scene, batches, args.batch_size, rng, seed0=port_offset * 10**7)
        for b in range(batches):
            t = time.perf_counter()
            images, targets = next(data)
            wait += time.perf_counter() - t
            x, y = to_tensor(torch, images), torch.from_numpy(targets)
            for _ in range(args.repeats):
                loss = torch.nn.functional.smooth_l1_loss(model(x) * args.image_size, y * args.image_size)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                scheduler.step()
                losses.append(loss.item())
            if (b + 1) % max(1, batches // 8) == 0 or b + 1 == batches:
                print(f"  [{kind}] batch {b + 1}/{batches}  loss {np.mean(losses[-20:]):.2f} px  "
                      f"{time.perf_counter() - started:.0f} s", flush=True)
    finally:
        renderer.shutdown()
    return model, {"train_s": time.perf_counter() - started, "render_wait_s": wait,
                   "final_loss": float(np.mean(losses[-20:])), "losses": losses}


def predict(torch, model, images: np.ndarray, batch: int = 64) -> np.ndarray:
    model.eval()
    with torch.no_grad():
        return np.concatenate([model(to_tensor(torch, images[i:i + batch])).numpy() for i in range(0, len(images), batch)])


def pixel_errors(pred: np.ndarray, true: np.ndarray, size: int) -> np.ndarray:
    return np.linalg.norm((pred - true) * size, axis=1)


def save_plot(path: str, images: np.ndarray, true: np.ndarray, preds: dict[str, np.ndarray], count: int = 12):
    """Test images with the true position (green ring) and each model's prediction (crosses)."""
    from PIL import Image, ImageDraw

    colours = {"randomized": (40, 200, 255), "unrandomized": (255, 60, 60)}
    size = images.shape[1]
    count = min(count, len(images))
    cols = min(6, count)
    rows = -(-count // cols)
    sheet = Image.new("RGB", (cols * (size + 4) + 4, rows * (size + 4) + 4 + 18), (30, 30, 30))
    draw = ImageDraw.Draw(sheet)
    draw.text((4, 2), "held-out test images: green ring = true cube position, "
              "blue x = randomized model, red x = unrandomized model", fill=(230, 230, 230))
    r = max(3, size // 40)
    for i in range(count):
        x0, y0 = 4 + (i % cols) * (size + 4), 22 + (i // cols) * (size + 4)
        tile = Image.fromarray(images[i])
        tdraw = ImageDraw.Draw(tile)
        tx, ty = true[i] * size
        tdraw.ellipse([tx - r, ty - r, tx + r, ty + r], outline=(60, 255, 60), width=2)
        for name, pred in preds.items():
            px, py = pred[i] * size
            tdraw.line([px - r, py - r, px + r, py + r], fill=colours[name], width=2)
            tdraw.line([px - r, py + r, px + r, py - r], fill=colours[name], width=2)
        sheet.paste(tile, (x0, y0))
    sheet.save(path)


def main(argv=None):
    args = parse_args(argv)
    args.out_dir = os.path.abspath(args.out_dir)
    try:
        import torch
    except ModuleNotFoundError:
        raise SystemExit('train_vision.py needs PyTorch: pip install "orrb[rl]" '
                         "(for torch's CPU build, install torch first from PyTorch's CPU-only wheel index)") from None

    torch.set_num_threads(args.threads)
    os.makedirs(args.out_dir, exist_ok=True)
    total_started = time.perf_counter()
    scene = Scene(args.position_noise)
    print(f"train_vision: {args.train_images} images x {args.repeats} steps per model, {args.image_size} px, "
          f"batch {args.batch_size}, {args.workers} render servers, torch threads {args.threads}", flush=True)

    t = time.perf_counter()
    tests = {
        "demo_keras (fixed seeds)": test_set("randomized", args, scene, args.out_dir, 100),
        "held-out domain": test_set("heldout", args, scene, args.out_dir, 200),
        "unrandomized scene": test_set("unrandomized", args, scene, args.out_dir, 300),
    }
    test_render_s = time.perf_counter() - t
    print(f"rendered 3 test sets of {args.test_images} images in {test_render_s:.0f} s", flush=True)

    models, train_info = {}, {}
    for offset, kind in ((0, "randomized"), (10, "unrandomized")):
        print(f"training the {kind} model", flush=True)
        models[kind], train_info[kind] = train(kind, args, scene, args.out_dir, offset, torch)

    results = {}
    baseline = {}
    train_mean = np.concatenate([tests["demo_keras (fixed seeds)"][1]]).mean(axis=0)
    for test_name, (images, true) in tests.items():
        baseline[test_name] = float(pixel_errors(np.broadcast_to(train_mean, true.shape), true, args.image_size).mean())
        for kind, model in models.items():
            err = pixel_errors(predict(torch, model, images), true, args.image_size)
            results[(kind, test_name)] = (float(err.mean()), float(np.median(err)))

    test_names = list(tests)
    width = max(len(n) for n in test_names)
    print()
    print(f"cube position error on {CAMERA} ({args.image_size}x{args.image_size} px): mean / median, pixels")
    print(f"{'test set':<{width}}  {'randomized':>16}  {'unrandomized':>16}  {'predict-the-mean':>16}")
    for name in test_names:
        cells = [f"{results[(k, name)][0]:7.2f} / {results[(k, name)][1]:6.2f}" for k in models]
        print(f"{name:<{width}}  {cells[0]:>16}  {cells[1]:>16}  {baseline[name]:16.2f}")
    for kind, info in train_info.items():
        print(f"{kind}: trained in {info['train_s']:.0f} s (waiting for renders {info['render_wait_s']:.0f} s), "
              f"final train loss {info['final_loss']:.2f} px")

    held_images, held_true = tests["held-out domain"]
    plot = os.path.join(args.out_dir, "train_vision_predictions.png")
    save_plot(plot, held_images, held_true, {k: predict(torch, m, held_images) for k, m in models.items()})
    total_s = time.perf_counter() - total_started
    summary = {
        "settings": {k: v for k, v in vars(args).items()},
        "errors_px": {f"{k} on {n}": {"mean": v[0], "median": v[1]} for (k, n), v in results.items()},
        "predict_the_mean_px": baseline,
        "train": train_info, "test_render_s": test_render_s, "total_s": total_s,
    }
    with open(os.path.join(args.out_dir, "train_vision_results.json"), "w") as f:
        json.dump(summary, f, indent=2)
    print(f"wrote {plot} and {os.path.join(args.out_dir, 'train_vision_results.json')}; total {total_s:.0f} s")
    better = results[("randomized", "held-out domain")][0] < results[("unrandomized", "held-out domain")][0]
    print(f"randomized model better on the held-out domain: {better}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
