"""``orrb demo``: a contact sheet PNG of the shipped Dactyl scene (cameras x seeds)."""

from __future__ import annotations

import os
import time

from orrb.cli.common import (CommandError, add_scene_options, build_config, make_renderer, nonneg_int, output_file,
                             positive_int)

__all__ = ["add_parser", "run"]


def add_parser(subparsers) -> None:
    demo = subparsers.add_parser(
        "demo", help="render a contact sheet PNG of the shipped Dactyl scene",
        description="Renders the shipped Dactyl scene (Shadow Hand and lettered cube) from all its cameras "
                    "for several seeds of the renderer config's randomization, with depth, normals and "
                    "segmentation shown as pictures, into one PNG contact sheet.")
    demo.add_argument("--out", default="orrb_demo.png", metavar="PNG", help="output file (default: %(default)s)")
    demo.add_argument("--seeds", type=positive_int, default=4, metavar="N",
                      help="number of seeds, one column each (default: %(default)s)")
    demo.add_argument("--first-seed", type=int, default=0, metavar="S",
                      help="seed of the first column; column j renders with S + j (default: %(default)s)")
    demo.add_argument("--state", type=nonneg_int, default=0, metavar="I",
                      help="which of the 64 shipped states (assets/states/qpos.csv) to render (default: %(default)s)")
    add_scene_options(demo, "dactyl.renderer_config.json", 128)
    demo.set_defaults(run=run)


def run(args) -> int:
    import numpy as np

    from orrb._version import __version__
    from orrb.contact_sheet import contact_sheet, save_png
    from orrb.dataset import load_states
    from orrb.utils import package_relative_path

    out = output_file(args.out)
    from PIL import Image

    if os.path.splitext(out)[1].lower() not in Image.registered_extensions():
        raise CommandError(f"--out: {out} has no image file extension that PIL writes; expected a path ending in .png")
    config = build_config(args, depth=True, normals=True, segmentation=True)
    states = load_states(os.path.join(package_relative_path("assets"), "states", "qpos.csv"))
    if not 0 <= args.state < len(states):
        raise CommandError(f"--state must be in [0, {len(states)}), got {args.state}")
    seeds = np.arange(args.first_seed, args.first_seed + args.seeds)
    qpos = np.repeat(states[args.state:args.state + 1], args.seeds, axis=0)
    started = time.perf_counter()
    with make_renderer(args, config) as renderer:
        response = renderer.render_batch({"qpos": qpos, "seeds": seeds})
        layout = renderer.layout
    elapsed = time.perf_counter() - started
    config_name = os.path.basename(config.renderer_config_path) if config.renderer_config_path else "no components"
    title = f"orrb {__version__} demo: state {args.state}, renderer config {config_name}, {args.size}x{args.size}"
    sheet = contact_sheet(response, layout, column_labels=[f"seed {s}" for s in seeds], title=title)
    path = save_png(sheet, out)
    print(f"wrote {path} ({len(config.camera_names)} cameras x {args.seeds} seeds, "
          f"colour/depth/normals/segmentation, rendered in {elapsed:.1f} s)")
    return 0
