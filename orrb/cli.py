"""The ``orrb`` command line (also ``python -m orrb``).

Subcommands:

- ``orrb demo``: a contact sheet PNG of the shipped Dactyl scene (cameras x seeds, with
  depth, normals and segmentation as pictures).
- ``orrb render STATES --out DIR``: states from CSV/NPY rendered to PNG files and/or one NPZ.
- ``orrb dataset --count N --out DIR``: a labelled, resumable dataset for vision training.
- ``orrb serve ...``: a render server (``orrb.pool.server.main``).
- ``orrb bench``: runs the scripts of ``benchmarks/`` and prints one table of ratios.
- ``orrb config convert IN OUT``: a renderer config in the original's frame rewritten in
  MuJoCo's, printing what changed property by property.

Heavy modules (MuJoCo, the engine, the pool) load inside the subcommands, so
``orrb --help`` stays fast.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

__all__ = ["main"]

DACTYL_CAMERAS = ("vision_cam_left", "vision_cam_right", "vision_cam_top")
BENCHMARKS = ("engine.py", "randomization.py", "pool.py", "vector_env.py")


class CommandError(Exception):
    """A user error reported as ``orrb <cmd>: error: ...`` with exit status 2."""


# -- shared options ------------------------------------------------------------------------------
def _int_at_least(minimum: int, expected: str):
    """An argparse type: an int >= ``minimum``, else an error saying ``expected``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {value}")
        return value

    return parse


_positive_int = _int_at_least(1, "a positive integer")
_nonneg_int = _int_at_least(0, "an integer >= 0")


def _camera_list(text: str) -> list[str]:
    names = [c.strip() for c in text.split(",") if c.strip()]
    if not names:
        raise argparse.ArgumentTypeError("expected comma-separated camera names, e.g. vision_cam_left,vision_cam_top")
    return names


def _add_scene_options(parser: argparse.ArgumentParser, default_config: str | None, default_size: int,
                       default_cameras: Sequence[str] = DACTYL_CAMERAS) -> None:
    group = parser.add_argument_group("scene")
    group.add_argument("--model", default="dactyl.xml", metavar="XML",
                       help="MuJoCo XML scene; relative paths resolve against --asset-basedir, "
                            "unless they exist relative to the current folder (default: %(default)s)")
    group.add_argument("--mapping", default="dactyl.mapping", metavar="FILE",
                       help="joint mapping file ('joint_name, index' per line), or 'none' to take each "
                            "state as the model's full qpos (default: %(default)s)")
    group.add_argument("--config", default=default_config if default_config else "none", metavar="JSON",
                       help="renderer config (component chain, original ORRB JSON), or 'none' for no "
                            "randomization (default: %(default)s)")
    group.add_argument("--asset-basedir", default=None, metavar="DIR",
                       help="folder the scene paths are relative to (default: the shipped assets)")
    group.add_argument("--cameras", type=_camera_list, default=list(default_cameras), metavar="A,B,...",
                       help=f"comma-separated cameras to render (default: {','.join(default_cameras)})")
    group.add_argument("--size", type=_positive_int, default=default_size, metavar="PX",
                       help="image width and height in pixels (default: %(default)s)")
    group.add_argument("--msaa", type=_nonneg_int, default=None, metavar="N",
                       help="multisample anti-aliasing samples (default: the model's, 4; 0 renders ~1.7x faster)")
    pool = parser.add_argument_group("rendering")
    pool.add_argument("--workers", type=_nonneg_int, default=0, metavar="N",
                      help="render server processes (orrb.RemoteRenderer); 0 renders in this process "
                           "(orrb.LocalRenderer) (default: %(default)s)")
    pool.add_argument("--base-port", type=_positive_int, default=15500, metavar="PORT",
                      help="first port of the render servers with --workers (default: %(default)s)")


def _scene_path(value: str | None) -> str | None:
    """``None`` for 'none'; a path existing from the current folder becomes absolute;
    anything else is left to resolve against the asset folder."""
    if value is None or value.lower() == "none" or value == "":
        return None
    expanded = os.path.expanduser(value)
    if os.path.exists(expanded):
        return os.path.abspath(expanded)
    return value


def _build_config(args, depth: bool = False, normals: bool = False, segmentation: bool = False):
    import orrb

    config = orrb.RemoteRendererConfig()
    config.camera_names = list(args.cameras)
    config.image_width = config.image_height = args.size
    config.model_xml_path = _scene_path(args.model)
    if config.model_xml_path is None:
        raise CommandError("--model cannot be 'none': give a MuJoCo XML scene")
    config.model_mapping_path = _scene_path(args.mapping)
    config.renderer_config_path = _scene_path(args.config)
    config.asset_basedir = (os.path.abspath(os.path.expanduser(args.asset_basedir)) if args.asset_basedir
                            else orrb.utils.package_relative_path("assets"))
    config.render_depth = depth
    config.render_normals = normals
    config.render_segmentation = segmentation
    if args.msaa is not None:
        config.render_settings.msaa_samples = args.msaa
    for what, path in (("--model", config.model_xml_path), ("--mapping", config.model_mapping_path),
                       ("--config", config.renderer_config_path)):
        if path is not None and not os.path.isfile(config.resolve(path)):
            raise CommandError(f"{what}: file not found: {config.resolve(path)} "
                               f"(relative paths resolve against {config.asset_basedir} or the current folder)")
    return config


def _make_renderer(args, config, renderer_config=None):
    """A started renderer: ``LocalRenderer`` or, with ``--workers N``, a pool of N servers."""
    import orrb

    if args.workers == 0:
        return orrb.LocalRenderer(config, renderer_config).start()
    try:
        remote_cls = orrb.RemoteRenderer
    except (ImportError, AttributeError) as e:
        raise CommandError(f"--workers needs the server pool (orrb.RemoteRenderer), which is unavailable: {e}; "
                           "use --workers 0") from None
    servers = orrb.utils.build_server_configs(1, args.workers, args.base_port)
    renderer = remote_cls("orrb-cli", servers, config)
    renderer.start()
    if renderer_config is not None:
        try:
            renderer.update(renderer_config)
        except BaseException:
            renderer.shutdown()
            raise
    return renderer


def _status(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# -- demo ----------------------------------------------------------------------------------------
def _cmd_demo(args) -> int:
    import numpy as np

    import orrb
    from orrb.contact_sheet import contact_sheet, save_png
    from orrb.dataset import load_states

    config = _build_config(args, depth=True, normals=True, segmentation=True)
    states = load_states(os.path.join(orrb.utils.package_relative_path("assets"), "states", "qpos.csv"))
    if not 0 <= args.state < len(states):
        raise CommandError(f"--state must be in [0, {len(states)}), got {args.state}")
    seeds = np.arange(args.first_seed, args.first_seed + args.seeds)
    qpos = np.repeat(states[args.state:args.state + 1], args.seeds, axis=0)
    started = time.perf_counter()
    renderer = _make_renderer(args, config)
    try:
        response = renderer.render_batch({"qpos": qpos, "seeds": seeds})
    finally:
        renderer.shutdown()
    elapsed = time.perf_counter() - started
    config_name = os.path.basename(config.renderer_config_path) if config.renderer_config_path else "no components"
    title = (f"orrb {orrb.__version__} demo: state {args.state}, renderer config {config_name}, "
             f"{args.size}x{args.size}")
    sheet = contact_sheet(response, config.camera_names, [f"seed {s}" for s in seeds], title=title)
    path = save_png(sheet, args.out)
    print(f"wrote {path} ({len(config.camera_names)} cameras x {args.seeds} seeds, "
          f"colour/depth/normals/segmentation, rendered in {elapsed:.1f} s)")
    return 0


# -- render --------------------------------------------------------------------------------------
def _cmd_render(args) -> int:
    import numpy as np
    from tqdm import tqdm

    from orrb.contact_sheet import modality_images, save_png
    from orrb.dataset import load_states

    try:
        states = load_states(args.states)
    except (FileNotFoundError, ValueError) as e:
        raise CommandError(str(e)) from None
    config = _build_config(args, depth=args.depth, normals=args.normals, segmentation=args.segmentation)
    n = len(states)
    seeds = np.uint64(args.seed % 2**64) + np.arange(n, dtype=np.uint64)
    out_dir = os.path.abspath(args.out)
    os.makedirs(out_dir, exist_ok=True)
    write_png = args.format in ("png", "both")
    write_npz = args.format in ("npz", "both")
    parts: dict[str, list[np.ndarray]] = {}
    renderer = _make_renderer(args, config)
    try:
        with tqdm(total=n, unit="img", desc="orrb render", disable=args.quiet, dynamic_ncols=True) as bar:
            for start in range(0, n, args.batch_size):
                stop = min(start + args.batch_size, n)
                response = renderer.render_batch({"qpos": states[start:stop], "seeds": seeds[start:stop]})
                if write_png:
                    for camera in config.camera_names:
                        folder = os.path.join(out_dir, camera)
                        for label, pictures in modality_images(response, camera):
                            suffix = "" if label == "colour" else f"_{label}"
                            for i, picture in enumerate(pictures):
                                save_png(picture, os.path.join(folder, f"{start + i:05d}{suffix}.png"))
                if write_npz:
                    for key, value in response.items():
                        if isinstance(value, np.ndarray) and value.ndim >= 1 and len(value) == stop - start:
                            parts.setdefault(key, []).append(value)
                bar.update(stop - start)
    finally:
        renderer.shutdown()
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


# -- dataset -------------------------------------------------------------------------------------
def _dataset_chain(config, object_name: str):
    """The chain for a dataset: the config's, plus a Tracker of the object when it has none."""
    import orrb
    from orrb.components.base import registry

    chain = (orrb.RendererConfig.load(config.resolve(config.renderer_config_path))
             if config.renderer_config_path else orrb.RendererConfig())
    added = None
    if "Tracker" in registry() and not any(c.type == "Tracker" for c in chain):
        added = orrb.RendererConfig()
        added.add("Tracker", "dataset_tracker", camera_names=",".join(config.camera_names),
                  tracked_object_names=object_name, tracked_object_aliases=object_name)
        chain = chain.merged(added)
    return chain, added


def _cmd_dataset(args) -> int:
    from orrb.dataset import DatasetWriter

    config = _build_config(args, depth=args.depth, segmentation=not args.no_segmentation)
    chain, added = _dataset_chain(config, args.object)
    renderer = (_make_renderer(args, config, chain) if args.workers == 0
                else _make_renderer(args, config, added))
    try:
        class_names = renderer.class_names if hasattr(renderer, "class_names") else []
        writer = DatasetWriter(renderer, config, args.out, args.count, args.shard_size, args.seed,
                               object_name=args.object, renderer_config_json=chain.to_dict(),
                               class_names=class_names)
        before = len(writer.pending_shards())
        written = writer.run(progress=not args.quiet, stop_after=args.stop_after)
    finally:
        renderer.shutdown()
    left = before - written
    state = "complete" if left == 0 else f"{left} shards still to write (rerun the same command to continue)"
    print(f"wrote {written} shards to {writer.directory} ({writer.num_shards} in all, "
          f"{writer.count} items); dataset {state}")
    return 0


# -- serve ---------------------------------------------------------------------------------------
def _cmd_serve(argv: list[str]) -> int:
    from orrb.pool import server

    result = server.main(argv)
    return int(result or 0)


# -- bench ---------------------------------------------------------------------------------------
# benchmarks/_common.py prints "ratio: <what> = <value> (target >= <target>)"; a line
# stating "<value>x" is accepted too.
_RATIO_LINE = re.compile(r"^ratio:\s*(?P<what>.+?)\s*=\s*(?P<value>[-+0-9.eE]+)(?:\s*\((?P<target>[^)]*)\))?\s*$")
_TIMES = re.compile(r"(?<![\w.])(\d+(?:\.\d+)?)\s*x(?![\w.])")


def find_benchmarks_dir(explicit: str | None = None) -> Path | None:
    """``benchmarks/`` of the repository checkout next to the package (not installed by pip)."""
    if explicit:
        return Path(explicit)
    candidate = Path(__file__).resolve().parent.parent / "benchmarks"
    return candidate if candidate.is_dir() else None


def _ratio_lines(text: str) -> list[tuple[str, str, str]]:
    """``[(what, ratio, target), ...]`` for the ratio lines of a benchmark's output."""
    lines = [line.strip() for line in text.splitlines()]
    rows = [(m["what"], m["value"], m["target"] or "") for m in map(_RATIO_LINE.match, lines) if m]
    if rows:
        return rows
    for line in lines:  # a script without "ratio:" lines: take lines stating "<value>x"
        found = _TIMES.findall(line)
        if found and not line.startswith(("usage", "#", "==")):
            rows.append((line, found[-1] + "x", ""))
    return rows


def _cmd_bench(args) -> int:
    bench_dir = find_benchmarks_dir(args.dir)
    if bench_dir is None or not bench_dir.is_dir():
        where = args.dir or Path(__file__).resolve().parent.parent / "benchmarks"
        print(f"orrb bench: no benchmarks folder at {where}: the benchmarks ship with the repository checkout, "
              "not with the installed package; run from a clone (pip install -e .) or give --dir",
              file=sys.stderr)
        return 2
    names = [n if n.endswith(".py") else n + ".py" for n in args.only] if args.only else list(BENCHMARKS)
    table: list[tuple[str, str, str, str]] = []
    status = 0
    for name in names:
        script = bench_dir / name
        if not script.is_file():
            table.append((name, "missing", "-", ""))
            continue
        command = [sys.executable, str(script)]
        if not args.full and "--quick" in script.read_text(errors="replace"):
            command.append("--quick")
        _status(f"orrb bench: running {' '.join(command[1:])}")
        started = time.perf_counter()
        try:
            proc = subprocess.run(command, capture_output=True, text=True, timeout=args.timeout,
                                  cwd=str(bench_dir.parent))
        except subprocess.TimeoutExpired:
            table.append((name, f"timed out after {args.timeout} s", "-", ""))
            status = 1
            continue
        elapsed = time.perf_counter() - started
        if args.verbose:
            print(proc.stdout, end="")
        if proc.returncode != 0:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["(no output)"]
            table.append((name, f"failed (exit {proc.returncode}): {tail[0]}", "-", ""))
            status = 1
            continue
        rows = _ratio_lines(proc.stdout)
        if not rows:
            table.append((name, f"no ratio printed ({elapsed:.0f} s)", "-", ""))
        for what, ratio, target in rows:
            table.append((name, what, ratio, target))
    width = max(len("benchmark"), *(len(r[0]) for r in table))
    what_w = min(90, max(len("ratio of"), *(len(r[1]) for r in table)))
    value_w = max(len("value"), *(len(r[2]) for r in table))
    print(f"{'benchmark':<{width}}  {'ratio of':<{what_w}}  {'value':>{value_w}}  target")
    print(f"{'-' * width}  {'-' * what_w}  {'-' * value_w}  ------")
    for name, what, ratio, target in table:
        print(f"{name:<{width}}  {what[:what_w]:<{what_w}}  {ratio:>{value_w}}  {target}")
    return status


# -- parser --------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="orrb",
        description="orrb: domain-randomized camera images from MuJoCo simulations "
                    "(a re-creation of OpenAI's Remote Rendering Backend on MuJoCo's renderer).",
        epilog="Start with 'orrb demo'. 'orrb <command> --help' explains each command's options.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="command")

    demo = sub.add_parser(
        "demo", help="render a contact sheet PNG of the shipped Dactyl scene",
        description="Renders the shipped Dactyl scene (Shadow Hand and lettered cube) from all three cameras "
                    "for several seeds of the renderer config's randomization, with depth, normals and "
                    "segmentation shown as pictures, into one PNG contact sheet.")
    demo.add_argument("--out", default="orrb_demo.png", metavar="PNG", help="output file (default: %(default)s)")
    demo.add_argument("--seeds", type=_positive_int, default=4, metavar="N",
                      help="number of seeds, one column each (default: %(default)s)")
    demo.add_argument("--first-seed", type=int, default=0, metavar="S",
                      help="seed of the first column; column j renders with S + j (default: %(default)s)")
    demo.add_argument("--state", type=_nonneg_int, default=0, metavar="I",
                      help="which of the 64 shipped states (assets/states/qpos.csv) to render (default: %(default)s)")
    _add_scene_options(demo, "dactyl.renderer_config.json", 128)
    demo.set_defaults(func=_cmd_demo)

    render = sub.add_parser(
        "render", help="render states from a CSV or NPY file to PNG files and/or an NPZ",
        description="Renders every state (one qpos per row, mapping order) of a CSV or NPY file. PNGs go to "
                    "DIR/<camera>/<index>.png (and <index>_depth.png, _normals.png, _segmentation.png as "
                    "pictures); the NPZ DIR/render.npz holds every response array exactly (colour, depth, "
                    "normals, segmentation, auxiliary streams) plus qpos and seeds.")
    render.add_argument("states", metavar="STATES", help="CSV (comma-separated, '#' comments) or .npy file, one qpos per row")
    render.add_argument("--out", required=True, metavar="DIR", help="output folder (created)")
    render.add_argument("--format", choices=("png", "npz", "both"), default="both",
                        help="what to write (default: %(default)s)")
    render.add_argument("--seed", type=int, default=0, metavar="S",
                        help="row i renders with seed S + i, as a request {'seed': S} would (default: %(default)s)")
    render.add_argument("--batch-size", type=_positive_int, default=16, metavar="B",
                        help="states per render request (default: %(default)s)")
    render.add_argument("--depth", action="store_true", help="also render depth (metres)")
    render.add_argument("--normals", action="store_true", help="also render camera-space normals")
    render.add_argument("--segmentation", action="store_true", help="also render segmentation class ids")
    render.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_scene_options(render, "dactyl.renderer_config.json", 200)
    render.set_defaults(func=_cmd_render)

    dataset = sub.add_parser(
        "dataset", help="write a labelled, resumable dataset for vision training",
        description="Renders randomized images of sampled states (hand joints uniform in their ranges, the "
                    "cube near its rest position with a uniformly random orientation) into DIR/shard_*.npz "
                    "with per-image labels: tracker positions and boxes, the cube's pose, segmentation with "
                    "class names in DIR/manifest.json (format documented there and in orrb.dataset). "
                    "Loads with numpy alone. Rerunning the same command continues an interrupted run and "
                    "never rewrites finished shards.")
    dataset.add_argument("--count", type=_positive_int, required=True, metavar="N", help="number of images per camera")
    dataset.add_argument("--out", required=True, metavar="DIR", help="output folder (created; resumed if it holds the same dataset)")
    dataset.add_argument("--shard-size", type=_positive_int, default=64, metavar="N", help="items per shard file (default: %(default)s)")
    dataset.add_argument("--seed", type=_nonneg_int, default=0, metavar="S",
                         help="dataset seed: states and render seeds derive from it and the item index (default: %(default)s)")
    dataset.add_argument("--object", default="cube", metavar="BODY",
                         help="body whose pose is labelled and tracked when the config has no Tracker (default: %(default)s)")
    dataset.add_argument("--depth", action="store_true", help="also store depth (float32 metres)")
    dataset.add_argument("--no-segmentation", action="store_true", help="do not store segmentation masks")
    dataset.add_argument("--stop-after", type=_nonneg_int, default=None, metavar="K",
                         help="stop after writing K new shards (build a dataset in chunks; rerun to continue)")
    dataset.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_scene_options(dataset, "dactyl.renderer_config.json", 200)
    dataset.set_defaults(func=_cmd_dataset)

    sub.add_parser("serve", help="run a render server (arguments go to orrb.pool.server.main; 'orrb serve --help')",
                   add_help=False)

    bench = sub.add_parser(
        "bench", help="run the throughput benchmarks and print a table of ratios",
        description="Runs the scripts of benchmarks/ (engine.py, randomization.py, pool.py, vector_env.py) as "
                    "subprocesses (with --quick where supported) and prints every ratio they report in one "
                    "table. The benchmarks ship with the repository checkout, not with the installed package.")
    bench.add_argument("--dir", default=None, metavar="DIR", help="benchmarks folder (default: benchmarks/ next to the package)")
    bench.add_argument("--only", type=_camera_list, default=None, metavar="A,B",
                       help="run only these scripts, e.g. engine,pool")
    bench.add_argument("--full", action="store_true", help="run the full benchmarks instead of --quick")
    bench.add_argument("--timeout", type=_positive_int, default=1800, metavar="S",
                       help="seconds allowed per benchmark (default: %(default)s)")
    bench.add_argument("--verbose", action="store_true", help="also print each benchmark's own output")
    bench.set_defaults(func=_cmd_bench)

    config = sub.add_parser("config", help="work with renderer config files (e.g. 'orrb config convert IN OUT')")
    config_sub = config.add_subparsers(dest="config_command", metavar="action", required=True)
    convert = config_sub.add_parser(
        "convert", help="rewrite a renderer config of the original renderer in MuJoCo's frame",
        description="Reads a renderer config file (one without a top-level \"frame\" is the original "
                    "renderer's, in its Unity frame), writes it with \"frame\": \"mujoco\" and its world "
                    "and camera-frame vectors converted, and prints each converted property.")
    convert.add_argument("input", metavar="IN", help="renderer config JSON to read")
    convert.add_argument("output", metavar="OUT", help="renderer config JSON to write")
    convert.set_defaults(func=_cmd_config_convert)
    return parser


def _cmd_config_convert(args) -> int:
    from orrb import frames

    source_frame = frames.file_frame(args.input) if os.path.isfile(args.input) else frames.UNITY
    changes = frames.convert_file(args.input, args.output)
    print(frames.conversion_report(args.input, args.output, changes, source_frame))
    return 0


def _version() -> str:
    from orrb._version import __version__

    return __version__


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the ``orrb`` command; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "serve":
        return _cmd_serve(argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return args.func(args)
    except CommandError as e:
        print(f"orrb {args.command}: error: {e}", file=sys.stderr)
        return 2
    except (ValueError, FileNotFoundError) as e:  # includes orrb.ConfigError
        print(f"orrb {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"orrb {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
