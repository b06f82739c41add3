"""The ``orrb`` command line: help, demo, render round trip, serve forwarding, one-line failures."""

from __future__ import annotations

import importlib
import os
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

import orrb
from orrb.cli import main
from orrb.contact_sheet import contact_sheet


REPO = os.path.dirname(os.path.dirname(os.path.abspath(orrb.__file__)))


def _env(**extra) -> dict[str, str]:
    """The environment for an ``orrb`` subprocess importing this checkout's package."""
    env = dict(os.environ, **extra)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (extra.get("PYTHONPATH"), REPO, os.environ.get("PYTHONPATH")) if p)
    env.pop("ORRB_DEBUG", None)
    return env


def _shipped_config_loads(name: str = "dactyl.renderer_config.json") -> bool:
    try:
        orrb.RendererConfig.load(os.path.join(orrb.utils.package_relative_path("assets"), name))
    except orrb.ConfigError:
        return False
    return True


def demo_config_arg() -> str:
    """The shipped chain once every component it names exists, else none."""
    return "dactyl.renderer_config.json" if _shipped_config_loads() else "none"


@pytest.mark.parametrize("command, options", [
    ([], ["demo", "render", "dataset", "serve", "config", "--debug"]),
    (["config", "convert"], ["IN", "OUT"]),
    (["demo"], ["--out", "--seeds", "--first-seed", "--state", "--config", "--cameras", "--size", "--workers",
                "--servers", "--start-timeout", "--connect-timeout", "--debug"]),
    (["render"], ["STATES", "--out", "--format", "--seed", "--batch-size", "--depth", "--normals", "--segmentation"]),
    (["dataset"], ["--count", "--out", "--shard-size", "--seed", "--object", "--stop-after", "--no-segmentation"]),
])
def test_help_explains_every_option(command, options, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([*command, "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for option in options:
        assert option in text, f"'orrb {' '.join(command)} --help' does not mention {option}"


def test_help_loads_no_gl_library():
    code = ("import sys\nfrom orrb.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('mujoco', 'OpenGL')))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=_env())
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "[]"


def test_python_dash_m_orrb_is_the_same_command():
    proc = subprocess.run([sys.executable, "-m", "orrb", "--help"], capture_output=True, text=True, timeout=60,
                          env=_env())
    assert proc.returncode == 0, proc.stderr
    assert "orrb demo" in proc.stdout and "dataset" in proc.stdout


def test_contact_sheet_places_every_picture_unchanged(make_dactyl_config, dactyl_states):
    config = make_dactyl_config(camera_names=["vision_cam_left", "vision_cam_top"], image_width=32,
                                image_height=24, render_depth=True, render_segmentation=True)
    with orrb.LocalRenderer(config) as renderer:
        response = renderer.render_batch({"qpos": dactyl_states[:3], "seed": 0})
        layout = renderer.layout
    boxes: list = []
    sheet = contact_sheet(response, layout, tile_boxes=boxes)
    assert sheet.dtype == np.uint8 and sheet.ndim == 3
    assert len(boxes) == 2 * 3 * 3  # cameras x (colour, depth, segmentation) x entries
    for label, entry, y, x, h, w in boxes:
        if label.endswith("colour"):
            camera = label.split()[0]
            np.testing.assert_array_equal(sheet[y:y + h, x:x + w], response[camera][entry])


def test_demo_writes_a_contact_sheet_showing_the_scene_in_every_tile(tmp_path, capsys):
    out = tmp_path / "sheet" / "demo.png"
    assert main(["demo", "--out", str(out), "--size", "48", "--seeds", "2", "--config", demo_config_arg()]) == 0
    assert str(out) in capsys.readouterr().out
    sheet = np.asarray(Image.open(out).convert("RGB"))
    # 3 cameras x 4 modalities rows of 48 px
    assert sheet.shape[0] >= 12 * 48 and sheet.shape[1] >= 2 * 48
    # every colour tile holds the hand and cube: not flat (a blank frame would be)
    config = orrb.RemoteRendererConfig(camera_names=["vision_cam_left", "vision_cam_right", "vision_cam_top"],
                                       image_width=48, image_height=48, model_xml_path="dactyl.xml",
                                       model_mapping_path="dactyl.mapping",
                                       asset_basedir=orrb.utils.package_relative_path("assets"),
                                       render_depth=True, render_normals=True, render_segmentation=True)
    with orrb.LocalRenderer(config) as renderer:
        response = renderer.render_batch({"qpos": np.zeros((2, renderer.columns)), "seed": 0})
        layout = renderer.layout
    boxes: list = []
    contact_sheet(response, layout, tile_boxes=boxes)  # same layout rules, same sizes
    for label, entry, y, x, h, w in boxes:
        tile = sheet[y:y + h, x:x + w].astype(float)
        assert tile.std() > 10, f"tile {label} #{entry} looks blank"


def test_render_png_and_npz_equal_a_direct_render_batch(tmp_path, dactyl_states):
    states = dactyl_states[:5]
    csv = tmp_path / "states.csv"
    np.savetxt(csv, states, delimiter=",", header="a header line", comments="# ")
    out = tmp_path / "out"
    args = ["render", str(csv), "--out", str(out), "--config", demo_config_arg(), "--size", "40",
            "--cameras", "vision_cam_left,vision_cam_top", "--seed", "7", "--batch-size", "2",
            "--depth", "--normals", "--segmentation", "--quiet"]
    assert main(args) == 0
    config = orrb.RemoteRendererConfig(
        camera_names=["vision_cam_left", "vision_cam_top"], image_width=40, image_height=40,
        model_xml_path="dactyl.xml", model_mapping_path="dactyl.mapping",
        renderer_config_path=None if demo_config_arg() == "none" else demo_config_arg(),
        asset_basedir=orrb.utils.package_relative_path("assets"),
        render_depth=True, render_normals=True, render_segmentation=True)
    with orrb.LocalRenderer(config) as renderer:
        expected = renderer.render_batch({"qpos": states, "seed": 7})

    with np.load(out / "render.npz", allow_pickle=False) as npz:
        for key, value in expected.items():
            if key == "seed":
                continue
            assert key in npz.files, f"render.npz lacks {key}"
            np.testing.assert_array_equal(npz[key], value, err_msg=key)
        np.testing.assert_array_equal(npz["seeds"], 7 + np.arange(5))
    for camera in config.camera_names:
        for i in range(5):
            png = np.asarray(Image.open(out / camera / f"{i:05d}.png"))
            np.testing.assert_array_equal(png, expected[camera][i])
            for suffix in ("depth", "normals", "segmentation"):
                assert (out / camera / f"{i:05d}_{suffix}.png").is_file()


def test_render_reads_npy_like_csv(tmp_path, dactyl_states):
    states = dactyl_states[:2]
    np.save(tmp_path / "s.npy", states)
    np.savetxt(tmp_path / "s.csv", states, delimiter=",", fmt="%.17g")
    common = ["--config", "none", "--size", "24", "--cameras", "vision_cam_left", "--format", "npz", "--quiet"]
    assert main(["render", str(tmp_path / "s.npy"), "--out", str(tmp_path / "a"), *common]) == 0
    assert main(["render", str(tmp_path / "s.csv"), "--out", str(tmp_path / "b"), *common]) == 0
    with np.load(tmp_path / "a" / "render.npz") as a, np.load(tmp_path / "b" / "render.npz") as b:
        np.testing.assert_array_equal(a["vision_cam_left"], b["vision_cam_left"])
    assert not (tmp_path / "a" / "vision_cam_left").exists()  # --format npz writes no PNGs


@pytest.mark.parametrize("args, message", [
    (["render", "{tmp}/missing.csv", "--out", "{tmp}/o"], "states file not found"),
    (["render", "{tmp}/narrow.csv", "--out", "{tmp}/o", "--config", "none"], "needs at least 31"),
    (["render", "{tmp}/narrow.csv", "--out", "{tmp}/o", "--config", "nope.json"], "--config: file not found"),
    (["render", "{tmp}/empty.csv", "--out", "{tmp}/o"], "holds no states"),
    (["demo", "--out", "{tmp}/d.png", "--cameras", "vision_cam_lef", "--config", "none"], "vision_cam_left"),
    (["demo", "--out", "{tmp}/d.png", "--state", "99", "--config", "none"], "--state must be in [0, 64)"),
    (["render", "{tmp}/narrow.csv", "--out", "{tmp}/afile"], "afile is a file; expected a folder"),
    (["render", "{tmp}/narrow.csv", "--out", "{tmp}/afile/sub"], "(a parent of"),
    (["dataset", "--count", "2", "--out", "{tmp}/afile", "--config", "none"], "afile is a file; expected a folder"),
    (["demo", "--out", "{tmp}", "--config", "none"], "is a folder; expected a file path"),
    (["demo", "--out", "{tmp}/sheet.pgn", "--config", "none"], "expected a path ending in .png"),
    (["tune", "--out", "{tmp}", "--config", "none"], "is a folder; expected a file path"),
])
def test_bad_input_exits_2_with_a_message_naming_the_problem(args, message, tmp_path, capsys):
    np.savetxt(tmp_path / "narrow.csv", np.zeros((2, 5)), delimiter=",")
    (tmp_path / "empty.csv").write_text("# a header and no states\n")
    (tmp_path / "afile").write_text("")
    args = [a.format(tmp=tmp_path) for a in args]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert message in err
    assert err.startswith(f"orrb {args[0]}: error: ") and "Warning" not in err


def test_serve_forwards_to_the_server_main(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["serve", "--help"])
    assert exit_info.value.code == 0
    assert "usage" in capsys.readouterr().out.lower()


# -- failures: one line saying what is wrong (plus an optional hint), no traceback, non-zero exit --
def run_orrb(*args: str, cwd, **env) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "orrb", *args], capture_output=True, text=True, timeout=120,
                          cwd=cwd, env=_env(**env))


def assert_one_line_failure(proc: subprocess.CompletedProcess, command: str, *fragments: str) -> list[str]:
    """Checks the failure shape; returns the lines of stderr."""
    output = proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode != 0, output
    assert "Traceback" not in output, output
    assert proc.stdout.strip() == "", output
    assert 1 <= len(lines) <= 2, f"expected one line and an optional hint, got:\n{proc.stderr}"
    assert lines[0].startswith(f"orrb {command}: error: "), proc.stderr
    if len(lines) == 2:
        assert lines[1].startswith("  hint: "), proc.stderr
    for fragment in fragments:
        assert fragment in proc.stderr, f"{fragment!r} not in:\n{proc.stderr}"
    return lines


def _no_egl_site(tmp_path) -> str:
    """A folder whose sitecustomize makes every load of libEGL fail, as on a machine without it."""
    site = tmp_path / "no_egl_site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(
        "import ctypes\n"
        "_init = ctypes.CDLL.__init__\n"
        "def _no_egl(self, name, *args, **kwargs):\n"
        "    if name and 'EGL' in str(name):\n"
        "        raise OSError(f'{name}: cannot open shared object file: No such file or directory')\n"
        "    _init(self, name, *args, **kwargs)\n"
        "ctypes.CDLL.__init__ = _no_egl\n")
    return str(site)


def _listening_port() -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    s.listen()
    return s


def test_missing_model_file_is_one_line_naming_the_file(tmp_path):
    proc = run_orrb("demo", "--model", "missing.xml", "--out", "d.png", cwd=tmp_path)
    assert_one_line_failure(proc, "demo", "--model: file not found", "missing.xml")


def test_malformed_renderer_config_is_one_line_naming_the_file_and_place(tmp_path):
    (tmp_path / "bad.json").write_text('{"components": [\n')
    proc = run_orrb("demo", "--config", "bad.json", "--out", "d.png", cwd=tmp_path)
    assert_one_line_failure(proc, "demo", "bad.json", "malformed JSON")


def test_unknown_camera_is_one_line_with_the_close_match(tmp_path):
    proc = run_orrb("render", os.path.join(orrb.utils.package_relative_path("assets"), "states", "qpos.csv"),
                    "--out", "o", "--cameras", "vision_cam_lef", "--config", "none", cwd=tmp_path)
    assert_one_line_failure(proc, "render", "vision_cam_lef", "did you mean 'vision_cam_left'")


def test_busy_base_port_is_one_line_naming_the_port_with_a_free_one_as_hint(tmp_path):
    with _listening_port() as busy:
        port = busy.getsockname()[1]
        proc = run_orrb("demo", "--workers", "1", "--base-port", str(port), "--out", "d.png", cwd=tmp_path)
    lines = assert_one_line_failure(proc, "demo", f"port {port}", "already in use")
    assert len(lines) == 2 and "--base-port" in lines[1]


def test_unreachable_server_address_is_one_line_naming_it_within_the_timeout(tmp_path):
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    address = f"tcp://127.0.0.1:{port}"
    started = time.monotonic()
    proc = run_orrb("demo", "--servers", address, "--connect-timeout", "2", "--config", "none", "--out", "d.png",
                    cwd=tmp_path)
    assert time.monotonic() - started < 30  # the timeout (2 s) and the start of Python, generously
    lines = assert_one_line_failure(proc, "demo", address)
    assert len(lines) == 2 and "orrb serve" in lines[1]


def test_missing_libegl_leaves_help_working_and_says_which_package_to_install(tmp_path):
    site = _no_egl_site(tmp_path)
    help_proc = run_orrb("--help", cwd=tmp_path, PYTHONPATH=site, MUJOCO_GL="egl")
    assert help_proc.returncode == 0 and "demo" in help_proc.stdout, help_proc.stderr
    proc = run_orrb("demo", "--out", "d.png", cwd=tmp_path, PYTHONPATH=site, MUJOCO_GL="egl")
    lines = assert_one_line_failure(proc, "demo", "libEGL")
    assert len(lines) == 2 and "apt-get install -y libegl1" in lines[1]
    assert not (tmp_path / "d.png").exists()


def test_debug_shows_the_traceback(tmp_path):
    proc = run_orrb("demo", "--model", "missing.xml", "--out", "d.png", "--debug", cwd=tmp_path)
    assert proc.returncode == 2
    assert "Traceback" in proc.stderr and "orrb demo: error: --model: file not found" in proc.stderr


def test_a_missing_optional_package_names_the_extra_that_installs_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "stable_baselines3", None)  # as if stable-baselines3 were not installed
    monkeypatch.delitem(sys.modules, "orrb.wrappers.sb3", raising=False)  # imported afresh (restored after)
    with pytest.raises(ModuleNotFoundError, match=r'pip install "orrb\[rl\]"') as error:
        importlib.import_module("orrb.wrappers.sb3")
    assert error.value.name == "stable_baselines3"
    from orrb.cli.failures import explain

    failure = explain(error.value)
    assert failure.status == 1 and "stable_baselines3" in failure.message and "orrb[rl]" in failure.hint


@pytest.mark.parametrize("error, message, hint, status", [
    (orrb.RendererError("server tcp://127.0.0.1:15500, port 15500 failed to start: process 7 exited with code 1\n"
                        "  last lines of the log:\n    cannot bind tcp://127.0.0.1:15500: Address already in use",
                        server="tcp://127.0.0.1:15500"), "port 15500 is already in use", "--base-port", 1),
    (orrb.RendererError("server tcp://10.0.0.9:5000 failed to start: no answer to the handshake within 5 s",
                        server="tcp://10.0.0.9:5000"), "no render server answered at tcp://10.0.0.9:5000", "firewall", 1),
    (orrb.RendererError("cannot create an OpenGL context (MUJOCO_GL='egl'): eglInitialize failed. On a headless "
                        "Linux machine install EGL and Mesa"), "cannot create an OpenGL context", "apt-get install", 1),
    (orrb.RendererError("server tcp://127.0.0.1:5000 failed 4 times: exited with code -9\n  log tail",
                        server="tcp://127.0.0.1:5000", log_file="/tmp/orrb-x.log"), "failed 4 times", "/tmp/orrb-x.log", 1),
    (orrb.ConfigError("renderer config x.json: malformed JSON at line 2"), "malformed JSON at line 2", None, 2),
    (FileNotFoundError("states file not found: s.csv"), "states file not found: s.csv", None, 2),
    (KeyboardInterrupt(), "interrupted", None, 130),
    (ZeroDivisionError("boom"), "unexpected ZeroDivisionError: boom", "--debug", 1),
    (RuntimeError("gladLoadGL error"), "no OpenGL through MUJOCO_GL=", "unset MUJOCO_GL", 1),
    (orrb.RendererError("cannot create an OpenGL context (MUJOCO_GL='egl'): Cannot use EGL rendering platform. "
                        "The PYOPENGL_PLATFORM environment variable is set to {!r}"), "PYOPENGL_PLATFORM=",
     "unset PYOPENGL_PLATFORM", 1),
])
def test_every_failure_reads_as_one_line_with_what_to_do(error, message, hint, status):
    from orrb.cli.failures import explain

    failure = explain(error)
    assert "\n" not in failure.message and message in failure.message
    assert (failure.hint is None) if hint is None else (hint in failure.hint and "\n" not in failure.hint)
    assert failure.status == status
