"""Helpers: finding the shipped assets, laying out servers, turning modalities into pictures.

- ``package_relative_path(path)``: a path inside the package (``'assets'`` works both
  in the repository and after a regular ``pip install .``).
- ``build_server_configs(...)``: ``[gpu, port]`` pairs for ``RemoteRenderer``.
- ``depth_to_image``, ``normals_to_image``, ``segmentation_to_image``: uint8 pictures.
- The original renderer's helpers, same names and arguments, so code written against it
  runs: ``build_batch``, ``render_depth``, ``render_normals``, ``render_segmentation``,
  ``read_depth_image``, ``read_normals_image``, ``read_rgba_image``,
  ``read_segmentation_image``, ``renderer_closer``, ``setup_logging``. Where orrb's outputs
  mean something else (depth in metres, not normalised; row 0 is the top of the image,
  the original's was the bottom) their docstrings say so.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

__all__ = [
    "build_batch",
    "build_server_configs",
    "free_base_port",
    "depth_to_image",
    "normals_to_image",
    "package_relative_path",
    "read_depth_image",
    "read_normals_image",
    "read_rgba_image",
    "read_segmentation_image",
    "render_depth",
    "render_normals",
    "render_segmentation",
    "renderer_closer",
    "segmentation_to_image",
    "setup_logging",
]

_PACKAGE_DIR = Path(__file__).resolve().parent


def package_relative_path(path: str | os.PathLike = "") -> str:
    """Returns the absolute path of ``path`` inside the orrb package.

    ``assets/`` sits at the repository root and is installed as ``orrb/assets`` by
    ``pip install .``; both places are looked up, the installed one first.

    Args:
        path: a path relative to the package, e.g. ``'assets'`` or ``'assets/dactyl.xml'``.

    Raises:
        FileNotFoundError: if neither place has it.
    """
    for base in (_PACKAGE_DIR, _PACKAGE_DIR.parent):
        candidate = base / path
        if candidate.exists():
            return str(candidate)
    raise FileNotFoundError(
        f"package_relative_path: {str(path)!r} is neither in {_PACKAGE_DIR} nor in {_PACKAGE_DIR.parent}"
    )


def build_server_configs(
    num_gpus: int, num_workers: int, base_port: int, mpi_rank: int = 0, mpi_size: int = 1
) -> list[list[int]]:
    """Lays out render servers: one ``[gpu, port]`` pair per server.

    ``num_workers`` servers run on each of ``num_gpus`` GPUs (on a CPU machine the
    gpu index is ignored), on consecutive ports from ``base_port``. With MPI the
    whole list is split into ``mpi_size`` equal shards and shard ``mpi_rank`` is
    returned, so every rank gets its own servers and ports.

    Args:
        num_gpus: GPUs per machine (>= 1; use 1 on a CPU machine).
        num_workers: servers per GPU (>= 1). No default here on purpose: how many servers
            keep one GPU busy is to be chosen from ``benchmarks/gpu_pool.py`` on a GPU. The
            H200/H100 runs in benchmarks/RESULTS.md (before entry tiles and pixel-buffer
            readback) levelled off from 8 servers; the callers' own defaults (the CLI's
            ``--workers``, ``make_vec(num_servers=2)``) are unchanged until a GPU run
            measures the new engine.
        base_port: first port.
        mpi_rank: this process's rank in ``[0, mpi_size)``.
        mpi_size: number of ranks; must divide ``num_gpus * num_workers``.

    Returns:
        ``[[gpu, port], ...]`` with servers spread evenly over GPUs (round robin).

    Example:
        >>> build_server_configs(2, 2, 5000)
        [[0, 5000], [1, 5001], [0, 5002], [1, 5003]]
    """
    for name, value, low in (("num_gpus", num_gpus, 1), ("num_workers", num_workers, 1), ("mpi_size", mpi_size, 1)):
        if not isinstance(value, (int, np.integer)) or value < low:
            raise ValueError(f"build_server_configs: {name} must be an int >= {low}, got {value!r}")
    if not 0 < base_port < 65536:
        raise ValueError(f"build_server_configs: base_port must be in [1, 65535], got {base_port!r}")
    if not 0 <= mpi_rank < mpi_size:
        raise ValueError(f"build_server_configs: mpi_rank must be in [0, {mpi_size}), got {mpi_rank!r}")
    total = num_gpus * num_workers
    if total % mpi_size:
        raise ValueError(
            f"build_server_configs: {total} servers ({num_gpus} GPUs x {num_workers} workers) "
            f"cannot be split into {mpi_size} equal MPI shards"
        )
    if base_port + total - 1 > 65535:
        raise ValueError(f"build_server_configs: ports {base_port}..{base_port + total - 1} exceed 65535")
    configs = [[i % num_gpus, base_port + i] for i in range(total)]
    shard = total // mpi_size
    return configs[mpi_rank * shard : (mpi_rank + 1) * shard]


def free_base_port(n: int = 1, low: int = 20000, high: int = 60000, seed: int | None = None) -> int:
    """A base port with ``n`` consecutive ports free on 127.0.0.1 right now, for
    ``build_server_configs(..., base_port)`` (another process may still take them later).

    Raises:
        RuntimeError: no such range found in 200 random tries within ``[low, high)``.
    """
    import random
    import socket

    rng = random.Random(seed)
    for _ in range(200):
        base = rng.randrange(low, high - n)
        sockets = []
        try:
            for port in range(base, base + n):
                s = socket.socket()
                sockets.append(s)
                s.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for s in sockets:
                s.close()
    raise RuntimeError(f"free_base_port: no {n} consecutive free ports found in [{low}, {high})")


def depth_to_image(depth: np.ndarray, max_depth: float | None = None) -> np.ndarray:
    """Turns depth ``float32 [..., H, W]`` (metres, 0 = nothing hit) into ``uint8 [..., H, W, 3]``.

    Near is bright, far is dark, background black. ``max_depth`` defaults to the
    largest depth in the array.
    """
    depth = np.asarray(depth, dtype=np.float32)
    hit = depth > 0
    if max_depth is None:
        max_depth = float(depth.max()) if hit.any() else 1.0
    min_depth = float(depth[hit].min()) if hit.any() else 0.0
    span = max(max_depth - min_depth, 1e-6)
    value = np.where(hit, 1.0 - 0.8 * np.clip((depth - min_depth) / span, 0, 1), 0.0)
    gray = (value * 255).astype(np.uint8)
    return np.repeat(gray[..., None], 3, axis=-1)


def normals_to_image(normals: np.ndarray) -> np.ndarray:
    """Turns encoded normals ``float32 [..., H, W, 3]`` in [0, 1] into ``uint8 [..., H, W, 3]``."""
    return (np.clip(np.asarray(normals, dtype=np.float32), 0, 1) * 255 + 0.5).astype(np.uint8)


# A fixed, well-separated palette; class 0 (background) is black.
_PALETTE = np.array(
    [[0, 0, 0], [230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200], [245, 130, 48],
     [145, 30, 180], [70, 240, 240], [240, 50, 230], [210, 245, 60], [250, 190, 212],
     [0, 128, 128], [220, 190, 255], [170, 110, 40], [255, 250, 200], [128, 0, 0]],
    dtype=np.uint8,
)


def segmentation_to_image(segmentation: np.ndarray) -> np.ndarray:
    """Turns class ids ``uint8 [..., H, W]`` into colours ``uint8 [..., H, W, 3]`` (0 = black)."""
    seg = np.asarray(segmentation)
    return _PALETTE[seg % len(_PALETTE)]


# -- the original renderer's helpers ---------------------------------------------------------------
def build_batch(states: np.ndarray, seed: int) -> dict:
    """A render request for ``states`` ``float [B, K]`` (one row per entry, columns as the
    mapping file says): ``{'qpos': states, 'seed': seed}``; entry ``i`` renders with
    ``seed + i``. Same as the original's."""
    return {"qpos": states, "seed": seed}


def _from_bytes(data: bytes, dtype, shape: tuple[int, ...], what: str) -> np.ndarray:
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"{what}: expected raw image bytes, got {type(data).__name__}")
    itemsize = np.dtype(dtype).itemsize
    if len(data) % itemsize:
        raise ValueError(f"{what}: {len(data)} bytes is not a whole number of {np.dtype(dtype).name} values")
    array = np.frombuffer(data, dtype=dtype)
    expected = int(np.prod([d for d in shape if d != -1]))
    if -1 in shape and array.size % expected == 0 and array.size:
        return array.reshape(shape)
    if -1 not in shape and array.size == expected:
        return array.reshape(shape)
    raise ValueError(f"{what}: {len(data)} bytes do not make an image of shape {shape} "
                     f"({np.dtype(dtype).name}, {np.dtype(dtype).itemsize} bytes per value)")


def read_depth_image(data: bytes, w: int, h: int) -> np.ndarray:
    """Raw float32 bytes to depth ``float32 [h, w]`` (a read-only view), as the original.

    orrb's depth is in metres along the camera axis, 0 where nothing was hit; the
    original's was normalised to [0, 1]. Row 0 is the top of the image in orrb.
    """
    return _from_bytes(data, np.float32, (h, w), "read_depth_image")


def read_normals_image(data: bytes, w: int, h: int) -> np.ndarray:
    """Raw float32 bytes to normals ``float32 [h, w, 3]`` (camera frame encoded in [0, 1])."""
    return _from_bytes(data, np.float32, (h, w, 3), "read_normals_image")


def read_rgba_image(data: bytes, w: int, h: int) -> np.ndarray:
    """Raw uint8 bytes to an image ``uint8 [h, w, C]`` (C = 3 or 4 from the byte count).

    Row 0 is the top of the image in orrb (the original's first row was the bottom: it
    flipped images for display with ``np.flipud``; orrb's need no flip).
    """
    return _from_bytes(data, np.uint8, (h, w, -1), "read_rgba_image")


def read_segmentation_image(data: bytes, w: int, h: int) -> np.ndarray:
    """Raw uint8 bytes to class ids ``uint8 [h, w]`` (0 = background)."""
    return _from_bytes(data, np.uint8, (h, w), "read_segmentation_image")


def render_depth(image: np.ndarray) -> np.ndarray:
    """Depth ``float [..., H, W]`` to a grey picture ``uint8 [..., H, W, 3]``: near dark, far
    bright, as the original drew its normalised depth (``depth * 255``).

    orrb's depth is in metres, so each picture is scaled by its largest depth first (a
    depth already in [0, 1] is drawn as the original did); where nothing was hit (0) is
    white, like the original's far plane.
    """
    depth = np.asarray(image, dtype=np.float32)
    hit = depth > 0
    peak = np.where(hit, depth, 0).max(axis=(-2, -1), keepdims=True) if depth.ndim >= 2 else depth.max()
    scale = np.where(peak > 1.0, peak, 1.0)
    value = np.where(hit, np.clip(depth / scale, 0.0, 1.0), 1.0)
    return np.repeat((value * 255).astype(np.uint8)[..., None], 3, axis=-1)


def render_normals(image: np.ndarray) -> np.ndarray:
    """Normals encoded in [0, 1] ``float [..., H, W, 3]`` to ``uint8 [..., H, W, 3]``
    (``normals * 255``, clipped), as the original."""
    return (np.clip(np.asarray(image, dtype=np.float32), 0.0, 1.0) * 255).astype(np.uint8)


# The original's 8 colours: class i is (bit 0, bit 1, bit 2) of i as (r, g, b) at 0 or 255.
_BIT_COLORS = (((np.arange(8)[:, None] >> np.arange(3)) & 1) * 255).astype(np.uint8)


def render_segmentation(image: np.ndarray) -> np.ndarray:
    """Class ids ``uint8 [..., H, W]`` to colours ``uint8 [..., H, W, 3]``, as the original:
    class ``i < 8`` gets the colour whose (r, g, b) are bits 0, 1, 2 of ``i`` (0 black,
    1 red, 2 green, 3 yellow, ...). The original refused 8 classes or more; orrb draws
    classes from 8 on with the palette of :func:`segmentation_to_image`.
    """
    seg = np.asarray(image)
    if seg.dtype.kind not in "iu":
        raise TypeError(f"render_segmentation: class ids must be integers, got dtype {seg.dtype}")
    lut = np.concatenate([_BIT_COLORS, _PALETTE[np.arange(8, 256) % len(_PALETTE)]])
    return lut[np.clip(seg, 0, 255).astype(np.intp)]


def renderer_closer(renderer) -> None:
    """Shuts ``renderer`` down (its ``shutdown()``), as the original; handy with ``atexit``."""
    renderer.shutdown()


def setup_logging() -> None:
    """Logs INFO (DEBUG when the environment has ``DEBUG=1``) to stderr with timestamps, as
    the original; under MPI with more than one rank, each line carries ``<rank>``.

    The original asked mpi4py for the rank; orrb reads it from the MPI launcher's
    environment (Open MPI, MPICH/PMI, Slurm), so mpi4py is not needed.
    """
    import logging
    import sys

    def env_int(*names: str) -> int | None:
        for name in names:
            value = os.environ.get(name)
            if value is not None and value.strip().isdigit():
                return int(value)
        return None

    rank = env_int("OMPI_COMM_WORLD_RANK", "PMI_RANK", "PMIX_RANK", "SLURM_PROCID") or 0
    size = env_int("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "SLURM_NTASKS") or 1
    handler = logging.StreamHandler(sys.stderr)
    tag = f" <{rank}>" if size > 1 else ""
    handler.setFormatter(logging.Formatter(fmt=f"%(asctime)s.%(msecs)03d{tag} %(levelname)s: %(message)s",
                                           datefmt="%Y-%m-%d %H:%M:%S"))
    root = logging.getLogger()
    root.setLevel(logging.DEBUG if os.getenv("DEBUG", "0") == "1" else logging.INFO)
    root.handlers.clear()
    root.addHandler(handler)
