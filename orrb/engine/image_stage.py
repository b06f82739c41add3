"""``ImageStage``: the components' image-space work (``end_batch``) on chunks of drawn entries."""

from __future__ import annotations

import concurrent.futures

from orrb.components.base import BatchContext, Component, Frames

__all__ = ["ImageStage"]


class ImageStage:
    """Runs the image-space components (``end_batch``, in chain order) on a batch's frames.

    On chunks of ``chunk_size`` entries, each as soon as its entries are drawn: on ``pool``
    (the engine's "image" worker) when given, otherwise in the render thread; the last chunk
    always in the render thread, after the earlier ones (it overlaps nothing). Chunking
    changes no output: every effect is computed per entry. Holds no reference to the engine
    (a work item holding its last reference would finalize it on the worker thread).

    Args:
        components: the active components with an image stage, in chain order.
        batch: the batch's context, handed to every ``end_batch``.
        frames: the whole batch's frames (filled entry by entry).
        n: the batch size.
        chunk_size: entries per chunk (>= 1).
        pool: the worker to run chunks on, or None (render thread).
    """

    def __init__(self, components: list[Component], batch: BatchContext, frames: Frames, n: int, chunk_size: int,
                 pool: concurrent.futures.ThreadPoolExecutor | None):
        self._hooks = [component.end_batch for component in components]
        self._batch, self._frames, self._n = batch, frames, n
        self._chunk_size = chunk_size
        self._pool = pool if self._hooks and n > chunk_size else None
        self._start = 0
        self._pending: list[concurrent.futures.Future] = []

    def entry_done(self, i: int) -> None:
        """Entry ``i`` is drawn and read back: hands over a full chunk (or the last one)."""
        if any(future.done() and future.exception() is not None for future in self._pending):
            self.wait()  # a chunk failed: stop drawing, raise it
        if not self._hooks or (i + 1 - self._start < self._chunk_size and i + 1 < self._n):
            return
        chunk = self._frames.chunk(slice(self._start, i + 1))
        self._start = i + 1
        if self._pool is not None and i + 1 < self._n:
            self._pending.append(self._pool.submit(self._run, chunk))
        else:  # the last chunk overlaps nothing: no hand-over (after the earlier chunks, in order)
            self.wait()
            self._run(chunk)

    def _run(self, chunk: Frames) -> None:
        for hook in self._hooks:
            hook(chunk, self._batch)

    def drain(self) -> list[concurrent.futures.Future]:
        """Waits for every chunk, ignoring their failures (the render failed already)."""
        pending, self._pending = self._pending, []
        concurrent.futures.wait(pending)
        return pending

    def wait(self) -> None:
        """Waits for every chunk; re-raises the first failure in the render thread."""
        errors = [future.exception() for future in self.drain()]
        error = next((e for e in errors if e is not None), None)
        errors = None
        if error is not None:
            try:
                raise error
            finally:
                error = None  # no cycle through this frame (see RenderEngine.render)
