"""A Dactyl-style cube pose estimator: the network, its losses and ``load_pose_model``.

The network sees three cameras (``vision_cam_left``, ``vision_cam_right``,
``vision_cam_top`` of orrb's Dactyl scene). Each image goes through the same
convolutional tower (shared weights); a tower ends in a spatial soft-argmax (where each
feature peaks: image coordinates), feature vectors pooled where attention maps peak (what
the cube looks like) and a coarse 4x4 grid of features (which face lies beside which).
Keypoint 0 is trained to sit on the cube (on the renderer's tracker labels, an auxiliary
loss) and is one of the pooling maps. The three cameras' features are concatenated, in
camera order, and two heads regress:

- the cube's position in the world frame, metres (``float32 [B, 3]``);
- its orientation in the world frame as a unit quaternion ``(w, x, y, z)``
  (``float32 [B, 4]``; q and -q are the same rotation, and the loss treats them alike).

Using a trained model needs only this file and torch::

    from pose_model import load_pose_model
    model = load_pose_model("pose.pt")
    position, quaternion = model.predict({name: images[name] for name in model.camera_names})

``images[name]`` is ``uint8 [B, H, W, 3]`` at any size. The network sees a square window
of each camera's image around where the cube rests (``model.windows``, fractions of the
image, so the same part of the view at any size), resized to ``model.input_size``: at the
default, the middle half of a 128 px render, so the cube covers about 30 px of a 64 px input.
``examples/train_pose.py`` trains and saves such a model (``--save``).
"""

from __future__ import annotations

import os

import numpy as np

__all__ = ["PoseModel", "build_network", "camera_windows", "load_pose_model", "orientation_error_deg",
           "position_error_mm", "quaternion_loss"]

# Saved-file format version: bump when the network's layout or the saved fields change.
FORMAT = 2


def _torch():
    try:
        import torch
    except ModuleNotFoundError:
        raise ModuleNotFoundError('the pose model needs PyTorch: pip install "orrb[rl]"') from None
    return torch


def build_network(cameras: int = 3, width: int = 32, position_mean=(0.0, 0.0, 0.0), position_scale: float = 0.02):
    """The estimator as a ``torch.nn.Module``.

    Args:
        cameras: how many images each sample has (one shared tower sees each).
        width: channels of the tower's first layers (later layers have 2x and 4x).
        position_mean: the world position (m) the position head is centred on.
        position_scale: metres per unit of the position head's raw output.

    ``forward(x)`` takes ``float32 [B, cameras, 3, S, S]`` in [0, 1] and returns
    ``(position [B, 3] metres, quaternion [B, 4] unit (w, x, y, z))``;
    ``forward_with_cube(x)`` adds the cube's image position per camera (an auxiliary output).
    """
    torch = _torch()
    nn = torch.nn

    def conv(cin, cout, stride=1):
        return [nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(cout),
                nn.ReLU(inplace=True)]

    class Tower(nn.Module):
        """One camera: ``[N, 3, S, S]`` -> ``[N, features]`` (keypoints and pooled appearance)."""

        def __init__(self):
            super().__init__()
            w = width
            # downsample early (x2, x4, x8): the cube covers a few dozen pixels
            self.trunk = nn.Sequential(
                nn.Conv2d(3, w, 5, stride=2, padding=2, bias=False), nn.BatchNorm2d(w), nn.ReLU(inplace=True),
                *conv(w, 2 * w, stride=2), *conv(2 * w, 2 * w), *conv(2 * w, 4 * w, stride=2), *conv(4 * w, 4 * w))
            self.keypoints = nn.Conv2d(4 * w, 2 * w, 1)  # one heat map per keypoint; map 0 is the cube
            self.attention = nn.Conv2d(4 * w, 3, 1)  # three more places to pool appearance from
            # where what is in the window, on a coarse 4x4 grid (which face is beside which)
            self.layout = nn.Sequential(nn.Conv2d(4 * w, w, 1, bias=False), nn.BatchNorm2d(w), nn.ReLU(inplace=True),
                                        nn.AdaptiveAvgPool2d(4), nn.Flatten())
            self.features = 2 * (2 * w) + 4 * (4 * w) + 16 * w

        def forward(self, x):
            """``[N, 3, S, S]`` -> ``(features [N, F], cube [N, 2])``: the cube's image position
            (keypoint 0) in [-1, 1], x right, y down."""
            f = self.trunk(x)
            n, c, h, w_ = f.shape
            heat = torch.softmax(self.keypoints(f).flatten(2), dim=2)  # [N, K, h*w]
            ys = (torch.arange(h, dtype=f.dtype, device=f.device) + 0.5) / h * 2 - 1
            xs = (torch.arange(w_, dtype=f.dtype, device=f.device) + 0.5) / w_ * 2 - 1
            px, py = heat @ xs.repeat(h), heat @ ys.repeat_interleave(w_)  # row-major maps: [N, K] each
            att = torch.cat([heat[:, :1], torch.softmax(self.attention(f).flatten(2), dim=2)], dim=1)
            pooled = torch.bmm(att, f.flatten(2).transpose(1, 2)).flatten(1)  # [N, 4 * c]: what the cube looks like
            return torch.cat([px, py, pooled, self.layout(f)], dim=1), torch.stack([px[:, 0], py[:, 0]], dim=1)

    class Estimator(nn.Module):
        def __init__(self):
            super().__init__()
            self.cameras = cameras
            self.tower = Tower()
            self.head = nn.Sequential(nn.Linear(cameras * self.tower.features, 512), nn.ReLU(inplace=True),
                                      nn.Linear(512, 256), nn.ReLU(inplace=True))
            self.position = nn.Linear(256, 3)
            self.orientation = nn.Linear(256, 4)
            self.register_buffer("position_mean", torch.tensor(position_mean, dtype=torch.float32))
            self.register_buffer("position_scale", torch.tensor(float(position_scale)))

        def forward(self, x):
            return self.forward_with_cube(x)[:2]

        def forward_with_cube(self, x):
            """``forward`` plus the cube's position in each image, ``[B, cameras, 2]`` in [-1, 1]
            (x right, y down): trained on the renderer's tracker labels, it teaches the towers
            early where the cube is."""
            b, k = x.shape[:2]
            feats, cube = self.tower(x.flatten(0, 1))
            h = self.head(feats.reshape(b, -1))  # cameras side by side, in order
            position = self.position_mean + self.position(h) * self.position_scale
            q = self.orientation(h)
            return position, q / q.norm(dim=1, keepdim=True).clamp_min(1e-6), cube.reshape(b, k, 2)

    return Estimator()


def quaternion_loss(pred, true, eps: float = 1e-4):
    """Mean chordal distance ``min(|p - q|, |p + q|)`` between batches of unit quaternions
    ``[B, 4]``: zero for the same rotation whichever sign either has, and close to half the
    rotation angle (radians) for small angles, so its gradient does not vanish near the answer
    (``eps`` keeps the square root differentiable at zero)."""
    return (2 - 2 * (pred * true).sum(dim=1).abs() + eps).sqrt().mean()


def orientation_error_deg(pred: np.ndarray, true: np.ndarray) -> np.ndarray:
    """Rotation angle (degrees) between unit quaternions ``[B, 4]`` (sign-free): ``float64 [B]``."""
    dot = np.abs(np.sum(np.asarray(pred, np.float64) * np.asarray(true, np.float64), axis=1))
    return np.degrees(2 * np.arccos(np.clip(dot, 0.0, 1.0)))


def position_error_mm(pred: np.ndarray, true: np.ndarray) -> np.ndarray:
    """Euclidean distance (mm) between positions ``[B, 3]`` in metres: ``float64 [B]``."""
    return 1000 * np.linalg.norm(np.asarray(pred, np.float64) - np.asarray(true, np.float64), axis=1)


class PoseModel:
    """A trained estimator, ready to predict.

    Attributes:
        camera_names: the cameras, in the order the network expects them.
        image_size: the square size (px) of the renders the network was trained on.
        windows: per camera, in ``camera_names`` order, the square window ``(x0, y0, size)``
            the network sees, as fractions of the image width and height (``(0, 0, 1)``: the
            whole image).
        input_size: the square size (px) each window is resized to for the network.
        network: the ``torch.nn.Module`` (in eval mode), on the device it predicts on.
    """

    def __init__(self, network, camera_names: list[str], image_size: int,
                 windows: list[tuple[float, float, float]] | None = None, input_size: int | None = None):
        self.network = network.eval()
        self.camera_names = list(camera_names)
        self.image_size = int(image_size)
        self.windows = [tuple(float(v) for v in w) for w in (windows or [(0.0, 0.0, 1.0)] * len(self.camera_names))]
        if len(self.windows) != len(self.camera_names):
            raise ValueError(f"got {len(self.windows)} windows for {len(self.camera_names)} cameras; expected one "
                             f"per camera")
        self.input_size = int(input_size or self.image_size)

    @property
    def device(self):
        """The ``torch.device`` the network runs on (``predict`` moves its inputs there)."""
        return next(self.network.parameters()).device

    def predict(self, images: dict[str, np.ndarray], batch_size: int = 64) -> tuple[np.ndarray, np.ndarray]:
        """Cube pose from one image per camera.

        Args:
            images: ``{camera name: uint8 [B, H, W, 3]}`` for every name of
                ``camera_names`` (other keys are ignored); any size. Square images show
                what training saw; other shapes are cut at the same fractions of their
                width and height and stretched to a square.
            batch_size: samples per forward pass.

        Returns:
            ``(position float32 [B, 3] metres, quaternion float32 [B, 4] (w, x, y, z), w >= 0)``
            in the world frame.

        Raises:
            KeyError: a camera is missing (names the missing and the given cameras).
            ValueError: images that are not ``uint8 [B, H, W, 3]`` or whose batch sizes differ.
        """
        missing = [name for name in self.camera_names if name not in images]
        if missing:
            raise KeyError(f"images lack cameras {missing}; expected {self.camera_names}, got {sorted(images)}")
        arrays = [np.asarray(images[name]) for name in self.camera_names]
        for name, a in zip(self.camera_names, arrays):
            if a.dtype != np.uint8 or a.ndim != 4 or a.shape[3] != 3:
                raise ValueError(f"images[{name!r}] must be uint8 [B, H, W, 3], got {a.dtype} {list(a.shape)}")
        if len({a.shape[0] for a in arrays}) != 1:
            raise ValueError(f"every camera needs the same number of images, got "
                             f"{ {n: a.shape[0] for n, a in zip(self.camera_names, arrays)} }")
        torch = _torch()
        positions, quaternions = [], []
        with torch.no_grad():
            for start in range(0, arrays[0].shape[0], batch_size):
                x = images_to_tensor([a[start:start + batch_size] for a in arrays], self.input_size, self.windows)
                p, q = self.network(x.to(self.device))
                positions.append(p.cpu().numpy())
                quaternions.append(q.cpu().numpy())
        if not positions:
            return np.zeros((0, 3), np.float32), np.zeros((0, 4), np.float32)
        q = np.concatenate(quaternions)
        return np.concatenate(positions), (q * np.where(q[:, :1] < 0, -1, 1)).astype(np.float32)

    def save(self, path: str | os.PathLike, **extra) -> None:
        """Writes the weights and what ``load_pose_model`` needs to rebuild the network."""
        torch = _torch()
        net = self.network
        torch.save({"format": FORMAT, "camera_names": self.camera_names, "image_size": self.image_size,
                    "windows": [list(w) for w in self.windows], "input_size": self.input_size,
                    "width": net.tower.trunk[0].out_channels,
                    "state_dict": {k: v.detach().cpu() for k, v in net.state_dict().items()}, "extra": dict(extra)},
                   os.fspath(path))


def camera_windows(centres: np.ndarray, fraction: float, image_size: int) -> list[tuple[float, float, float]]:
    """Square windows ``(x0, y0, size)`` (fractions of the image) of ``fraction`` of the image
    around ``centres`` (``[cameras, 2]``, x right, y down, in [0, 1]), kept inside the image
    and snapped to whole pixels of an ``image_size`` image (so a render of that size is cropped
    exactly, without resampling)."""
    pixels = int(round(fraction * image_size))
    if not 8 <= pixels <= image_size:
        raise ValueError(f"a window of {fraction} of {image_size} px is {pixels} px; expected 8..{image_size}")
    corner = np.clip(np.rint(np.asarray(centres, np.float64) * image_size - pixels / 2), 0, image_size - pixels)
    return [(float(x) / image_size, float(y) / image_size, pixels / image_size) for x, y in corner]


def images_to_tensor(per_camera: list[np.ndarray], size: int, windows=None):
    """``[uint8 [B, H, W, 3]] * cameras`` -> ``float32 [B, cameras, 3, size, size]`` in [0, 1].

    Each camera's image is cut to its window ``(x0, y0, w)`` of ``windows`` (fractions of
    the image; ``None``: the whole image), then resized (bilinear, with antialiasing) when
    the window is not ``size`` pixels square."""
    torch = _torch()
    tensors = []
    for i, a in enumerate(per_camera):
        if windows is not None:
            x0, y0, w = windows[i]
            height, width = a.shape[1:3]
            rows = slice(int(round(y0 * height)), int(round(y0 * height)) + max(1, int(round(w * height))))
            cols = slice(int(round(x0 * width)), int(round(x0 * width)) + max(1, int(round(w * width))))
            a = a[:, rows, cols]
        t = torch.from_numpy(np.ascontiguousarray(a)).permute(0, 3, 1, 2).float().div_(255.0)
        if t.shape[2:] != (size, size):
            t = torch.nn.functional.interpolate(t, size=(size, size), mode="bilinear", antialias=True,
                                                align_corners=False)
        tensors.append(t)
    return torch.stack(tensors, dim=1)


def load_pose_model(path: str | os.PathLike, device: str = "cpu") -> PoseModel:
    """Loads a model saved by ``train_pose.py --save PATH`` (or ``PoseModel.save``).

    Only tensors and plain values are read (``torch.load(weights_only=True)``): no code
    from the file runs. The model predicts on ``device`` (a torch device name: ``"cpu"``,
    ``"cuda"``, ...), wherever it was trained.

    Raises:
        FileNotFoundError: no such file.
        ValueError: not a pose model file, or a format this code does not read.
    """
    torch = _torch()
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"no pose model at {path!r}")
    saved = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(saved, dict) or saved.get("format") != FORMAT:
        got = saved.get("format") if isinstance(saved, dict) else type(saved).__name__
        raise ValueError(f"{path!r} is not a pose model file of format {FORMAT} (got format {got!r})")
    state = saved["state_dict"]
    network = build_network(len(saved["camera_names"]), int(saved["width"]),
                            state["position_mean"].tolist(), float(state["position_scale"]))
    network.load_state_dict(state)
    network.to(device)
    return PoseModel(network, saved["camera_names"], saved["image_size"], [tuple(w) for w in saved["windows"]],
                     saved["input_size"])


def quaternion_to_matrix(q: np.ndarray) -> np.ndarray:
    """Rotation matrices ``[B, 3, 3]`` of unit quaternions ``[B, 4]`` (w, x, y, z)."""
    w, x, y, z = np.moveaxis(np.asarray(q, np.float64), -1, 0)
    return np.stack([
        np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], -1),
        np.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], -1),
        np.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1)], -2)

