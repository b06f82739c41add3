"""Helpers: finding the shipped assets, laying out servers, turning modalities into pictures.

- ``package_relative_path(path)``: a path inside the package (``'assets'`` works both
  in the repository and after a regular ``pip install .``).
- ``build_server_configs(...)``: ``[gpu, port]`` pairs for ``RemoteRenderer``.
- ``depth_to_image``, ``normals_to_image``, ``segmentation_to_image``: uint8 pictures.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

__all__ = [
    "build_server_configs",
    "free_base_port",
    "depth_to_image",
    "normals_to_image",
    "package_relative_path",
    "segmentation_to_image",
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
        num_workers: servers per GPU (>= 1).
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
