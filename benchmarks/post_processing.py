"""Post-processing as GL shader passes before readback against numpy after it.

LocalRenderer with the full Dactyl chain (`assets/dactyl.renderer_config.json`: colour
grading, bloom and ambient occlusion from depth on every image) and with a chain of the
PostProcessingRandomizer alone, each with the GL passes forced on and off
(``EngineOptions(gl_post_processing=...)``), plus no components for scale. Interleaved in one
run; the ratios say which path is faster on this machine's GL (``auto`` picks the GL passes
on hardware, numpy on a software rasterizer). Also prints the process CPU time per image
(on llvmpipe that includes the rasterizer's threads) and checks the two paths' pixels
against each other (mean absolute difference per channel, bound 2/255): run it on a GPU
machine to measure and check the hardware choice.

    python benchmarks/post_processing.py [--quick] [--size 200] [--states 16]
"""

from __future__ import annotations

import time

import numpy as np

import orrb  # first: sets MUJOCO_GL=egl before mujoco picks its GL backend

from _common import CAMERAS, dactyl_config, dactyl_states, interleaved, parser, report  # noqa: E402
from orrb.engine import EngineOptions  # noqa: E402

POST_ONLY = orrb.RendererConfig.from_json({"components": [
    {"type": "PostProcessingRandomizer", "name": "post_processing_randomizer", "config": {}}]})


def main(argv=None) -> None:
    args = parser(__doc__.splitlines()[0]).parse_args(argv)
    if args.quick:
        args.states, args.repeats = 4, 2
    states = dactyl_states(args.states)
    full_config = dactyl_config(args.size, "dactyl.renderer_config.json")
    plain_config = dactyl_config(args.size)
    variants_to_build = {
        "full chain, GL passes": (full_config, None, True),
        "full chain, numpy": (full_config, None, False),
        "post-processing only, GL passes": (plain_config, POST_ONLY, True),
        "post-processing only, numpy": (plain_config, POST_ONLY, False),
        "no components": (plain_config, None, None),
    }
    renderers: dict[str, orrb.LocalRenderer] = {}
    try:
        # inside the try: a renderer that fails to start closes the ones already started
        for name, (config, chain, gl) in variants_to_build.items():
            renderers[name] = orrb.LocalRenderer(config, chain, engine_options=EngineOptions(gl_post_processing=gl))
        cpu: dict[str, list[float]] = {name: [] for name in renderers}

        def timed(name, renderer):
            def run():
                start = time.process_time()
                renderer.render_batch({"qpos": states, "seed": 0})
                cpu[name].append(time.process_time() - start)
            return run

        variants = {name: timed(name, r) for name, r in renderers.items()}
        for fn in variants.values():
            fn()  # warm up (compiles the shaders)
        for values in cpu.values():
            values.clear()
        seconds = interleaved(variants, args.repeats)
        checks = []
        for chain in ("full chain", "post-processing only"):
            gl = renderers[f"{chain}, GL passes"].render_batch({"qpos": states, "seed": 1})
            cpu_out = renderers[f"{chain}, numpy"].render_batch({"qpos": states, "seed": 1})
            diff = np.concatenate([np.abs(gl[c][..., :3].astype(np.int16) - cpu_out[c][..., :3]).reshape(-1, 3)
                                   for c in CAMERAS])
            checks.append(f"check: {chain}, |GL passes - numpy| mean per channel = "
                          f"{np.array2string(diff.mean(axis=0), precision=4)} (bound < 2), "
                          f"values off by > 1: {np.mean(diff > 1):.4%}, max {diff.max()}")
    finally:
        for renderer in renderers.values():
            renderer.close()
    images = len(states) * len(CAMERAS)
    rates = {name: images / s for name, s in seconds.items()}
    report(f"post-processing: {len(CAMERAS)} cameras, {args.size}x{args.size}, {len(states)} states/batch", rates,
           "images/s", [
               ("full chain, GL passes / numpy", rates["full chain, GL passes"] / rates["full chain, numpy"], None),
               ("post-processing only, GL passes / numpy",
                rates["post-processing only, GL passes"] / rates["post-processing only, numpy"], None)])
    for line in checks:
        print(line)
    for name, values in cpu.items():
        values = sorted(values)
        print(f"cpu: {name} = {1000 * values[len(values) // 2] / images:.3f} ms of process CPU per image (median)")


if __name__ == "__main__":
    main()
