"""What the subcommands share: argument types, the scene options, the config, the renderer.

Nothing here imports MuJoCo or the pool at module level; :func:`import_gl` loads MuJoCo
when a command is about to render, so ``orrb --help`` never touches the GL stack.
"""

from __future__ import annotations

import argparse
import os
import socket
from collections.abc import Sequence

from orrb.errors import is_gl_load_error
from orrb.extras import install_line

__all__ = [
    "CommandError",
    "MissingSystemLibrary",
    "add_scene_options",
    "build_config",
    "camera_list",
    "import_gl",
    "make_renderer",
    "nonneg_int",
    "positive_int",
]


class CommandError(Exception):
    """A mistake in the command's arguments or inputs: reported in one line, exit status 2.

    Args:
        message: what is wrong (names the option and the value).
        hint: what to do about it, printed on a second line (optional).
    """

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.hint = hint


class MissingSystemLibrary(Exception):
    """MuJoCo's GL backend could not load a system library (e.g. ``libEGL``): exit status 1.

    Args:
        message: which library could not be loaded and why.
        hint: the command that installs it.
    """

    def __init__(self, message: str, hint: str):
        super().__init__(message)
        self.hint = hint


# Debian/Ubuntu packages MuJoCo's headless backends need (scripts/install.sh installs the EGL ones).
SYSTEM_PACKAGES = {
    "egl": ("libegl1", "libegl-mesa0", "libgl1", "libgl1-mesa-dri"),
    "osmesa": ("libosmesa6",),
    "glfw": ("libglfw3", "libgl1"),
}


def apt_line(backend: str | None = None) -> str:
    """The ``apt-get install`` line for the GL backend ``backend`` (default: ``$MUJOCO_GL``)."""
    backend = (backend or os.environ.get("MUJOCO_GL") or "egl").lower()
    return "sudo apt-get install -y " + " ".join(SYSTEM_PACKAGES.get(backend, SYSTEM_PACKAGES["egl"]))


def import_gl():
    """Imports MuJoCo (which loads its GL backend, ``$MUJOCO_GL``) and returns the module.

    Raises:
        MissingSystemLibrary: the backend's system library is missing; PyOpenGL reports
            a missing ``libEGL`` as an ``AttributeError`` deep in its import.
    """
    try:
        import mujoco
    except ModuleNotFoundError as e:
        if e.name == "mujoco":
            raise CommandError("MuJoCo is not installed", hint="pip install mujoco") from e
        raise _missing_library(e) from e
    except (ImportError, AttributeError, OSError) as e:
        raise _missing_library(e) from e
    return mujoco


def _missing_library(error: BaseException) -> MissingSystemLibrary:
    text = str(error)
    if not is_gl_load_error(error):
        # not the GL stack: a broken or mismatched MuJoCo (wrong glibc, NumPy, ...); say what it is
        first = text.splitlines()[0] if text else type(error).__name__
        return MissingSystemLibrary(f"MuJoCo cannot be imported: {first}",
                                    hint=f"reinstall it for this Python: {install_line('mujoco')} --force-reinstall")
    backend = (os.environ.get("MUJOCO_GL") or "egl").lower()
    library = {"egl": "libEGL", "osmesa": "libOSMesa", "glfw": "libglfw"}.get(backend, f"the {backend} library")
    detail = f" ({str(error).splitlines()[0]})" if isinstance(error, OSError) and str(error) else ""
    return MissingSystemLibrary(
        f"MuJoCo cannot load {library}, which it needs to render without a display (MUJOCO_GL={backend}){detail}",
        hint=f"install it: {apt_line(backend)}")


# -- argument types ------------------------------------------------------------------------------
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


positive_int = _int_at_least(1, "a positive integer")
nonneg_int = _int_at_least(0, "an integer >= 0")


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds > 0, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a number of seconds > 0, got {value}")
    return value


def output_folder(path: str, option: str = "--out") -> str:
    """``path`` as an absolute folder that can be created or written into, checked before
    anything renders.

    Raises:
        CommandError: ``path``, or the nearest of its parents that exists, is not a folder.
    """
    path = os.path.abspath(os.path.expanduser(path))
    existing = path
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        what = f"{path} is a file" if existing == path else f"{existing} (a parent of {path}) is a file"
        raise CommandError(f"{option}: {what}; expected a folder")
    return path


def output_file(path: str, option: str = "--out", example: str = "x.png") -> str:
    """``path`` as an absolute file path that can be written, checked before anything renders
    (``example``: a file name the message suggests inside a folder given instead).

    Raises:
        CommandError: ``path`` is a folder, or the nearest of its parents that exists is not one.
    """
    path = os.path.abspath(os.path.expanduser(path))
    if os.path.isdir(path):
        raise CommandError(f"{option}: {path} is a folder; expected a file path such as {os.path.join(path, example)}")
    output_folder(os.path.dirname(path), option)
    return path


def camera_list(text: str) -> list[str]:
    names = [c.strip() for c in text.split(",") if c.strip()]
    if not names:
        raise argparse.ArgumentTypeError("expected comma-separated camera names, e.g. vision_cam_left,vision_cam_top")
    return names


def address_list(text: str) -> list[str]:
    addresses = [a.strip() for a in text.split(",") if a.strip()]
    bad = [a for a in addresses if not a.startswith(("tcp://", "ipc://"))]
    if not addresses or bad:
        raise argparse.ArgumentTypeError(f"expected comma-separated addresses like tcp://HOST:PORT, got {text!r}")
    return addresses


# -- scene and rendering options -----------------------------------------------------------------
def add_scene_options(parser: argparse.ArgumentParser, default_config: str | None, default_size: int) -> None:
    """Adds the options saying what to render (``scene``) and where (``rendering``)."""
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
    group.add_argument("--cameras", type=camera_list, default=None, metavar="A,B,...",
                       help="comma-separated cameras to render (default: every camera of the model)")
    group.add_argument("--size", type=positive_int, default=default_size, metavar="PX",
                       help="image width and height in pixels (default: %(default)s)")
    group.add_argument("--msaa", type=nonneg_int, default=None, metavar="N",
                       help="multisample anti-aliasing samples (default: the model's, 4; 0 renders ~1.7x faster)")
    pool = parser.add_argument_group("rendering")
    pool.add_argument("--workers", type=nonneg_int, default=0, metavar="N",
                      help="render server processes (orrb.RemoteRenderer); 0 renders in this process "
                           "(orrb.LocalRenderer) (default: %(default)s)")
    pool.add_argument("--base-port", type=positive_int, default=15500, metavar="PORT",
                      help="first port of the render servers with --workers; they listen on 127.0.0.1, "
                           "PORT to PORT+N-1 (default: %(default)s)")
    pool.add_argument("--servers", type=address_list, default=None, metavar="tcp://HOST:PORT,...",
                      help="render on servers already running (started with 'orrb serve') instead of "
                           "spawning --workers")
    pool.add_argument("--start-timeout", type=positive_float, default=120.0, metavar="S",
                      help="seconds a spawned render server may take to start and load the scene "
                           "(default: %(default)s)")
    pool.add_argument("--connect-timeout", type=positive_float, default=None, metavar="S",
                      help="seconds a server of --servers may take to answer (default: RemoteRenderer's)")


def scene_path(value: str | None) -> str | None:
    """``None`` for 'none'; a path existing from the current folder becomes absolute;
    anything else is left to resolve against the asset folder."""
    if value is None or value.lower() == "none" or value == "":
        return None
    expanded = os.path.expanduser(value)
    if os.path.exists(expanded):
        return os.path.abspath(expanded)
    return value


def build_config(args, depth: bool = False, normals: bool = False, segmentation: bool = False):
    """The :class:`orrb.RemoteRendererConfig` of the scene options; checks the files exist.

    Raises:
        CommandError: a scene file is missing, or the model has no camera to render.
    """
    from orrb.config import RemoteRendererConfig
    from orrb.utils import package_relative_path

    config = RemoteRendererConfig()
    config.image_width = config.image_height = args.size
    config.model_xml_path = scene_path(args.model)
    if config.model_xml_path is None:
        raise CommandError("--model cannot be 'none': give a MuJoCo XML scene")
    config.model_mapping_path = scene_path(args.mapping)
    config.renderer_config_path = scene_path(args.config)
    config.asset_basedir = (os.path.abspath(os.path.expanduser(args.asset_basedir)) if args.asset_basedir
                            else package_relative_path("assets"))
    config.render_depth = depth
    config.render_normals = normals
    config.render_segmentation = segmentation
    if args.msaa is not None:
        config.render_settings.msaa_samples = args.msaa
    for what, path in (("--model", config.model_xml_path), ("--mapping", config.model_mapping_path),
                       ("--config", config.renderer_config_path)):
        if path is not None and not os.path.isfile(config.resolve(path)):
            raise CommandError(f"{what}: file not found: {config.resolve(path)}",
                               hint=f"relative paths resolve against the current folder or {config.asset_basedir}")
    config.camera_names = list(args.cameras) if args.cameras else _model_cameras(config)
    return config


def _model_cameras(config) -> list[str]:
    import_gl()
    from orrb.scene import load_spec

    xml = config.resolve(config.model_xml_path)
    names = [camera.name for camera in load_spec(xml).cameras if camera.name]
    if not names:
        raise CommandError(f"--model {xml} has no named camera to render", hint="add a <camera name=...> to the model")
    return names


def _busy_ports(ports: Sequence[int]) -> list[int]:
    busy = []
    for port in ports:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                busy.append(port)
    return busy


def make_renderer(args, config, renderer_config=None):
    """A started renderer: ``LocalRenderer``, or a pool of ``--workers`` spawned servers,
    or the running ``--servers``.

    Raises:
        CommandError: a port of ``--base-port`` is busy, or both ``--workers`` and ``--servers``.
    """
    import_gl()
    if args.servers and args.workers:
        raise CommandError("give either --workers (servers spawned here) or --servers (servers already running), not both")
    if not args.servers and args.workers == 0:
        from orrb.local import LocalRenderer

        return LocalRenderer(config, renderer_config).start()
    from orrb.pool.client import RemoteRenderer
    from orrb.utils import build_server_configs, free_base_port

    if args.servers:
        server_configs = list(args.servers)
    else:
        ports = range(args.base_port, args.base_port + args.workers)
        if ports[-1] > 65535:
            raise CommandError(f"--base-port {args.base_port} with --workers {args.workers} runs past port 65535")
        busy = _busy_ports(ports)
        if busy:
            raise CommandError(f"--base-port {args.base_port}: port {busy[0]} on 127.0.0.1 is already in use",
                               hint=f"choose free ports, e.g. --base-port {free_base_port(args.workers)}")
        server_configs = build_server_configs(1, args.workers, args.base_port)
    timeouts = {"start_timeout": args.start_timeout}
    if args.connect_timeout is not None:
        timeouts["connect_timeout"] = args.connect_timeout
    renderer = RemoteRenderer(f"orrb-{args.command}", server_configs, config, renderer_config, **timeouts)
    try:
        return renderer.start()
    except BaseException:
        renderer.shutdown()
        raise

