#!/usr/bin/env python
"""Dactyl vision task: the cube's 3-D position and orientation from three cameras.

OpenAI's Dactyl estimated the block's pose from three cameras with a network trained only
on randomized renders. This example does the same with orrb: the estimator of
``pose_model.py`` (one shared convolutional tower per camera, heads for the position in
metres and a unit quaternion, a loss that treats q and -q alike) is trained on
``vision_cam_left``, ``vision_cam_right`` and ``vision_cam_top`` renders streamed from a
pool of render servers, with fresh states and fresh randomization for every batch
(``render_batch_async`` keeps the next batches rendering while the model trains).

Each camera is rendered at ``--image-size`` (128 px) and the network sees the square window
of ``--crop`` of the image (the middle half: 64 px) around where the cube rests in that
camera, so the cube covers about 30 px of the network's input: twice the detail of the whole
image at 64 px, for the same cost (rendering 128 px costs llvmpipe about what 64 px does).

Two copies of the same network, with the same budget:

- ``randomized``: with ``--train-randomization wide`` (the default), the Dactyl randomization
  (``assets/dactyl.renderer_config.json``: camera jitter, lighting rig, light and material
  colours, the cube's calibrated colours perturbed, post-processing) with wider colour ranges
  (colour grading, coloured lights, grain, the cube's face colours and gloss; ``WIDE`` below);
  with ``dactyl``, the Dactyl chain as it is;
- ``unrandomized``: the same scene with no randomization.

Both are tested on fixed sets (their own states and seeds, the same for both models):

- ``dactyl (fixed seeds)``: the Dactyl randomization;
- ``held-out domain``: the appearance of ``assets/heldout.renderer_config.json`` (twice the
  camera jitter, a low coloured two-light rig, other materials, stronger colour grading and
  grain), with the cube's face colours kept near their calibration (hue within +-0.04
  instead of any hue: the faces' colours are how the pose is read, as they were for Dactyl's
  real cube) and without the file's calibration offset of the left camera;
- ``held-out, left camera moved``: the same with that offset (the left camera 3-4 cm away
  and turned ~3 degrees from where training saw it: a calibration error, which shifts that
  camera's view of the cube by ~5 cm);
- ``held-out as shipped``: the file as it is (the offset, and every face any hue);
- ``unrandomized scene``: no randomization.

States: the hand's joints uniform in their relaxed ranges, the cube within
``--position-noise`` metres of its rest position on the palm in each axis, with a uniformly
random orientation (``orrb.dataset.sample_states``). Prints a table of position (mm) and
orientation (degrees) errors, writes ``train_pose_results.json``, a picture of predictions
on held-out images and, with ``--save``, the randomized model (load it with
``pose_model.load_pose_model``).

Usage:
    python examples/train_pose.py --save pose.pt         # defaults: about 35 min on 2 cores
    python examples/train_pose.py --quick                # about a minute: a smoke test
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import sys
import time

import numpy as np

import orrb
from orrb.config import RenderSettings
from orrb.dataset import sample_states
from orrb.scene import Mapping, compile_spec, load_spec

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from pose_model import (PoseModel, build_network, camera_windows, images_to_tensor,  # noqa: E402
                        orientation_error_deg, position_error_mm, quaternion_loss, quaternion_to_matrix)

CAMERAS = ["vision_cam_left", "vision_cam_right", "vision_cam_top"]
ASSETS = orrb.utils.package_relative_path("assets")
TEST_SETS = ("dactyl (fixed seeds)", "held-out domain", "held-out, left camera moved", "held-out as shipped",
             "unrandomized scene")
QUICK = {"steps": 150, "repeats": 3, "test_samples": 16, "image_size": 96, "batch_size": 16, "width": 8,
         "workers": 0}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--steps", type=int, default=7000, help="optimizer steps per model")
    p.add_argument("--repeats", type=int, default=4, help="optimizer steps on each streamed batch")
    p.add_argument("--batch-size", type=int, default=32, help="samples per render request and per step")
    p.add_argument("--image-size", type=int, default=128, help="render width and height (px)")
    p.add_argument("--crop", type=float, default=0.5,
                   help="the network sees a window of this fraction of each image around where the cube rests "
                   "(1: the whole image); with --image-size 128, 64 px windows")
    p.add_argument("--train-randomization", choices=("wide", "dactyl"), default="wide",
                   help="the randomized model's chain: 'dactyl' is assets/dactyl.renderer_config.json, 'wide' the "
                   "same with wider colour ranges (colour grading, coloured lights, grain, the cube's materials)")
    p.add_argument("--width", type=int, default=16, help="channels of the tower's first layers")
    p.add_argument("--test-samples", type=int, default=256, help="three-camera samples per test set")
    p.add_argument("--msaa", type=int, default=0, help="multisample anti-aliasing samples (0: off, 2x faster)")
    p.add_argument("--workers", type=int, default=2, help="render server processes (0: render in this process)")
    p.add_argument("--base-port", type=int, default=15900, help="first server port")
    p.add_argument("--device", default="auto",
                   help="torch device of the networks: 'auto' (a CUDA GPU when torch sees one, else the CPU), "
                   "'cpu', 'cuda', 'cuda:1', ...")
    p.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads (1: the render servers use the other cores; more threads than free "
                   "cores make torch much slower)")
    p.add_argument("--lr", type=float, default=1e-3, help="Adam peak learning rate (one-cycle schedule)")
    p.add_argument("--position-noise", type=float, default=0.02, help="cube position noise per axis (m, half width)")
    p.add_argument("--seed", type=int, default=0, help="seed of states, render seeds and weights")
    p.add_argument("--out-dir", default="train_pose_out", help="where the plot and results go")
    p.add_argument("--save", default=None, help="save the randomized model here (load with pose_model.load_pose_model)")
    p.add_argument("--quick", action="store_true",
                   help="a smoke test: " + ", ".join(f"--{k.replace('_', '-')} {v}" for k, v in QUICK.items()))
    args = p.parse_args(argv)
    if args.quick:
        for key, value in QUICK.items():
            setattr(args, key, value)
    return args


# -- data ------------------------------------------------------------------------------------------
# The ``wide`` training randomization: the Dactyl chain with these properties changed, per component.
# Colour grading, light colours, grain and the cube's materials vary more than in the Dactyl chain,
# so that a model cannot lean on exact colours: the red, orange and yellow faces are only 23-30
# degrees of hue apart. The colour grading and light colours cover the held-out chain's; the grain
# and the cube's materials stay short of its extremes (grain up to 0.1 against 0.12, the faces' hue
# within 0.03 against 0.04, saturation and value within 0.25 against 0.3, glossiness up to 0.7
# against 0.8), and the lighting rig, the other materials and the camera jitter stay the Dactyl
# chain's.
WIDE = {
    "post_processing_randomizer": {"cg_min_hue_shift": -30.0, "cg_max_hue_shift": 30.0,
                                   "cg_min_saturation": -30.0, "cg_max_saturation": 30.0,
                                   "cg_min_contrast": -35.0, "cg_max_contrast": 35.0,
                                   "cg_min_brightness": -25.0, "cg_max_brightness": 25.0,
                                   "cg_min_temperature": -35.0, "cg_max_temperature": 35.0,
                                   "cg_min_tint": -15.0, "cg_max_tint": 15.0,
                                   "grain_min_intensity": 0.0, "grain_max_intensity": 0.1,
                                   "grain_min_size": 1.0, "grain_max_size": 2.0},
    "light_randomizer": {"randomize_hue": True},
    "cube_face_randomizer": {"hue_radius": 0.03, "saturation_radius": 0.25, "value_radius": 0.25,
                             "min_metallic": 0.0, "max_metallic": 0.5, "min_glossiness": 0.0, "max_glossiness": 0.7},
}


def renderer_configs(out_dir: str, train_randomization: str = "wide") -> dict[str, str]:
    """Component chain files of the training kinds and test sets (written to ``out_dir`` when derived)."""
    dactyl = os.path.join(ASSETS, "dactyl.renderer_config.json")
    heldout = os.path.join(ASSETS, "heldout.renderer_config.json")

    def save(config: orrb.RendererConfig, name: str) -> str:
        path = os.path.join(out_dir, name)
        config.save(path)
        return path

    # the wide training randomization
    wide = orrb.RendererConfig.load(dactyl)
    for name, values in WIDE.items():
        wide[name].set(**values)
    wide_path = save(wide, "wide.renderer_config.json")
    # unrandomized: only the tracker and the hidden touch sites of the Dactyl chain
    plain = orrb.RendererConfig([orrb.RendererConfig.load(dactyl)[name] for name in ("tracker", "hide_touch_sensors")])
    plain_path = save(plain, "unrandomized.renderer_config.json")
    # held-out variants: the cube's face colours near their calibration (hue within +-0.04), with
    # and without the left camera's calibration offset
    held = orrb.RendererConfig.load(heldout)
    held["cube_face_randomizer"].set(hue_radius=0.04)
    moved_path = save(held, "heldout_left_camera_moved.renderer_config.json")
    for spec in [spec for spec in held if spec.type == "CameraCalibrator"]:
        held.remove(spec.name)
    kept_path = save(held, "heldout_domain.renderer_config.json")
    return {"randomized": wide_path if train_randomization == "wide" else dactyl, "unrandomized": plain_path,
            TEST_SETS[0]: dactyl, TEST_SETS[1]: kept_path,
            TEST_SETS[2]: moved_path, TEST_SETS[3]: heldout, TEST_SETS[4]: plain_path}


class Scene:
    """Request states of the Dactyl scene and the cube's pose in each."""

    def __init__(self, position_noise: float):
        import mujoco

        xml = os.path.join(ASSETS, "dactyl.xml")
        self.model = compile_spec(load_spec(xml), xml)
        self.mapping = Mapping(self.model, os.path.join(ASSETS, "dactyl.mapping"))
        self.position_noise = position_noise
        m = self.model
        cube = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_BODY, "cube")
        joints = {name: mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_JOINT, name)
                  for name in ("cube:cube_tx", "cube:cube_ty", "cube:cube_tz", "cube:cube_rot")}
        if cube < 0 or min(joints.values()) < 0 or m.body_parentid[cube] != 0:
            raise RuntimeError("dactyl.xml lacks the cube body with its slide and ball joints at world level")
        column = np.full(m.nq, -1)
        column[self.mapping.dst] = self.mapping.src  # model qpos address -> request column
        self._slides = column[[m.jnt_qposadr[joints[f"cube:cube_t{a}"]] for a in "xyz"]]
        self._ball = column[m.jnt_qposadr[joints["cube:cube_rot"]]] + np.arange(4)
        self._rest = m.body_pos[cube].copy()
        self._check(cube)

    @property
    def rest_position(self) -> np.ndarray:
        """The cube's rest position in the world, ``float32 [3]`` metres."""
        return self._rest.astype(np.float32)

    def states(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``float64 [n, K]`` request states."""
        return sample_states(self.model, self.mapping, n, rng, position_noise=self.position_noise)

    def poses(self, states: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The cube's world position ``float32 [n, 3]`` (m) and unit quaternion ``float32 [n, 4]``
        (w >= 0) in ``states`` (the slides move along world axes; the body is not rotated)."""
        q = states[:, self._ball]
        q = q / np.linalg.norm(q, axis=1, keepdims=True)
        q = q * np.where(q[:, :1] < 0, -1, 1)
        return (self._rest + states[:, self._slides]).astype(np.float32), q.astype(np.float32)

    def _check(self, cube: int) -> None:
        """The labels agree with MuJoCo's kinematics on a few states."""
        import mujoco

        data = mujoco.MjData(self.model)
        states = self.states(4, np.random.default_rng(123))
        position, quaternion = self.poses(states)
        for i, state in enumerate(states):
            data.qpos[:] = self.model.qpos0
            data.qpos[self.mapping.dst] = state[self.mapping.src]
            mujoco.mj_kinematics(self.model, data)
            if (np.abs(data.xpos[cube] - position[i]).max() > 1e-6
                    or orientation_error_deg(data.xquat[cube][None], quaternion[i][None])[0] > 1e-3):
                raise RuntimeError("the cube's pose labels disagree with MuJoCo's kinematics")

    def rest_in_images(self) -> np.ndarray:
        """Where the cube's rest position is in each nominal camera's image: ``[cameras, 2]``,
        x right, y down, in [0, 1]."""
        return np.concatenate([project(self.rest_position[None].astype(np.float64), camera, 1.0)
                               for camera in self.cameras()])

    def cameras(self) -> list[tuple[np.ndarray, np.ndarray, float]]:
        """Nominal ``(position [3], rotation [3, 3] camera-to-world, fovy degrees)`` per camera."""
        import mujoco

        data = mujoco.MjData(self.model)
        mujoco.mj_kinematics(self.model, data)
        mujoco.mj_camlight(self.model, data)
        out = []
        for name in CAMERAS:
            c = mujoco.mj_name2id(self.model, mujoco.mjtObj.mjOBJ_CAMERA, name)
            out.append((data.cam_xpos[c].copy(), data.cam_xmat[c].reshape(3, 3).copy(), float(self.model.cam_fovy[c])))
        return out


def make_renderer(chain_path: str, args, name: str, port_offset: int):
    config = orrb.RemoteRendererConfig(
        camera_names=CAMERAS, image_width=args.image_size, image_height=args.image_size,
        model_xml_path="dactyl.xml", model_mapping_path="dactyl.mapping", renderer_config_path=chain_path,
        asset_basedir=ASSETS, render_settings=RenderSettings(msaa_samples=args.msaa))
    if args.workers == 0:  # in this process (small runs: no server start-up)
        return orrb.LocalRenderer(config).start()
    servers = orrb.utils.build_server_configs(1, args.workers, args.base_port + port_offset)
    return orrb.RemoteRenderer(f"train_pose_{name}", servers, config).start()


def stream(renderer, scene: Scene, batches: int, batch_size: int, rng: np.random.Generator, seed0: int,
           in_flight: int = 3):
    """Yields ``(images {camera: uint8 [B, S, S, 3]}, position float32 [B, 3], quaternion float32 [B, 4],
    cube float32 [B, cameras, 2])`` (``cube``: the tracker's image position of the cube, x right, y down, in [0, 1]),
    keeping ``in_flight`` batches queued on the pool so the servers render while the caller trains."""
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
        position, quaternion = scene.poses(response["qpos"])  # the reply carries its request's states
        cube = np.stack([response[f"tracker_cube_X_{name}"] for name in CAMERAS], axis=1)  # [B, 3, 2] in [0, 1]
        yield {name: response[name] for name in CAMERAS}, position, quaternion, cube


def test_set(name: str, chain: str, args, scene: Scene, port_offset: int):
    """A fixed test set: its own states and seeds, the same for every model."""
    rng = np.random.default_rng([args.seed, 1000 + port_offset])
    renderer = make_renderer(chain, args, f"test{port_offset}", port_offset)
    try:
        parts = list(stream(renderer, scene, -(-args.test_samples // args.batch_size), args.batch_size, rng,
                            seed0=10**9 + 10**6 * port_offset))
    finally:
        renderer.shutdown()
    n = args.test_samples
    images = {c: np.concatenate([p[0][c] for p in parts])[:n] for c in CAMERAS}  # [n, S, S, 3]
    return images, np.concatenate([p[1] for p in parts])[:n], np.concatenate([p[2] for p in parts])[:n]


# -- training --------------------------------------------------------------------------------------
def torch_device(name: str, torch):
    """The ``torch.device`` that ``--device name`` asks for ('auto': a CUDA GPU when torch sees one)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise SystemExit(f"--device {name!r} is not a torch device; expected 'auto', 'cpu', 'cuda' or 'cuda:N'") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit(f"--device {name!r}: this torch sees no CUDA GPU; expected 'auto' or 'cpu' on this machine")
    return device


def train(kind: str, chain: str, args, scene: Scene, port_offset: int, torch, device):
    torch.manual_seed(args.seed)
    windows = camera_windows(scene.rest_in_images(), args.crop, args.image_size)
    input_size = int(round(windows[0][2] * args.image_size))
    corners = torch.tensor([w[:2] for w in windows], dtype=torch.float32, device=device)  # [cameras, 2]
    network = build_network(len(CAMERAS), args.width, position_mean=scene.rest_position.tolist(),
                            position_scale=max(args.position_noise, 1e-3)).to(device)
    optimizer = torch.optim.AdamW(network.parameters(), lr=args.lr, weight_decay=1e-4)
    batches = max(1, -(-args.steps // args.repeats))
    steps = batches * args.repeats
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=args.lr, total_steps=steps, pct_start=0.1)
    rng = np.random.default_rng([args.seed, port_offset])
    renderer = make_renderer(chain, args, kind, port_offset)
    started = time.perf_counter()
    wait = 0.0
    losses = []
    try:
        network.train()
        data = stream(renderer, scene, batches, args.batch_size, rng, seed0=port_offset * 10**8)
        for b in range(batches):
            t = time.perf_counter()
            images, position, quaternion, cube = next(data)
            wait += time.perf_counter() - t
            x = images_to_tensor([images[c] for c in CAMERAS], input_size, windows).to(device)
            p_true, q_true = torch.from_numpy(position).to(device), torch.from_numpy(quaternion).to(device)
            cube_true = (torch.from_numpy(cube).to(device) - corners) / windows[0][2] * 2 - 1  # in the windows: [-1, 1]
            for _ in range(args.repeats):
                p, q, cube_pred = network.forward_with_cube(x)
                # position in centimetres (smooth L1), orientation as the chordal distance (0..1.4), and the
                # auxiliary cube position per image in tenths of the image (smooth L1)
                p_loss = torch.nn.functional.smooth_l1_loss(p * 100, p_true * 100)
                q_loss = quaternion_loss(q, q_true)
                loss = p_loss + q_loss + torch.nn.functional.smooth_l1_loss(cube_pred * 10, cube_true * 10)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                scheduler.step()
                losses.append((p_loss.item(), q_loss.item()))
            if (b + 1) % max(1, batches // 10) == 0 or b + 1 == batches:
                recent = np.mean(losses[-40:], axis=0)
                print(f"  [{kind}] batch {b + 1}/{batches}  position loss {recent[0]:.3f} cm  "
                      f"orientation loss {recent[1]:.3f}  {time.perf_counter() - started:.0f} s", flush=True)
    finally:
        renderer.shutdown()
    losses = np.asarray(losses)
    return PoseModel(network, CAMERAS, args.image_size, windows, input_size), {
        "train_s": time.perf_counter() - started, "render_wait_s": wait, "samples": batches * args.batch_size,
        "position_loss": losses[:, 0].tolist(), "orientation_loss": losses[:, 1].tolist()}


# -- reporting -------------------------------------------------------------------------------------
def project(points: np.ndarray, camera, size: int) -> np.ndarray:
    """Pixel ``(x right, y down)`` of world points ``[N, 3]`` in a ``size`` square image of ``camera``."""
    position, rotation, fovy = camera
    local = (points - position) @ rotation  # camera frame: x right, y up, looking along -z
    f = size / 2 / np.tan(np.radians(fovy) / 2)
    depth = np.maximum(-local[:, 2], 1e-6)
    return np.stack([size / 2 + f * local[:, 0] / depth, size / 2 - f * local[:, 1] / depth], axis=1)


def save_plot(path: str, scene: Scene, images: dict, position: np.ndarray, quaternion: np.ndarray,
              predictions: dict[str, tuple[np.ndarray, np.ndarray]], windows, count: int = 6):
    """Held-out samples (one row each, three cameras) with the cube's axes projected with the
    nominal cameras: truth in white, each model's prediction in its colour; a grey square marks
    the window the network sees (``windows``: ``(x0, y0, size)`` per camera, fractions)."""
    from PIL import Image, ImageDraw

    colours = {"truth": (255, 255, 255), "randomized": (40, 200, 255), "unrandomized": (255, 60, 60)}
    size = images[CAMERAS[0]].shape[1] * max(1, -(-192 // images[CAMERAS[0]].shape[1]))  # tiles of >= 192 px
    count = min(count, len(position))
    sheet = Image.new("RGB", (len(CAMERAS) * (size + 4) + 4, count * (size + 4) + 4 + 30), (30, 30, 30))
    ImageDraw.Draw(sheet).text((4, 2), "held-out domain: the cube's axes (4 cm), projected with the nominal cameras\n"
                               "white = truth, blue = randomized model, red = unrandomized model, grey = what the "
                               "network sees", fill=(230, 230, 230))
    cameras = scene.cameras()
    poses = {"truth": (position, quaternion), **predictions}
    for i in range(count):
        for c, name in enumerate(CAMERAS):
            tile = Image.fromarray(images[name][i]).resize((size, size), Image.NEAREST)
            draw = ImageDraw.Draw(tile)
            x0, y0, w = (np.asarray(windows[c]) * size).tolist()
            draw.rectangle([x0, y0, x0 + w - 1, y0 + w - 1], outline=(150, 150, 150))
            for who, (p, q) in poses.items():
                axes = quaternion_to_matrix(q[i][None])[0].T * 0.04  # rows: the cube's x, y, z axes
                pixels = project(np.vstack([p[i][None], p[i] + axes]), cameras[c], size)
                for k in range(3):
                    draw.line([tuple(pixels[0]), tuple(pixels[k + 1])], fill=colours[who], width=2)
            sheet.paste(tile, (4 + c * (size + 4), 34 + i * (size + 4)))
    sheet.save(path)


def main(argv=None):
    args = parse_args(argv)
    args.out_dir = os.path.abspath(args.out_dir)
    try:
        import torch
    except ModuleNotFoundError:
        raise SystemExit('train_pose.py needs PyTorch: pip install "orrb[rl]"') from None

    torch.set_num_threads(args.threads)
    device = torch_device(args.device, torch)
    os.makedirs(args.out_dir, exist_ok=True)
    total_started = time.perf_counter()
    scene = Scene(args.position_noise)
    chains = renderer_configs(args.out_dir, args.train_randomization)
    print(f"train_pose: {args.steps} steps per model ({args.repeats} per streamed batch of {args.batch_size}), "
          f"{args.image_size} px renders seen through {args.crop:g} windows, tower width {args.width}, "
          f"'{args.train_randomization}' randomization, {args.workers} render servers, "
          f"torch on {device}" + (f", torch threads {args.threads}" if device.type == "cpu" else ""), flush=True)

    t = time.perf_counter()
    tests = {name: test_set(name, chains[name], args, scene, 100 * (k + 1)) for k, name in enumerate(TEST_SETS)}
    test_render_s = time.perf_counter() - t
    print(f"rendered {len(tests)} test sets of {args.test_samples} samples in {test_render_s:.0f} s", flush=True)

    models, train_info = {}, {}
    for offset, kind in ((0, "randomized"), (10, "unrandomized")):
        print(f"training the {kind} model", flush=True)
        models[kind], train_info[kind] = train(kind, chains[kind], args, scene, offset, torch, device)

    errors, predictions = {}, {}
    for test_name, (images, position, quaternion) in tests.items():
        for kind, model in models.items():
            p, q = model.predict(images)
            predictions[(kind, test_name)] = (p, q)
            pos, ori = position_error_mm(p, position), orientation_error_deg(q, quaternion)
            errors[f"{kind} on {test_name}"] = {
                "position_mm": {"mean": float(pos.mean()), "median": float(np.median(pos))},
                "orientation_deg": {"mean": float(ori.mean()), "median": float(np.median(ori))}}
    # what knowing nothing gives: the rest position and the identity orientation
    held_images, held_position, held_quaternion = tests["held-out domain"]
    baseline = {"position_mm": float(position_error_mm(np.broadcast_to(scene.rest_position, held_position.shape), held_position).mean()),
                "orientation_deg": float(orientation_error_deg(
                    np.broadcast_to([1.0, 0, 0, 0], held_quaternion.shape), held_quaternion).mean())}

    width = max(len(n) for n in TEST_SETS)
    print()
    print(f"cube pose error from {len(CAMERAS)} cameras at {args.image_size}x{args.image_size} px, "
          f"mean / median (position mm, orientation degrees)")
    print(f"{'test set':<{width}}  {'randomized':>27}  {'unrandomized':>27}")
    for name in TEST_SETS:
        cells = []
        for kind in models:
            e = errors[f"{kind} on {name}"]
            cells.append(f"{e['position_mm']['mean']:5.1f} / {e['position_mm']['median']:5.1f} mm "
                         f"{e['orientation_deg']['mean']:5.1f} / {e['orientation_deg']['median']:5.1f}°")
        print(f"{name:<{width}}  {cells[0]:>27}  {cells[1]:>27}")
    print(f"guessing the rest pose: {baseline['position_mm']:.1f} mm, {baseline['orientation_deg']:.1f}°")
    for kind, info in train_info.items():
        print(f"{kind}: {info['samples']} samples in {info['train_s']:.0f} s (waiting for renders "
              f"{info['render_wait_s']:.0f} s)")

    plot = os.path.join(args.out_dir, "train_pose_predictions.png")
    save_plot(plot, scene, held_images, held_position, held_quaternion,
              {kind: predictions[(kind, "held-out domain")] for kind in models}, models["randomized"].windows)
    check = os.path.join(args.out_dir, "heldout_check.npz")  # lets a reloaded model be compared
    np.savez_compressed(check, **{c: held_images[c][:8] for c in CAMERAS},
                        position=predictions[("randomized", "held-out domain")][0][:8],
                        quaternion=predictions[("randomized", "held-out domain")][1][:8])
    if args.save:
        models["randomized"].save(args.save, trained_on=os.path.basename(chains["randomized"]), steps=args.steps)
        print(f"saved the randomized model to {args.save}")
    total_s = time.perf_counter() - total_started
    summary = {"settings": vars(args), "errors": errors, "rest_pose_baseline_on_heldout": baseline,
               "train": train_info, "test_render_s": test_render_s, "total_s": total_s}
    with open(os.path.join(args.out_dir, "train_pose_results.json"), "w") as f:
        json.dump(summary, f, indent=2)
    print(f"wrote {plot} and {os.path.join(args.out_dir, 'train_pose_results.json')}; total {total_s:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
