"""LocalRenderer (no components) against a bare ``mujoco.Renderer`` loop.

Same scene (the shipped Dactyl assets), cameras (3), states, image size and render
settings (the model's own: 4x MSAA, no shadow-casting lights). The bare loop does
only what any user would: set qpos, kinematics, update_scene + render per camera.
Target: LocalRenderer >= 0.95x the bare loop.

    python benchmarks/engine.py [--quick] [--size 200] [--states 16]
"""

from __future__ import annotations

import orrb  # first: sets MUJOCO_GL=egl before mujoco picks its GL backend for mujoco.Renderer
from _common import CAMERAS, bare_loop, dactyl_config, dactyl_states, interleaved, parser, report  # noqa: E402


def main(argv=None) -> None:
    args = parser(__doc__.splitlines()[0]).parse_args(argv)
    if args.quick:
        args.states, args.repeats = 4, 2
    config = dactyl_config(args.size)
    states = dactyl_states(args.states)
    with orrb.LocalRenderer(config) as renderer:
        bare_loop_run, bare_close = bare_loop(renderer, config, states)

        def local():
            renderer.render_batch({"qpos": states, "seed": 0})

        local()
        bare_loop_run()
        seconds = interleaved({"LocalRenderer (no components)": local, "bare mujoco.Renderer loop": bare_loop_run},
                              args.repeats)
        bare_close()
    images = len(states) * len(CAMERAS)
    rates = {name: images / s for name, s in seconds.items()}
    ratio = rates["LocalRenderer (no components)"] / rates["bare mujoco.Renderer loop"]
    report(f"engine: {len(CAMERAS)} cameras, {args.size}x{args.size}, {len(states)} states/batch", rates,
           "images/s", [("LocalRenderer / bare mujoco.Renderer", ratio, 0.95)])


if __name__ == "__main__":
    main()
