"""Shared fixtures: the shipped Dactyl scene, its sample states, small render configs."""

from __future__ import annotations

import os

import numpy as np
import pytest

import orrb

DACTYL_CAMERAS = ["vision_cam_left", "vision_cam_right", "vision_cam_top"]
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="session", autouse=True)
def _run_outside_the_repository(tmp_path_factory):
    """Runs the session in a scratch folder, so nothing lands in the repository root.

    MuJoCo appends its warnings to ``MUJOCO_LOG.TXT`` in the current folder (Gymnasium's
    ``half_cheetah.xml`` uses the deprecated ``settotalmass``, for one). Subprocesses that
    import orrb get this checkout first on ``PYTHONPATH``, as the current folder gave them.
    """
    previous_cwd, previous_path = os.getcwd(), os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (REPO, previous_path) if p)
    os.chdir(tmp_path_factory.mktemp("cwd"))
    try:
        yield
    finally:
        os.chdir(previous_cwd)
        if previous_path is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = previous_path


@pytest.fixture(scope="session")
def assets_dir() -> str:
    return orrb.utils.package_relative_path("assets")


@pytest.fixture(scope="session")
def dactyl_states(assets_dir) -> np.ndarray:
    """``float64 [64, 31]`` plausible Dactyl states in mapping order."""
    return np.loadtxt(f"{assets_dir}/states/qpos.csv", delimiter=",")


def dactyl_config(**fields) -> orrb.RemoteRendererConfig:
    """A config for the shipped Dactyl scene (no components unless given); fields override."""
    config = orrb.RemoteRendererConfig()
    config.camera_names = list(DACTYL_CAMERAS)
    config.image_width = 64
    config.image_height = 64
    config.model_xml_path = "dactyl.xml"
    config.model_mapping_path = "dactyl.mapping"
    config.asset_basedir = orrb.utils.package_relative_path("assets")
    for name, value in fields.items():
        setattr(config, name, value)
    return config


def assert_within_tile_rounding(actual: np.ndarray, expected: np.ndarray, key: str = "") -> None:
    """The rule for the same entry drawn at two tile positions (different seeds without
    components, or another ``entries_per_readback``): images differ in at most 0.1% of the
    values, and by more than 1 level in at most 0.05% (silhouette pixels whose anti-aliasing
    coverage changes; measured 0.002-0.018%); float outputs (depth, normals) differ beyond
    float32 interpolation rounding (relative 1e-4, absolute 1e-3) in at most 0.1% of the
    values (edge pixels)."""
    assert actual.shape == expected.shape and actual.dtype == expected.dtype, key
    if actual.dtype == np.uint8:
        diff = np.abs(actual.astype(np.int16) - expected)
        assert (diff > 0).mean() <= 0.001, f"{key}: {(diff > 0).mean():.4%} of the values differ"
        assert (diff > 1).mean() <= 0.0005, f"{key}: {(diff > 1).mean():.4%} of the values differ by more than 1"
    else:
        far = ~np.isclose(actual, expected, rtol=1e-4, atol=1e-3)
        assert far.mean() <= 0.001, f"{key}: {far.mean():.4%} of the values differ beyond rounding"


@pytest.fixture
def make_dactyl_config():
    return dactyl_config


class CountingRenderer:
    """A shared renderer that counts ``render_batch`` calls and the entries they carried.

    It satisfies the ``orrb.renderer.Renderer`` protocol by forwarding to ``inner``, as a
    user's own stand-in renderer would.
    """

    def __init__(self, renderer):
        self.inner = renderer
        self.config = renderer.config
        self.calls: list[int] = []

    def render_batch(self, batch):
        self.calls.append(len(batch["qpos"]))
        return self.inner.render_batch(batch)

    def render_batch_async(self, batch, queue=None):
        self.calls.append(len(batch["qpos"]))
        return self.inner.render_batch_async(batch, queue)

    def start(self):
        self.inner.start()
        return self

    def shutdown(self):
        self.inner.shutdown()

    close = shutdown

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.shutdown()

    def update(self, renderer_config):
        self.inner.update(renderer_config)

    def mutable_renderer_config(self):
        return self.inner.mutable_renderer_config()

    columns = property(lambda self: self.inner.columns)
    class_names = property(lambda self: self.inner.class_names)
    model = property(lambda self: self.inner.model)
    layout = property(lambda self: self.inner.layout)
    stats = property(lambda self: self.inner.stats)
    server_pids = property(lambda self: self.inner.server_pids)
    log_files = property(lambda self: self.inner.log_files)


# -- test tiers ------------------------------------------------------------------------------------
# Modules whose tests need no GL context and no render server: `pytest -m "not gl"` runs them
# alone in seconds. Every other test is marked `gl`. A test of the fast tier that creates a
# MuJoCo render context fails, so this list cannot drift from the truth.
FAST_MODULES = frozenset({"test_config", "test_engine_modalities", "test_engine_options", "test_layering",
                          "test_pool_wire", "test_renderer"})


def pytest_configure(config):
    config.addinivalue_line("markers", "gl: needs a GL context or render servers (the full tier)")


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.module.__name__ not in FAST_MODULES:
            item.add_marker(pytest.mark.gl)


@pytest.fixture(autouse=True)
def _fast_tier_creates_no_render_context(request, monkeypatch):
    if request.node.get_closest_marker("gl") is None:
        import mujoco

        def refuse(*args, **kwargs):
            raise RuntimeError(f"{request.node.nodeid} is in the fast tier (tests/conftest.py FAST_MODULES) "
                               "but created a MuJoCo render context")

        monkeypatch.setattr(mujoco, "MjrContext", refuse)
