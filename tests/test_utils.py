"""orrb.utils, package data and import-time behaviour."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

import orrb

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_build_server_configs_spreads_servers_over_gpus_on_consecutive_ports():
    assert orrb.utils.build_server_configs(1, 2, 5000, mpi_rank=0, mpi_size=1) == [[0, 5000], [0, 5001]]
    configs = orrb.utils.build_server_configs(2, 3, 6000)
    assert [port for _, port in configs] == list(range(6000, 6006))
    assert sorted(gpu for gpu, _ in configs) == [0, 0, 0, 1, 1, 1]


def test_build_server_configs_returns_this_mpi_ranks_shard():
    everything = orrb.utils.build_server_configs(2, 2, 7000)
    shards = [orrb.utils.build_server_configs(2, 2, 7000, mpi_rank=r, mpi_size=2) for r in range(2)]
    assert shards[0] + shards[1] == everything and len(shards[0]) == 2


@pytest.mark.parametrize("args, fragment", [((0, 1, 5000), "num_gpus"), ((1, 0, 5000), "num_workers"),
                                            ((1, 3, 5000, 0, 2), "equal MPI shards"), ((1, 1, 5000, 2, 2), "mpi_rank")])
def test_build_server_configs_rejects_bad_layouts(args, fragment):
    with pytest.raises(ValueError, match=fragment):
        orrb.utils.build_server_configs(*args)


def test_package_relative_path_finds_the_assets():
    assets = orrb.utils.package_relative_path("assets")
    for name in ("dactyl.xml", "dactyl.mapping", "demo_keras.renderer_config.json", "states/qpos.csv"):
        assert os.path.isfile(os.path.join(assets, name))


def test_picture_helpers_give_uint8_rgb():
    depth = np.array([[0.0, 1.0], [2.0, 3.0]], np.float32)
    assert orrb.utils.depth_to_image(depth).shape == (2, 2, 3)
    assert orrb.utils.depth_to_image(depth)[0, 0].tolist() == [0, 0, 0]
    assert orrb.utils.normals_to_image(np.ones((2, 2, 3), np.float32)).max() == 255
    seg = orrb.utils.segmentation_to_image(np.array([[0, 1], [2, 3]], np.uint8))
    assert seg.dtype == np.uint8 and seg[0, 0].tolist() == [0, 0, 0] and len({tuple(c) for c in seg.reshape(-1, 3)}) == 4


def test_import_sets_mujoco_gl_to_egl_when_unset_and_respects_a_user_choice():
    env = {k: v for k, v in os.environ.items() if k != "MUJOCO_GL"}
    code = "import os, orrb; print(os.environ['MUJOCO_GL'])"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "egl"
    env["MUJOCO_GL"] = "osmesa"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "osmesa"


def test_version_identifies_orrb_and_mujoco():
    import mujoco

    assert orrb.__version__ in orrb.get_renderer_version()
    assert mujoco.__version__ in orrb.get_renderer_version()


def test_regular_install_finds_assets_and_renders_from_another_directory(tmp_path):
    """A non-editable `pip install .` (here into a target folder) ships the assets as package data."""
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "-q",
                    "--target", str(target), REPO], check=True, capture_output=True)
    code = (
        "import orrb, numpy as np, os\n"
        "assets = orrb.utils.package_relative_path('assets')\n"
        "assert assets.startswith(os.environ['TARGET']), assets\n"
        "c = orrb.RemoteRendererConfig(camera_names=['vision_cam_top'], image_width=32, image_height=32,"
        " model_xml_path='dactyl.xml', model_mapping_path='dactyl.mapping', asset_basedir=assets)\n"
        "with orrb.LocalRenderer(c) as r:\n"
        "    q = np.loadtxt(os.path.join(assets, 'states/qpos.csv'), delimiter=',')[:1]\n"
        "    print(r.render_batch({'qpos': q, 'seed': 0})['vision_cam_top'].std() > 5)\n"
    )
    env = dict(os.environ, PYTHONPATH=str(target), TARGET=str(target))
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "True"


def test_rendering_works_when_mujoco_was_imported_before_orrb_without_a_display():
    env = {k: v for k, v in os.environ.items() if k not in ("MUJOCO_GL", "PYOPENGL_PLATFORM", "DISPLAY")}
    code = (
        "import mujoco, numpy as np\n"
        "import orrb\n"
        "c = orrb.RemoteRendererConfig(camera_names=['vision_cam_top'], image_width=32, image_height=32,"
        " model_xml_path='dactyl.xml', asset_basedir=orrb.utils.package_relative_path('assets'))\n"
        "with orrb.LocalRenderer(c) as r:\n"
        "    print(r.render_batch({'qpos': np.zeros((1, r.columns)), 'seed': 0})['vision_cam_top'].std() > 5)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "True"


@pytest.mark.parametrize("visible", [None, "1,0"])
def test_mujoco_renders_on_the_cuda_device_a_server_is_given(visible, monkeypatch):
    """The MUJOCO_EGL_DEVICE_ID orrb sets makes the installed MuJoCo's own device choice land on the
    EGL device of the CUDA device asked for, also when EGL lists the GPUs in another order."""
    mujoco_egl = pytest.importorskip("mujoco.egl")
    from orrb import egl_device

    if visible is None:
        monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    else:
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
    monkeypatch.setattr(egl_device, "egl_cuda_devices", lambda: [1, 0])  # EGL lists CUDA device 1 first
    egl_devices, cuda_to_egl = ["egl0", "egl1"], {1: "egl0", 0: "egl1"}
    cuda_order = [int(v) for v in visible.split(",")] if visible else None
    for cuda_index in (0, 1):  # counting visible devices
        physical = cuda_order[cuda_index] if cuda_order else cuda_index
        value, egl_index = egl_device.mujoco_egl_device_id(cuda_index)
        assert egl_devices[egl_index] == cuda_to_egl[physical]
        if egl_device.mujoco_selects_by_cuda_id():  # MuJoCo 4: the variable names a CUDA device
            picked = mujoco_egl._select_egl_device(egl_devices, cuda_to_egl, cuda_order, value)
        else:  # earlier MuJoCo: an index into EGL's list
            picked = egl_devices[value]
        assert picked == cuda_to_egl[physical], (cuda_index, value)
