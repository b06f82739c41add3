"""LocalRenderer with the full Dactyl randomization chain against no components and a bare loop.

Same cameras (3), states, image size and render settings for all three variants. The
full chain (`assets/dactyl.renderer_config.json`) randomizes the camera, materials and
lights by writing MuJoCo model arrays, tracks the cube and post-processes every image
(colour grading, bloom, ambient occlusion from depth read in the colour pass).
Target: full config >= 0.85x no components (default options). Also, interleaved in the same
run, both configs with several entries per readback (``EngineOptions(entries_per_readback=24)``,
the default on hardware GL) and with one (``entries_per_readback=1``, the default on
llvmpipe), with the process CPU per image of every variant.

    python benchmarks/randomization.py [--quick] [--size 200] [--states 16]
"""

from __future__ import annotations

import orrb  # first: sets MUJOCO_GL=egl before mujoco picks its GL backend for mujoco.Renderer

from _common import CAMERAS, bare_loop, dactyl_config, dactyl_states, interleaved_cpu, parser, report  # noqa: E402
from orrb.engine import EngineOptions  # noqa: E402

ONE = EngineOptions(entries_per_readback=1)
TILED = EngineOptions(entries_per_readback=24)


def main(argv=None) -> None:
    args = parser(__doc__.splitlines()[0]).parse_args(argv)
    if args.quick:
        args.states, args.repeats = 4, 2
    states = dactyl_states(args.states)
    full_config = dactyl_config(args.size, "dactyl.renderer_config.json")
    plain_config = dactyl_config(args.size)
    with orrb.LocalRenderer(full_config) as full, orrb.LocalRenderer(plain_config) as plain, \
            orrb.LocalRenderer(full_config, engine_options=ONE) as full_one, \
            orrb.LocalRenderer(plain_config, engine_options=ONE) as plain_one, \
            orrb.LocalRenderer(full_config, engine_options=TILED) as full_tiled, \
            orrb.LocalRenderer(plain_config, engine_options=TILED) as plain_tiled:
        bare_loop_run, bare_close = bare_loop(plain, plain_config, states)

        variants = {
            "LocalRenderer, full dactyl config": lambda: full.render_batch({"qpos": states, "seed": 0}),
            "LocalRenderer, no components": lambda: plain.render_batch({"qpos": states, "seed": 0}),
            "full dactyl config, one entry per readback": lambda: full_one.render_batch({"qpos": states, "seed": 0}),
            "no components, one entry per readback": lambda: plain_one.render_batch({"qpos": states, "seed": 0}),
            "full dactyl config, entries tiled": lambda: full_tiled.render_batch({"qpos": states, "seed": 0}),
            "no components, entries tiled": lambda: plain_tiled.render_batch({"qpos": states, "seed": 0}),
            "bare mujoco.Renderer loop": bare_loop_run,
        }
        for fn in variants.values():
            fn()  # warm up
        seconds, cpu_seconds = interleaved_cpu(variants, args.repeats)
        bare_close()
    images = len(states) * len(CAMERAS)
    rates = {name: images / s for name, s in seconds.items()}
    cpu = {name: 1e3 * s / images for name, s in cpu_seconds.items()}
    full_rate = rates["LocalRenderer, full dactyl config"]
    report(f"randomization: {len(CAMERAS)} cameras, {args.size}x{args.size}, {len(states)} states/batch", rates,
           "images/s", [("full dactyl config / no components", full_rate / rates["LocalRenderer, no components"], 0.85),
                        ("full dactyl config / bare mujoco.Renderer", full_rate / rates["bare mujoco.Renderer loop"], None),
                        ("full config: entries tiled / one entry per readback",
                         rates["full dactyl config, entries tiled"] / rates["full dactyl config, one entry per readback"],
                         None),
                        ("no components: entries tiled / one entry per readback",
                         rates["no components, entries tiled"] / rates["no components, one entry per readback"], None)])
    print("process CPU per image (all threads, llvmpipe's included):")
    for name, ms in cpu.items():
        print(f"  {name:<45}  {ms:8.3f} ms")
    print("ratio: CPU per image, full config, one entry per readback / entries tiled = "
          f"{cpu['full dactyl config, one entry per readback'] / cpu['full dactyl config, entries tiled']:.3f}")


if __name__ == "__main__":
    main()
