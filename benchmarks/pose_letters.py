"""Can a pose network read the cube's letters? The cube's orientation from crops centred on it.

``assets/heldout.renderer_config.json`` gives each of the cube's faces any hue, so only the
letters tell the faces apart; ``examples/train_pose.py`` reads the faces' colours and is at
chance there. This probe trains the orientation alone, from a square crop of each camera's
image centred on the cube (the renderer's tracker label plus uniform noise: a perfect
locator), on the wide training chain of ``train_pose.py`` with the cube's faces given the
held-out file's ranges (any hue), in two phases:

1. the letters: for ``--letter-steps`` steps only a per-camera classification of the face
   turned towards the camera (cross-entropy over six faces), which teaches the shared tower
   the six letters;
2. the rotation: from then on also the world rotation (a 6-D output, two matrix columns made
   orthonormal) and, per camera, the rotation in that camera's frame, each with the squared
   distance between rotation matrices.

With ``--letter-steps 0`` every loss runs from the start (the control). Prints the losses and,
every tenth of the run, the mean / median orientation error (degrees) on two fixed test sets:
``held-out domain`` (the held-out appearance with the faces' calibrated hues) and ``faces any
hue`` (the held-out file without its camera offset). Position is not estimated.

    python benchmarks/pose_letters.py [--steps 4500] [--letter-steps 1800] [--quick]
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time

import numpy as np

import orrb  # first: sets MUJOCO_GL=egl before mujoco picks its GL backend

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "examples"))
import train_pose  # noqa: E402
from pose_model import quaternion_to_matrix  # noqa: E402

CAMERAS = train_pose.CAMERAS


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--steps", type=int, default=4500, help="optimizer steps in all")
    p.add_argument("--letter-steps", type=int, default=1800, help="steps of the letter classification alone")
    p.add_argument("--repeats", type=int, default=3, help="optimizer steps on each streamed batch")
    p.add_argument("--batch-size", type=int, default=32, help="three-camera samples per batch")
    p.add_argument("--image-size", type=int, default=200, help="render width and height (px)")
    p.add_argument("--crop", type=int, default=64, help="crop size (px) around the cube in each image")
    p.add_argument("--crop-noise", type=float, default=0.02,
                   help="the crop centre's uniform noise, half width as a fraction of the image")
    p.add_argument("--width", type=int, default=32, help="channels of the tower's first layers (then 2x, 4x)")
    p.add_argument("--lr", type=float, default=1e-3, help="AdamW rate (warm-up, constant, cosine over the last 40 %%)")
    p.add_argument("--test-samples", type=int, default=128, help="samples per test set")
    p.add_argument("--workers", type=int, default=2, help="render server processes (0: in this process)")
    p.add_argument("--base-port", type=int, default=16900, help="first server port")
    p.add_argument("--out-dir", default="pose_letters_out", help="where the chains are written")
    p.add_argument("--quick", action="store_true", help="a smoke test: 60 steps, 30 of letters, 32 test samples")
    args = p.parse_args(argv)
    if args.quick:
        args.steps, args.letter_steps, args.test_samples, args.workers = 60, 30, 32, 0
    return args


def chains(out_dir: str) -> dict[str, str]:
    """The training chain and the two test chains (paths)."""
    paths = train_pose.renderer_configs(out_dir, "wide")
    held = orrb.RendererConfig.load(os.path.join(train_pose.ASSETS, "heldout.renderer_config.json"))
    faces = {k: v for k, v in held["cube_face_randomizer"].properties.items() if k != "material_prefix"}
    train = orrb.RendererConfig.load(paths["randomized"])
    train["cube_face_randomizer"].set(**faces)
    for spec in [spec for spec in held if spec.type == "CameraCalibrator"]:
        held.remove(spec.name)
    out = {"train": os.path.join(out_dir, "letters_train.renderer_config.json"),
           "faces any hue": os.path.join(out_dir, "heldout_no_offset.renderer_config.json"),
           "held-out domain": paths["held-out domain"]}
    train.save(out["train"])
    held.save(out["faces any hue"])
    return out


def crops(images: dict, cube: np.ndarray, size: int, crop: int, noise: float, rng: np.random.Generator):
    """``float32 [B, cameras, 3, crop, crop]`` in [0, 1]: from each camera's ``uint8 [B, S, S, 3]``
    image, the square around the cube's image position ``cube`` (``[B, cameras, 2]`` in [0, 1],
    x right, y down) moved by uniform noise; edges are repeated where the square leaves the image."""
    import torch

    centre = cube * size + rng.uniform(-noise, noise, cube.shape) * size
    corner = np.clip(np.rint(centre - crop / 2).astype(int), -crop, size) + crop  # in the padded image
    rows = corner[..., 1, None] + np.arange(crop)  # [B, cameras, crop]
    cols = corner[..., 0, None] + np.arange(crop)
    b = np.arange(cube.shape[0])[:, None, None]
    out = np.stack([np.pad(images[name], ((0, 0), (crop, crop), (crop, crop), (0, 0)), mode="edge")
                    [b, rows[:, c, :, None], cols[:, c, None, :]] for c, name in enumerate(CAMERAS)], axis=1)
    return torch.from_numpy(out).permute(0, 1, 4, 2, 3).float().div_(255.0)


def build_network(width: int):
    """A shared plain tower per camera; world rotation, camera-frame rotations, facing face."""
    import torch
    nn = torch.nn

    def conv(cin, cout, stride):
        return [nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]

    w = width

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.trunk = nn.Sequential(*conv(3, w, 2), *conv(w, w, 1), *conv(w, 2 * w, 2), *conv(2 * w, 2 * w, 1),
                                       *conv(2 * w, 4 * w, 2), *conv(4 * w, 4 * w, 1))
            self.layout = nn.Sequential(nn.Conv2d(4 * w, 16, 1), nn.ReLU(inplace=True), nn.AdaptiveAvgPool2d(4),
                                        nn.Flatten())  # where the letters' strokes lie
            features = 4 * w + 16 * 16
            self.per_camera = nn.Linear(features, 6 + 6)  # camera-frame rotation (6-D), facing face logits
            self.world = nn.Sequential(nn.Linear(len(CAMERAS) * features, 512), nn.ReLU(inplace=True),
                                       nn.Linear(512, 6))

        def forward(self, x):
            """``[B, cameras, 3, S, S]`` -> ``(world 6-D [B, 6], per camera [B, cameras, 12])``."""
            b = x.shape[0]
            f = self.trunk(x.flatten(0, 1))
            features = torch.cat([f.mean((2, 3)), self.layout(f)], dim=1)
            return self.world(features.reshape(b, -1)), self.per_camera(features).reshape(b, x.shape[1], 12)

    return Net()


def rotation_6d(v):
    """``[N, 6]`` -> rotation matrices ``[N, 3, 3]`` (columns: the first 3-vector normalized, the
    second made orthogonal to it and normalized, their cross product)."""
    import torch

    x = torch.nn.functional.normalize(v[:, :3], dim=1)
    y = torch.nn.functional.normalize(v[:, 3:] - (x * v[:, 3:]).sum(1, keepdim=True) * x, dim=1)
    return torch.stack([x, y, torch.cross(x, y, dim=1)], dim=-1)


def rotation_error_deg(pred: np.ndarray, true: np.ndarray) -> np.ndarray:
    """Angle (degrees) of the rotation between matrices ``[N, 3, 3]``: ``float64 [N]``."""
    cos = (np.einsum("nij,nij->n", np.asarray(pred, np.float64), np.asarray(true, np.float64)) - 1) / 2
    return np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))


def main(argv=None) -> None:
    args = parse_args(argv)
    import torch

    torch.set_num_threads(1)
    torch.manual_seed(0)
    os.makedirs(args.out_dir, exist_ok=True)
    scene = train_pose.Scene(0.02)
    paths = chains(args.out_dir)
    run = argparse.Namespace(image_size=args.image_size, msaa=0, workers=args.workers, base_port=args.base_port)
    camera_to_world = torch.tensor(np.stack([c[1] for c in scene.cameras()]), dtype=torch.float32)
    rng = np.random.default_rng(5)

    tests = {}
    for k, name in enumerate(("held-out domain", "faces any hue")):
        renderer = train_pose.make_renderer(paths[name], run, f"letters_test{k}", 100 * (k + 1))
        try:
            parts = list(train_pose.stream(renderer, scene, -(-args.test_samples // args.batch_size),
                                           args.batch_size, np.random.default_rng([0, 1000 + k]),
                                           seed0=10**9 + 10**6 * k))
        finally:
            renderer.shutdown()
        images = {c: np.concatenate([p[0][c] for p in parts]) for c in CAMERAS}
        x = crops(images, np.concatenate([p[3] for p in parts]), args.image_size, args.crop, args.crop_noise, rng)
        tests[name] = (x[:args.test_samples], np.concatenate([p[2] for p in parts])[:args.test_samples])

    network = build_network(args.width)
    optimizer = torch.optim.AdamW(network.parameters(), lr=args.lr, weight_decay=1e-4)
    batches = max(1, -(-args.steps // args.repeats))
    total = batches * args.repeats

    def rate(step):  # warm-up over 200 steps, constant, then a cosine over the last 40 %
        decay = max(0.0, (step - 0.6 * total) / (0.4 * total))
        return min(1.0, (step + 1) / 200) * 0.5 * (1 + math.cos(math.pi * decay))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, rate)

    def evaluate() -> str:
        network.eval()
        cells = []
        with torch.no_grad():
            for name, (x, quaternion) in tests.items():
                error = rotation_error_deg(rotation_6d(network(x)[0]).numpy(), quaternion_to_matrix(quaternion))
                cells.append(f"{name} {error.mean():.1f} / {np.median(error):.1f} deg")
        network.train()
        return ", ".join(cells)

    print(f"pose_letters: {total} steps ({args.letter_steps} of letters alone), {args.crop} px crops of "
          f"{args.image_size} px renders, width {args.width}", flush=True)
    renderer = train_pose.make_renderer(paths["train"], run, "letters_train", 0)
    started, step, log = time.perf_counter(), 0, []
    try:
        for b, (images, _, quaternion, cube) in enumerate(train_pose.stream(
                renderer, scene, batches, args.batch_size, np.random.default_rng(1), seed0=0)):
            x = crops(images, cube, args.image_size, args.crop, args.crop_noise, rng)
            world = torch.from_numpy(quaternion_to_matrix(quaternion).astype(np.float32))  # [B, 3, 3]
            camera = torch.einsum("kji,bjl->bkil", camera_to_world, world)  # camera-frame rotations [B, cameras, 3, 3]
            # the face turned towards each camera: the body axis (+-x, +-y, +-z) nearest the camera's +z
            facing = torch.cat([camera[:, :, 2, :], -camera[:, :, 2, :]], dim=-1).argmax(-1)
            for _ in range(args.repeats):
                world_6d, per_camera = network(x)
                letters = torch.nn.functional.cross_entropy(per_camera[..., 6:].flatten(0, 1), facing.flatten())
                world_loss = ((rotation_6d(world_6d) - world) ** 2).sum((1, 2)).mean()
                camera_loss = ((rotation_6d(per_camera[..., :6].flatten(0, 1)) - camera.flatten(0, 1)) ** 2
                               ).sum((1, 2)).mean()
                loss = letters + (world_loss + camera_loss if step >= args.letter_steps else 0.0)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                scheduler.step()
                step += 1
                log.append((letters.item(), world_loss.item(), camera_loss.item()))
            if (b + 1) % max(1, batches // 10) == 0 or b + 1 == batches:
                recent = np.mean(log[-90:], axis=0)  # the last 90 steps
                print(f"step {step}: letters {recent[0]:.3f} (chance 1.79), world {recent[1]:.3f}, "
                      f"camera {recent[2]:.3f} (chance 6)  {time.perf_counter() - started:.0f} s  {evaluate()}",
                      flush=True)
    finally:
        renderer.shutdown()


if __name__ == "__main__":
    main()
