"""``orrb config convert IN OUT``: a renderer config of the original renderer in MuJoCo's frame."""

from __future__ import annotations

import os

__all__ = ["add_parser", "run"]


def add_parser(subparsers) -> None:
    config = subparsers.add_parser("config", help="work with renderer config files (e.g. 'orrb config convert IN OUT')")
    config_sub = config.add_subparsers(dest="config_command", metavar="action", required=True)
    convert = config_sub.add_parser(
        "convert", help="rewrite a renderer config of the original renderer in MuJoCo's frame",
        description="Reads a renderer config file (one without a top-level \"frame\" is the original "
                    "renderer's, in its Unity frame), writes it with \"frame\": \"mujoco\" and its world "
                    "and camera-frame vectors converted, and prints each converted property.")
    convert.add_argument("input", metavar="IN", help="renderer config JSON to read")
    convert.add_argument("output", metavar="OUT", help="renderer config JSON to write")
    convert.set_defaults(run=run)


def run(args) -> int:
    from orrb import frames

    source_frame = frames.file_frame(args.input) if os.path.isfile(args.input) else frames.UNITY
    changes = frames.convert_file(args.input, args.output)
    print(frames.conversion_report(args.input, args.output, changes, source_frame))
    return 0
