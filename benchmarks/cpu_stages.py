"""CPU time per image of the engine's stages (thread CPU, ``time.thread_time``), one process.

Wraps the stage functions of a :class:`orrb.engine.RenderEngine` with thread-CPU timers
(on whichever thread they run) and renders the Dactyl scene with the full
``dactyl.renderer_config.json`` chain and with no components: entry setup (restore, qpos,
kinematics, every component's ``run``), scene building (``mjv_updateScene``), drawing and
readback in the render thread, the conversion of read-back tiles into the outputs (copy,
depth to metres), the image stage (components' ``end_batch``, e.g. post-processing) and the
derived outputs (normals, alpha). On llvmpipe drawing and readback include the software
rasterizer's work in the render thread (its worker threads are not counted).

    python benchmarks/cpu_stages.py [--size 200] [--states 16] [--repeats 5] [--entries N]
"""

from __future__ import annotations

import collections
import time

import numpy as np

import orrb  # noqa: F401  (sets MUJOCO_GL before mujoco is imported)
from _common import CAMERAS, dactyl_config, dactyl_states, machine, parser  # noqa: E402
from orrb.engine import EngineOptions, RenderEngine  # noqa: E402
from orrb.engine import camera_scenes, entry_setup, frames, image_stage, outputs  # noqa: E402

STAGES = {
    "entry setup (components' run)": (entry_setup.EntrySetup, "__call__"),
    "scene build (mjv_updateScene)": (camera_scenes.CameraScenes, "build"),
    "draw (mjr_render)": (frames.FrameReader, "draw"),
    "readback": (frames.FrameReader, "_read"),
    "readback start (pixel buffers)": (frames.PixelBuffers, "start"),
    "readback fetch (pixel buffers)": (frames.PixelBuffers, "fetch"),
    "conversion (tiles -> outputs)": (frames.FrameReader, "_unpack"),
    "segmentation pass": (frames.FrameReader, "_segment"),
    "image stage (end_batch)": (image_stage.ImageStage, "_run"),
    "normals and alpha": (outputs.BatchOutputs, "finish"),
}


def instrument(spent: dict[str, float]) -> None:
    """Wraps every stage function with a thread-CPU timer adding into ``spent`` (seconds)."""
    for label, (cls, name) in STAGES.items():
        original = getattr(cls, name)

        def timed(*args, _original=original, _label=label, **kwargs):
            start = time.thread_time()
            try:
                return _original(*args, **kwargs)
            finally:
                spent[_label] += time.thread_time() - start

        setattr(cls, name, timed)


def main(argv=None) -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--entries", type=int, default=None,
                   help="EngineOptions.entries_per_readback (default: the engine's, per backend)")
    args = p.parse_args(argv)
    if args.quick:
        args.states, args.repeats = 4, 1
    repeats = min(args.repeats, 5) if args.repeats == 15 else args.repeats
    states = dactyl_states(args.states)
    seeds = np.arange(len(states), dtype=np.uint64)
    spent: dict[str, float] = collections.defaultdict(float)
    instrument(spent)
    print(f"== CPU per image by stage: {len(CAMERAS)} cameras, {args.size}x{args.size}, {len(states)} states/batch, "
          f"{repeats} batches, entries_per_readback={args.entries}")
    print(f"machine: {machine()}")
    for chain in ("dactyl.renderer_config.json", None):
        config = dactyl_config(args.size, chain)
        with RenderEngine(config, options=EngineOptions(entries_per_readback=args.entries)) as engine:
            engine.render(states, seeds)  # warm up
            spent.clear()
            start = time.process_time()
            for _ in range(repeats):
                engine.render(states, seeds)
            total = time.process_time() - start
        images = repeats * len(states) * len(CAMERAS)
        print(f"-- {chain or 'no components'}: process CPU {1e3 * total / images:.3f} ms/image")
        for label in STAGES:
            if spent.get(label):
                print(f"  {label:<32} {1e3 * spent[label] / images:8.3f} ms/image")


if __name__ == "__main__":
    main()
