"""The ``orrb`` command line: help, demo, render round trip, serve forwarding, bench table."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from PIL import Image

import orrb
from orrb.cli import main
from orrb.contact_sheet import contact_sheet


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
    ([], ["demo", "render", "dataset", "serve", "bench"]),
    (["demo"], ["--out", "--seeds", "--first-seed", "--state", "--config", "--cameras", "--size", "--workers"]),
    (["render"], ["STATES", "--out", "--format", "--seed", "--batch-size", "--depth", "--normals", "--segmentation"]),
    (["dataset"], ["--count", "--out", "--shard-size", "--seed", "--object", "--stop-after", "--no-segmentation"]),
    (["bench"], ["--dir", "--only", "--full", "--timeout"]),
])
def test_help_explains_every_option(command, options, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([*command, "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for option in options:
        assert option in text, f"'orrb {' '.join(command)} --help' does not mention {option}"


def test_python_dash_m_orrb_is_the_same_command():
    proc = subprocess.run([sys.executable, "-m", "orrb", "--help"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "orrb demo" in proc.stdout and "dataset" in proc.stdout


def test_contact_sheet_places_every_picture_unchanged(make_dactyl_config, dactyl_states):
    config = make_dactyl_config(camera_names=["vision_cam_left", "vision_cam_top"], image_width=32,
                                image_height=24, render_depth=True, render_segmentation=True)
    with orrb.LocalRenderer(config) as renderer:
        response = renderer.render_batch({"qpos": dactyl_states[:3], "seed": 0})
    boxes: list = []
    sheet = contact_sheet(response, config.camera_names, tile_boxes=boxes)
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
    boxes: list = []
    contact_sheet(response, config.camera_names, tile_boxes=boxes)  # same layout rules, same sizes
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
    (["demo", "--out", "{tmp}/d.png", "--cameras", "vision_cam_lef", "--config", "none"], "vision_cam_left"),
    (["demo", "--out", "{tmp}/d.png", "--state", "99", "--config", "none"], "--state must be in [0, 64)"),
])
def test_bad_input_exits_2_with_a_message_naming_the_problem(args, message, tmp_path, capsys):
    np.savetxt(tmp_path / "narrow.csv", np.zeros((2, 5)), delimiter=",")
    args = [a.format(tmp=tmp_path) for a in args]
    assert main(args) == 2
    assert message in capsys.readouterr().err


def test_serve_forwards_to_the_server_main(capsys):
    try:
        from orrb.pool import server
    except ImportError:
        server = None
    if server is None or not hasattr(server, "main"):
        assert main(["serve"]) == 2
        assert "unavailable" in capsys.readouterr().err
        return
    with pytest.raises(SystemExit) as exit_info:
        main(["serve", "--help"])
    assert exit_info.value.code == 0
    assert "usage" in capsys.readouterr().out.lower()


def test_bench_runs_every_script_and_tabulates_their_ratios(tmp_path, capsys):
    (tmp_path / "engine.py").write_text(textwrap.dedent("""
        import sys
        print("warming up")
        print("batched vs per-entry: " + ("2.50x" if "--quick" in sys.argv else "9.99x"))
    """))
    (tmp_path / "pool.py").write_text(
        "print('  pool  412.0 images/s')\nprint('ratio: 2 servers / 1 server = 1.850 (target >= 1.6)')\n")
    (tmp_path / "vector_env.py").write_text("raise SystemExit('boom')\n")
    assert main(["bench", "--dir", str(tmp_path)]) == 1  # one script failed
    table = capsys.readouterr().out
    assert "2.50x" in table  # --quick was passed to the script that supports it
    assert "2 servers / 1 server" in table and "1.850" in table and "target >= 1.6" in table
    assert "412.0" not in table
    assert "randomization.py" in table and "missing" in table
    assert "vector_env.py" in table and "failed" in table


def test_bench_says_clearly_when_there_is_no_benchmarks_folder(tmp_path, capsys):
    assert main(["bench", "--dir", str(tmp_path / "nowhere")]) == 2
    assert "not with the installed package" in capsys.readouterr().err
