"""``orrb tune``: a local web page to tune the randomization chain live (:mod:`orrb.tune`)."""

from __future__ import annotations

import argparse
import ipaddress
import os
import signal
import socket
import threading

from orrb.cli.common import CommandError, add_scene_options, build_config, make_renderer, output_file, positive_int

__all__ = ["add_parser", "run"]


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number in [0, 65535], got {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port number in [0, 65535], got {value}")
    return value


def add_parser(subparsers) -> None:
    tune = subparsers.add_parser(
        "tune", help="a local web page to tune the randomization live and save the config",
        description="Serves a web page showing a live grid of renders (cameras x seeds) and one panel per "
                    "component of the renderer config: change a property and the grid re-renders; add, "
                    "remove and reorder components; save the JSON. Binds 127.0.0.1 unless --bind is given; "
                    "a non-loopback address needs the shared secret (ORRB_SECRET or --secret-file), which "
                    "the page asks for (or take it as ?token=SECRET in the address).")
    tune.add_argument("--states", default=None, metavar="CSV",
                      help="states file (CSV or NPY, one qpos per row in mapping order) the state selector "
                           "picks rows from (default: the 64 shipped Dactyl states)")
    tune.add_argument("--seeds", type=positive_int, default=4, metavar="N",
                      help="seeds shown side by side, one column each (default: %(default)s)")
    tune.add_argument("--out", default=None, metavar="JSON",
                      help="file 'Save' writes the config to (default: the page downloads it)")
    tune.add_argument("--port", type=_port, default=8765, metavar="P",
                      help="TCP port of the page; 0 picks a free one (default: %(default)s)")
    tune.add_argument("--bind", default="127.0.0.1", metavar="ADDRESS",
                      help="IP address to listen on (default: %(default)s); a non-loopback address "
                           "requires a shared secret")
    tune.add_argument("--secret-file", default=None, metavar="PATH",
                      help="file holding the shared secret the page asks for (default: the ORRB_SECRET "
                           "environment variable; none on a loopback address)")
    add_scene_options(tune, "dactyl.renderer_config.json", 128)
    tune.set_defaults(run=run, workers=None)
    for action in tune._actions:  # the same option as elsewhere; only the default differs
        if action.dest == "workers":
            action.help = ("render server processes (orrb.RemoteRenderer); 0 renders in this process "
                           "(orrb.LocalRenderer) (default: 2, or none with --servers)")


def _read_secret(path: str | None) -> bytes | None:
    if path:
        try:
            with open(os.path.expanduser(path), "rb") as f:
                secret = f.read().strip()
        except OSError as e:
            raise CommandError(f"--secret-file: cannot read {path}: {e.strerror}") from None
        if not secret:
            raise CommandError(f"--secret-file: {path} is empty")
        return secret
    env = os.environ.get("ORRB_SECRET")
    return env.encode() if env else None


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def run(args) -> int:
    from orrb.extras import import_optional

    import_optional("starlette", "orrb tune")
    uvicorn = import_optional("uvicorn", "orrb tune")
    from orrb.config import RendererConfig
    from orrb.dataset import load_states
    from orrb.tune.app import MAX_FRAME, build_app
    from orrb.tune.session import EditError, TuneSession
    from orrb.utils import free_base_port, package_relative_path

    if args.workers is None:
        args.workers = 0 if args.servers else 2
    secret = _read_secret(args.secret_file)
    host = args.bind.strip("[]")
    if not _is_loopback(host) and secret is None:
        raise CommandError(f"refusing to bind {args.bind} without a shared secret: a non-loopback address needs "
                           "--secret-file PATH or ORRB_SECRET (the page then asks for it)")
    config = build_config(args)
    chain = (RendererConfig.load(config.resolve(config.renderer_config_path)) if config.renderer_config_path
             else RendererConfig())
    states = load_states(args.states or os.path.join(package_relative_path("assets"), "states", "qpos.csv"))
    out = os.path.abspath(os.path.expanduser(args.out)) if args.out else None
    if out is not None:
        output_file(out, example="tuned.json")
    if out is not None and not os.path.isdir(os.path.dirname(out)):
        raise CommandError(f"--out: the folder {os.path.dirname(out)} does not exist")

    builds = []

    def renderer_for(render_config, renderer_config):
        if builds and args.workers and not args.servers:  # the previous pool's ports may linger: take new ones
            args.base_port = free_base_port(args.workers)
        builds.append(1)
        return make_renderer(args, render_config, renderer_config)

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, args.port))
        sock.listen(128)  # connections wait in the backlog until the server runs
    except OSError as e:
        sock.close()
        raise CommandError(f"cannot listen on {args.bind}:{args.port}: {e.strerror}",
                           hint="choose another --port (0 picks a free one)") from None
    port = sock.getsockname()[1]
    try:
        try:
            session = TuneSession(config, chain, states, renderer_for, seeds=args.seeds, save_path=out)
        except EditError as e:
            raise CommandError(f"--config: {e}") from None
        with session:
            shown = f"[{host}]" if family == socket.AF_INET6 else host
            allowed = ({f"{name}:{port}" for name in ("127.0.0.1", "localhost", "[::1]", shown)}
                       if _is_loopback(host) else None)
            app = build_app(session, secret=secret, allowed_hosts=allowed)
            server = uvicorn.Server(uvicorn.Config(app, log_level="warning", ws_max_size=MAX_FRAME, lifespan="off",
                                                   timeout_graceful_shutdown=2))
            print(f"orrb tune: serving http://{shown}:{port}/ ({len(config.camera_names)} cameras x {args.seeds} "
                  f"seeds at {args.size} px, {'LocalRenderer' if not args.workers and not args.servers else 'a pool'}"
                  f"{', shared secret required' if secret else ''}; Ctrl+C stops)", flush=True)
            # uvicorn stops on SIGINT/SIGTERM, then raises the signal again with the handlers it
            # found: make both end this function normally, so the session closes its renderer.
            previous = signal.signal(signal.SIGTERM, _stop) if threading.current_thread() is threading.main_thread() \
                else None
            try:
                server.run(sockets=[sock])
            except (KeyboardInterrupt, _Stopped):
                pass
            finally:
                if previous is not None:
                    signal.signal(signal.SIGTERM, previous)
    finally:
        sock.close()
    print("orrb tune: stopped", flush=True)
    return 0


class _Stopped(Exception):
    """SIGTERM arrived (after the web server stopped)."""


def _stop(signum, frame) -> None:
    raise _Stopped()
