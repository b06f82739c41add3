"""The ``orrb`` command line (also ``python -m orrb``), one module per subcommand.

- ``orrb demo`` (:mod:`orrb.cli.demo`): a contact sheet PNG of the shipped Dactyl scene
  (cameras x seeds, with depth, normals and segmentation as pictures).
- ``orrb render STATES --out DIR`` (:mod:`orrb.cli.render`): states from CSV/NPY rendered to
  PNG files and/or one NPZ.
- ``orrb dataset --count N --out DIR`` (:mod:`orrb.cli.dataset`): a labelled, resumable
  dataset for vision training.
- ``orrb serve ...`` (:mod:`orrb.cli.serve`): a render server.
- ``orrb tune`` (:mod:`orrb.cli.tune`): a local web page to tune the component chain live.
- ``orrb config convert IN OUT`` (:mod:`orrb.cli.config`): a renderer config in the original's
  frame rewritten in MuJoCo's, printing what changed property by property.

A subcommand module has ``add_parser(subparsers)``, which adds its parser and sets
``run`` as its default, and ``run(args) -> int``; a new subcommand is one more module in
:data:`SUBCOMMANDS`. MuJoCo, the engine and the pool load inside ``run``, so
``orrb --help`` imports no GL library.

Every failure prints one line, ``orrb <command>: error: <what is wrong>``, and often a
second, ``  hint: <what to do>`` (:mod:`orrb.cli.failures`), with exit status 2 for bad
arguments or input and 1 when rendering fails; ``--debug`` (or ``ORRB_DEBUG=1``) shows the
traceback instead.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import traceback
from collections.abc import Sequence

from orrb.cli import config, dataset, demo, render, serve, tune

__all__ = ["SUBCOMMANDS", "build_parser", "main"]

# The subcommands in the order 'orrb --help' lists them. A new one is a module of this folder
# with add_parser(subparsers) and run(args) -> int, imported above and added here. ``serve``
# passes its arguments to the render server unparsed (see main).
SUBCOMMANDS = (demo, render, dataset, serve, config, tune)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="orrb",
        description="orrb: domain-randomized camera images from MuJoCo simulations "
                    "(a re-creation of OpenAI's Remote Rendering Backend on MuJoCo's renderer).",
        epilog="Start with 'orrb demo'. 'orrb <command> --help' explains each command's options.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    parser.add_argument("--debug", action="store_true",
                        help="on failure, show the full traceback instead of one line (also ORRB_DEBUG=1)")
    sub = parser.add_subparsers(dest="command", metavar="command")
    for module in SUBCOMMANDS:
        module.add_parser(sub)
    for name, subparser in sub.choices.items():
        if name != "serve":
            subparser.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                                   help="on failure, show the full traceback instead of one line")
    return parser


def _version() -> str:
    from orrb._version import __version__

    return __version__


def _report(command: str | None, error: BaseException) -> int:
    from orrb.cli.failures import explain

    failure = explain(error)
    prefix = f"orrb {command}" if command else "orrb"
    kind = "" if isinstance(error, KeyboardInterrupt) else "error: "
    print(f"{prefix}: {kind}{failure.message}", file=sys.stderr)
    if failure.hint:
        print(f"  hint: {failure.hint}", file=sys.stderr)
    return failure.status


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the ``orrb`` command; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    serve_argv = None
    positionals = [i for i, a in enumerate(argv) if not a.startswith("-")]
    if positionals and argv[positionals[0]] == "serve":  # the server parses its own arguments
        i = positionals[0]
        argv, serve_argv = argv[:i + 1], argv[i + 1:]
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    debug = getattr(args, "debug", False) or os.environ.get("ORRB_DEBUG", "") not in ("", "0")
    handler = None
    if serve_argv is None:  # (a server logs on its own)
        handler = _LogHandler(args.command, debug)
        logging.getLogger("orrb").addHandler(handler)
    try:
        return serve.run(serve_argv) if serve_argv is not None else args.run(args)
    except SystemExit:
        raise
    except BaseException as e:  # noqa: BLE001 (every failure becomes one line; --debug shows it all)
        if debug and not isinstance(e, KeyboardInterrupt):
            traceback.print_exc()
        return _report(args.command, e)
    finally:
        if handler is not None:
            logging.getLogger("orrb").removeHandler(handler)


class _LogHandler(logging.Handler):
    """Shows the pool's warnings (a server restarted) as one line each while a command runs.

    Errors are left out: the exception that follows them is reported (:func:`_report`).
    With ``--debug`` every record is shown whole.
    """

    def __init__(self, command: str, debug: bool):
        super().__init__(logging.DEBUG if debug else logging.WARNING)
        self.command = command
        self.debug = debug

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno >= logging.ERROR and not self.debug:
            return
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 (a bad log call must not end the command)
            message = str(record.msg)
        if not self.debug:
            message = message.strip().splitlines()[0] if message.strip() else message
        print(f"orrb {self.command}: {record.levelname.lower()}: {message}", file=sys.stderr, flush=True)
