"""Checking render requests in the caller's thread, before any work is queued.

A request is a dict with ``qpos`` (``[B, K]``) and ``seed`` (int, entry ``i`` gets
``seed + i``) or ``seeds`` (``[B]``, wins if both are given); every other key is
passed through to the response unchanged.
"""

from __future__ import annotations

import queue as queue_module
import threading
from typing import Any

import numpy as np

__all__ = ["Request", "Response", "check_request", "put_result_on_queue"]

Request = dict[str, Any]
Response = dict[str, Any]

_SEED_MOD = 2**64


def check_request(batch: Request, columns: int) -> tuple[np.ndarray, np.ndarray]:
    """Validates a request; returns ``(qpos float64 [B, K], seeds uint64 [B])``.

    Raises:
        TypeError: ``batch`` is not a dict, or ``seed`` is not an int.
        ValueError: qpos missing, not 2-D, with too few columns (names how many are
            needed), or with NaN/inf; neither ``seed`` nor ``seeds``; ``seeds`` of
            the wrong length.
    """
    if not isinstance(batch, dict):
        raise TypeError(f"a render request must be a dict with 'qpos' and 'seed' or 'seeds', got {type(batch).__name__}")
    if "qpos" not in batch:
        raise ValueError(f"the request has no 'qpos' (array [B, {columns}] of joint states); keys: {sorted(batch)}")
    try:
        qpos = np.asarray(batch["qpos"])
    except (TypeError, ValueError) as e:
        raise TypeError(f"qpos must be a numeric array [B, {columns}]: {e}") from None
    if qpos.dtype.kind not in "iuf":  # not strings, complex numbers, booleans or objects
        raise TypeError(f"qpos must be a real numeric array [B, {columns}] (float or int), got dtype {qpos.dtype}")
    qpos = qpos.astype(np.float64, copy=False)
    if qpos.ndim != 2:
        raise ValueError(f"qpos must be two-dimensional [B, K] with K >= {columns}, got shape {qpos.shape}")
    if qpos.shape[1] < columns:
        raise ValueError(
            f"qpos has {qpos.shape[1]} columns but the mapping needs at least {columns} (shape {qpos.shape})"
        )
    if not np.isfinite(qpos).all():
        bad = np.argwhere(~np.isfinite(qpos))[0]
        raise ValueError(f"qpos contains NaN or inf (first at entry {bad[0]}, column {bad[1]}); all values must be finite")
    n = qpos.shape[0]
    if batch.get("seeds") is not None:
        seeds = np.asarray(batch["seeds"])
        if seeds.ndim != 1 or seeds.shape[0] != n:
            raise ValueError(f"seeds must be an array [B] with B = {n} (one per qpos row), got shape {seeds.shape}")
        if seeds.dtype.kind not in "iu":
            exact = seeds.dtype.kind == "f" and np.all(np.abs(seeds) < 2.0**53)  # (False for NaN and inf)
            if exact and np.all(seeds == np.round(seeds)):
                seeds = seeds.astype(np.int64)
            else:
                raise ValueError(f"seeds must be integers (or whole floats below 2**53 in magnitude, which "
                                 f"float64 holds exactly), got dtype {seeds.dtype}")
        # negative seeds wrap modulo 2**64 (two's complement), as unsigned seeds do
        seeds = seeds.astype(np.int64).view(np.uint64) if seeds.dtype.kind == "i" else seeds.astype(np.uint64)
    elif batch.get("seed") is not None:
        seed = batch["seed"]
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
            raise TypeError(f"seed must be an int (entry i renders with seed + i), got {seed!r}")
        seeds = np.uint64(int(seed) % _SEED_MOD) + np.arange(n, dtype=np.uint64)  # wraps modulo 2**64
    else:
        raise ValueError("the request has neither 'seed' (int) nor 'seeds' (array [B]): give one")
    return qpos, seeds


def put_result_on_queue(future, queue) -> None:
    """When ``future`` is done, puts its result, or on failure its exception, on ``queue``,
    so a consumer of ``render_batch_async`` never waits forever.

    The put never blocks the thread that completes ``future`` (a pool's I/O thread, which
    all other batches need): on a bounded queue that is full, a thread of its own waits for
    room."""

    def deliver(f) -> None:
        item = f.exception() if f.exception() else f.result()
        put_nowait = getattr(queue, "put_nowait", None)  # queues without it (multiprocessing.SimpleQueue) may block
        try:
            if put_nowait is not None:
                put_nowait(item)
                return
        except queue_module.Full:
            pass
        threading.Thread(target=queue.put, args=(item,), name="orrb-queue-put", daemon=True).start()

    future.add_done_callback(deliver)
