"""``orrb render STATES --out DIR``: states from CSV/NPY rendered to PNG files and/or one NPZ."""

from __future__ import annotations

import os

from orrb.cli.common import add_scene_options, build_config, make_renderer, output_folder, positive_int

__all__ = ["add_parser", "run"]


def add_parser(subparsers) -> None:
    render = subparsers.add_parser(
        "render", help="render states from a CSV or NPY file to PNG files and/or an NPZ",
        description="Renders every state (one qpos per row, mapping order) of a CSV or NPY file. PNGs go to "
                    "DIR/<camera>/<index>.png (and <index>_depth.png, _normals.png, _segmentation.png as "
                    "pictures); the NPZ DIR/render.npz holds every response array exactly (colour, depth, "
                    "normals, segmentation, auxiliary streams) plus qpos and seeds.")
    render.add_argument("states", metavar="STATES",
                        help="CSV (comma-separated, '#' comments) or .npy file, one qpos per row")
    render.add_argument("--out", required=True, metavar="DIR", help="output folder (created)")
    render.add_argument("--format", choices=("png", "npz", "both"), default="both",
                        help="what to write (default: %(default)s)")
    render.add_argument("--seed", type=int, default=0, metavar="S",
                        help="row i renders with seed S + i, as a request {'seed': S} would (default: %(default)s)")
    render.add_argument("--batch-size", type=positive_int, default=16, metavar="B",
                        help="states per render request (default: %(default)s)")
    render.add_argument("--depth", action="store_true", help="also render depth (metres)")
    render.add_argument("--normals", action="store_true", help="also render camera-space normals")
    render.add_argument("--segmentation", action="store_true", help="also render segmentation class ids")
    render.add_argument("--quiet", action="store_true", help="no progress bar")
    add_scene_options(render, "dactyl.renderer_config.json", 200)
    render.set_defaults(run=run)


def run(args) -> int:
    import numpy as np
    from tqdm import tqdm

    from orrb.contact_sheet import save_png
    from orrb.renderer import Modality
    from orrb.dataset import load_states

    out_dir = output_folder(args.out)
    states = load_states(args.states)
    config = build_config(args, depth=args.depth, normals=args.normals, segmentation=args.segmentation)
    n = len(states)
    seeds = np.uint64(args.seed % 2**64) + np.arange(n, dtype=np.uint64)
    os.makedirs(out_dir, exist_ok=True)
    write_png = args.format in ("png", "both")
    write_npz = args.format in ("npz", "both")
    parts: dict[str, list[np.ndarray]] = {}
    bar = None  # opened once the first batch has rendered, so a bad input fails in one line
    try:
        with make_renderer(args, config) as renderer:
            for start in range(0, n, args.batch_size):
                stop = min(start + args.batch_size, n)
                response = renderer.render_batch({"qpos": states[start:stop], "seeds": seeds[start:stop]})
                if bar is None:
                    bar = tqdm(total=n, unit=" states", desc="orrb render", disable=args.quiet, dynamic_ncols=True)
                if write_png:  # DIR/<camera>/<index>.png, <index>_depth.png, ...
                    for output in renderer.layout.images:
                        folder = os.path.join(out_dir, output.camera)
                        suffix = "" if output.modality is Modality.COLOR else f"_{output.modality.value}"
                        for i, picture in enumerate(output.picture(response[output.key])):
                            save_png(picture, os.path.join(folder, f"{start + i:05d}{suffix}.png"))
                if write_npz:  # every output of the response layout: images and component streams
                    for key in renderer.layout.keys():
                        parts.setdefault(key, []).append(response[key])
                bar.update(stop - start)
    finally:
        if bar is not None:
            bar.close()
    written = []
    if write_png:
        written.append(f"PNGs in {out_dir}/<camera>/")
    if write_npz:
        arrays = {key: np.concatenate(value) for key, value in parts.items()}
        arrays["qpos"] = states
        arrays["seeds"] = seeds
        npz = os.path.join(out_dir, "render.npz")
        tmp = npz + ".tmp.npz"
        np.savez(tmp, **arrays)
        os.replace(tmp, npz)
        written.append(npz)
    print(f"rendered {n} states x {len(config.camera_names)} cameras: " + ", ".join(written))
    return 0
