"""Version of the orrb package and of the rendering backend it drives."""

__version__ = "0.1.0"


def get_renderer_version() -> str:
    """Returns a string identifying the rendering backend: orrb and MuJoCo versions.

    A server whose version differs from the client's ``config.renderer_version``
    (when that is not None) is refused at ``RemoteRenderer.start()``.
    """
    import mujoco

    return f"orrb-{__version__}+mujoco-{mujoco.__version__}"
