"""``orrb serve ...``: a render server; its arguments go unchanged to the server's ``main``."""

from __future__ import annotations

__all__ = ["add_parser", "run"]


def add_parser(subparsers) -> None:
    # Parsed by the server itself ('orrb serve --help'): this entry only lists it.
    subparsers.add_parser("serve", add_help=False,
                          help="run a render server (arguments go to orrb.pool.server.main; 'orrb serve --help')")


def run(argv: list[str]) -> int:
    """Runs the render server with ``argv`` (after ``serve``); returns its exit status."""
    from orrb.pool import server

    return int(server.main(argv) or 0)
