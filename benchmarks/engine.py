"""LocalRenderer (no components) against a bare ``mujoco.Renderer`` loop, and its readback schedules.

Same scene (the shipped Dactyl assets), cameras (3), states, image size and render
settings (the model's own: 4x MSAA, no shadow-casting lights). The bare loop does
only what any user would: set qpos, kinematics, update_scene + render per camera.
Target: LocalRenderer (default options) >= 0.95x the bare loop. Also, interleaved in the
same run: several entries per readback (``EngineOptions(entries_per_readback=24)``, the
default on hardware GL) against one entry per readback (``entries_per_readback=1``, the
default on llvmpipe), and the pixel-buffer readback (``pbo_readback=True``) against the plain
one, both with several entries per readback.

    python benchmarks/engine.py [--quick] [--size 200] [--states 16]
"""

from __future__ import annotations

import orrb  # first: sets MUJOCO_GL=egl before mujoco picks its GL backend for mujoco.Renderer
from _common import CAMERAS, bare_loop, dactyl_config, dactyl_states, interleaved_cpu, parser, report  # noqa: E402
from orrb.engine import EngineOptions  # noqa: E402

DEFAULT = "LocalRenderer (no components)"
TILED = "LocalRenderer, entries tiled (24 frames)"
ONE = "LocalRenderer, one entry per readback"
PBO = "LocalRenderer, pixel-buffer readback"
PLAIN = "LocalRenderer, plain readback"
BARE = "bare mujoco.Renderer loop"


def main(argv=None) -> None:
    args = parser(__doc__.splitlines()[0]).parse_args(argv)
    if args.quick:
        args.states, args.repeats = 4, 2
    config = dactyl_config(args.size)
    states = dactyl_states(args.states)
    def local(**options):
        return orrb.LocalRenderer(config, engine_options=EngineOptions(**options))

    with orrb.LocalRenderer(config) as renderer, local(entries_per_readback=24) as tiled, \
            local(entries_per_readback=1) as one, local(entries_per_readback=24, pbo_readback=True) as pbo, \
            local(entries_per_readback=24, pbo_readback=False) as plain:
        bare_loop_run, bare_close = bare_loop(renderer, config, states)

        def batch_of(r):
            return lambda: r.render_batch({"qpos": states, "seed": 0})

        variants = {DEFAULT: batch_of(renderer), TILED: batch_of(tiled), ONE: batch_of(one), PBO: batch_of(pbo),
                    PLAIN: batch_of(plain), BARE: bare_loop_run}
        for fn in variants.values():
            fn()  # warm up
        seconds, cpu_seconds = interleaved_cpu(variants, args.repeats)
        bare_close()
    images = len(states) * len(CAMERAS)
    rates = {name: images / s for name, s in seconds.items()}
    cpu = {name: 1e3 * s / images for name, s in cpu_seconds.items()}
    report(f"engine: {len(CAMERAS)} cameras, {args.size}x{args.size}, {len(states)} states/batch", rates,
           "images/s", [("LocalRenderer / bare mujoco.Renderer", rates[DEFAULT] / rates[BARE], 0.95),
                        ("entries per readback / one entry per readback", rates[TILED] / rates[ONE], None),
                        ("pixel-buffer / plain readback", rates[PBO] / rates[PLAIN], None)])
    print("process CPU per image (all threads, llvmpipe's included):")
    for name, ms in cpu.items():
        print(f"  {name:<40}  {ms:8.3f} ms")
    print(f"ratio: CPU per image, one entry per readback / entries per readback = {cpu[ONE] / cpu[TILED]:.3f}")
    print(f"ratio: CPU per image, plain / pixel-buffer readback = {cpu[PLAIN] / cpu[PBO]:.3f}")


if __name__ == "__main__":
    main()
