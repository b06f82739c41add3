"""Every script of examples/ works: run with tiny sizes, its results are checked as values."""

from __future__ import annotations

import glob
import importlib.util
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

import orrb

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES = os.path.join(REPO, "examples")
FILES = sorted(glob.glob(os.path.join(EXAMPLES, "*.py")))


def _runnable(path: str) -> bool:
    with open(path) as f:
        return '__name__ == "__main__"' in f.read()


# the runnable examples (pose_model.py is a module that the pose example and its users import)
SCRIPTS = [path for path in FILES if _runnable(path)]


def load_example(name: str):
    """Imports ``examples/<name>`` as a module (its ``__main__`` block does not run)."""
    spec = importlib.util.spec_from_file_location(f"example_{name[:-3]}", os.path.join(EXAMPLES, name))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_quickstart_renders_sync_and_async_identically_with_two_servers():
    quickstart = load_example("quickstart.py")
    result, async_result = quickstart.render(workers=2, base_port=orrb.utils.free_base_port(2), batch_size=2)
    assert result["vision_cam_left"].shape == (2, 200, 200, 3) and result["vision_cam_left"].dtype == np.uint8
    assert result["vision_cam_left"].std() > 3, "blank images"
    outputs = [k for k in result if k not in ("qpos", "seed")]
    assert "tracker_cube_X_vision_cam_left" in outputs
    for key in outputs:
        np.testing.assert_array_equal(result[key], async_result[key], err_msg=key)
    # the cube is on screen: its tracked position lies inside the image
    assert ((result["tracker_cube_X_vision_cam_left"] > 0) & (result["tracker_cube_X_vision_cam_left"] < 1)).all()


def test_batch_demo_keeps_batches_in_flight_and_each_renders_with_its_queued_config(tmp_path):
    batch_demo = load_example("batch_demo.py")
    args = batch_demo.parse_args(["--batches", "4", "--batch", "2", "--in-flight", "3", "--size", "32",
                                  "--base-port", str(orrb.utils.free_base_port(2)), "--out-dir", str(tmp_path / "pngs")])
    out = batch_demo.run(args)
    assert out["most_in_flight"] == 3
    assert len(out["A"]) == len(out["B"]) == 2
    for name in "AB":
        np.testing.assert_array_equal(out[name][0], out[name][1])
    assert not np.array_equal(out["A"][0], out["B"][0])
    assert sorted(os.listdir(tmp_path / "pngs")) == [f"batch_{k:02d}_{'AB'[k % 2]}.png" for k in range(4)]


def test_wrap_mujoco_env_adds_reproducible_images_to_ant(tmp_path):
    import gymnasium

    wrap = load_example("wrap_mujoco_env.py")
    out = wrap.run(wrap.parse_args(["--steps", "10", "--size", "32", "--out", str(tmp_path / "ant.png")]))
    assert out["observation_space"]["track"] == gymnasium.spaces.Box(0, 255, (32, 32, 3), np.uint8)
    assert out["observation_space"]["free"] == gymnasium.spaces.Box(0, 255, (32, 32, 3), np.uint8)
    for key in ("track", "free"):
        np.testing.assert_array_equal(out["first"][key], out["again"][key])
    assert len(out["frames"]) == 2 and all(frame.std() > 5 for frame in out["frames"])


def test_train_vision_trains_both_models_and_reports_pixel_errors(tmp_path):
    pytest.importorskip("torch")
    run_example("train_vision.py", "--train-images", "32", "--repeats", "4", "--test-images", "8",
                "--image-size", "48", "--batch-size", "16", "--workers", "0", "--out-dir", "tv", cwd=tmp_path)
    results = json.loads((tmp_path / "tv" / "train_vision_results.json").read_text())
    errors = results["errors_px"]
    assert len(errors) == 6  # 2 models x 3 test sets
    assert all(np.isfinite(v["mean"]) and 0 <= v["mean"] < 48 * 1.5 for v in errors.values())
    for kind in ("randomized", "unrandomized"):  # both models fit their training images
        losses = results["train"][kind]["losses"]
        assert len(losses) == 8 and np.mean(losses[-2:]) < np.mean(losses[:2]), (kind, losses)
    plot = np.asarray(Image.open(tmp_path / "tv" / "train_vision_predictions.png"))
    assert plot.ndim == 3 and plot.std() > 3


def test_train_pose_randomized_model_beats_unrandomized_on_held_out_and_reloads(tmp_path):
    pytest.importorskip("torch")
    run_example("train_pose.py", "--quick", "--save", "pose.pt", "--out-dir", "tp", cwd=tmp_path)
    results = json.loads((tmp_path / "tp" / "train_pose_results.json").read_text())
    errors = results["errors"]
    assert len(errors) == 10  # 2 models x 5 test sets
    held = {kind: errors[f"{kind} on held-out domain"] for kind in ("randomized", "unrandomized")}
    assert held["randomized"]["position_mm"]["mean"] < held["unrandomized"]["position_mm"]["mean"], held
    for e in errors.values():
        assert 0 <= e["orientation_deg"]["mean"] <= 180 and np.isfinite(e["position_mm"]["mean"])
    # the saved model reloads and predicts what the trained one predicted, at any image size
    sys.path.insert(0, EXAMPLES)
    try:
        from pose_model import load_pose_model
    finally:
        sys.path.remove(EXAMPLES)
    model = load_pose_model(tmp_path / "pose.pt")
    assert model.camera_names == ["vision_cam_left", "vision_cam_right", "vision_cam_top"]
    check = np.load(tmp_path / "tp" / "heldout_check.npz")
    images = {name: check[name] for name in model.camera_names}
    position, quaternion = model.predict(images)
    np.testing.assert_allclose(position, check["position"], atol=1e-5)
    np.testing.assert_allclose(quaternion, check["quaternion"], atol=1e-5)
    assert np.allclose(np.linalg.norm(quaternion, axis=1), 1, atol=1e-5)
    larger = {name: a.repeat(2, axis=1).repeat(2, axis=2) for name, a in images.items()}
    position2, _ = model.predict(larger)
    assert position2.shape == (len(position), 3) and np.abs(position2 - position).max() < 0.05
    with pytest.raises(KeyError, match="vision_cam_top"):
        model.predict({name: images[name] for name in model.camera_names[:2]})
    plot = np.asarray(Image.open(tmp_path / "tp" / "train_pose_predictions.png"))
    assert plot.ndim == 3 and plot.std() > 3


def test_train_pose_rejects_an_unknown_device_naming_it(tmp_path):
    pytest.importorskip("torch")
    proc = subprocess.run([sys.executable, os.path.join(EXAMPLES, "train_pose.py"), "--quick", "--device", "gpu0",
                           "--out-dir", "tp"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert "'gpu0' is not a torch device" in proc.stderr and "'cuda:N'" in proc.stderr, proc.stderr[-2000:]


def run_example(name: str, *args: str, cwd) -> str:
    proc = subprocess.run([sys.executable, os.path.join(EXAMPLES, name), *args], cwd=cwd,
                          capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, f"{name} failed (exit {proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout


def _option_blocks(help_text: str) -> dict[str, str]:
    """``{'--option': its help text}`` for the options of an argparse help that take a value."""
    blocks: dict[str, str] = {}
    current = None
    for line in help_text.splitlines():
        match = re.match(r"^  (?:-\w, )?(--[\w-]+)( [A-Z_]+| \{)?", line)
        if match:
            current = match.group(1) if match.group(2) else None
            if current:
                blocks[current] = line
        elif current and line.startswith("   "):
            blocks[current] += " " + line.strip()
        else:
            current = None
    return blocks


@pytest.mark.parametrize("name", [os.path.basename(path) for path in SCRIPTS])
def test_example_help_shows_every_default(name, tmp_path):
    proc = subprocess.run([sys.executable, os.path.join(EXAMPLES, name), "--help"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    blocks = _option_blocks(proc.stdout)
    assert blocks, proc.stdout
    hidden = [option for option, text in blocks.items() if "default" not in text]
    assert not hidden, f"{name} --help hides the defaults of {hidden}"


@pytest.mark.parametrize("path", FILES, ids=os.path.basename)
def test_example_cites_only_documents_in_the_repository(path):
    with open(path) as f:
        text = f.read()
    # a section sign cites a section of some specification, which a reader of the repository lacks
    assert "\u00a7" not in text, f"{os.path.basename(path)} cites a document section"
    for document in re.findall(r"[\w./-]+\.md\b", text):
        assert glob.glob(os.path.join(REPO, "**", os.path.basename(document)), recursive=True), document


@pytest.mark.parametrize("path", FILES, ids=os.path.basename)
def test_example_uses_no_private_name_of_orrb(path):
    with open(path) as f:
        text = f.read()
    private = re.findall(r"\borrb(?:\.\w+)*\._\w+", text) + re.findall(r"from orrb[\w.]* import [^\n]*\b_\w+", text)
    assert not private, f"{os.path.basename(path)} uses private names: {private}"
