"""Smoke tests: every script of examples/ runs to the end with tiny sizes and checks itself."""

from __future__ import annotations

import glob
import json
import os
import random
import re
import socket
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES = os.path.join(REPO, "examples")
SCRIPTS = sorted(glob.glob(os.path.join(EXAMPLES, "*.py")))


def _ports_free(ports) -> bool:
    for port in ports:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                return False
    return True


def free_base_port(offsets) -> int:
    """A base port such that base + every offset is free now."""
    rng = random.Random(os.getpid())
    for _ in range(200):
        base = rng.randrange(20000, 60000)
        if _ports_free(base + o for o in offsets):
            return base
    raise RuntimeError("no free ports")


def run_example(name: str, *args: str, cwd) -> str:
    proc = subprocess.run([sys.executable, os.path.join(EXAMPLES, name), *args], cwd=cwd,
                          capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, f"{name} failed (exit {proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout


def test_quickstart_renders_sync_and_async_identically_with_two_servers(tmp_path):
    port = free_base_port(range(2))
    out = run_example("quickstart.py", "--batch", "2", "--base-port", str(port), "--out", "q.png", cwd=tmp_path)
    assert "vision_cam_left: uint8 [2, 200, 200, 3]" in out
    assert "async result identical to the synchronous one: True" in out
    assert "tracker_cube_X_vision_cam_left" in out
    strip = np.asarray(Image.open(tmp_path / "q.png"))
    assert strip.shape == (200, 400, 3) and strip.std() > 3


def test_batch_demo_keeps_batches_in_flight_and_each_renders_with_its_queued_config(tmp_path):
    port = free_base_port(range(2))
    out = run_example("batch_demo.py", "--batches", "4", "--batch", "2", "--in-flight", "3", "--size", "32",
                      "--base-port", str(port), "--out-dir", "pngs", cwd=tmp_path)
    assert "up to 3 in flight" in out
    assert "batches queued under the same config are identical: True; A and B differ: True" in out
    assert sorted(os.listdir(tmp_path / "pngs")) == [f"batch_{k:02d}_{'AB'[k % 2]}.png" for k in range(4)]


def test_wrap_mujoco_env_adds_reproducible_images_to_ant(tmp_path):
    out = run_example("wrap_mujoco_env.py", "--steps", "10", "--size", "32", "--out", "ant.png", cwd=tmp_path)
    assert "'track': Box(0, 255, (32, 32, 3), uint8)" in out
    assert "reset(seed=0) reproduces the images: True" in out
    assert np.asarray(Image.open(tmp_path / "ant.png")).shape == (64, 2 * 32, 3)


def test_train_vision_trains_both_models_and_reports_pixel_errors(tmp_path):
    pytest.importorskip("torch")
    port = free_base_port([o + w for o in (0, 10, 100, 200, 300) for w in range(2)])
    out = run_example("train_vision.py", "--train-images", "32", "--repeats", "1", "--test-images", "8",
                      "--image-size", "48", "--batch-size", "16", "--workers", "0", "--base-port", str(port), "--out-dir", "tv",
                      cwd=tmp_path)
    assert "held-out domain" in out and "randomized model better on the held-out domain:" in out
    results = json.loads((tmp_path / "tv" / "train_vision_results.json").read_text())
    errors = results["errors_px"]
    assert len(errors) == 6  # 2 models x 3 test sets
    assert all(np.isfinite(v["mean"]) and 0 <= v["mean"] < 48 * 1.5 for v in errors.values())
    plot = np.asarray(Image.open(tmp_path / "tv" / "train_vision_predictions.png"))
    assert plot.ndim == 3 and plot.std() > 3


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


@pytest.mark.parametrize("path", SCRIPTS, ids=os.path.basename)
def test_example_cites_only_documents_in_the_repository(path):
    with open(path) as f:
        text = f.read()
    for outside in ("SPEC", "COMPONENTS.md", "MEASURED.md", "ARCHITECTURE.md", "API_ORIGIN", "API document"):
        assert outside not in text, f"{os.path.basename(path)} cites {outside!r}, which is not in the repository"
    for document in re.findall(r"[\w./-]+\.md\b", text):
        assert glob.glob(os.path.join(REPO, "**", os.path.basename(document)), recursive=True), document


@pytest.mark.parametrize("path", SCRIPTS, ids=os.path.basename)
def test_example_uses_no_private_name_of_orrb(path):
    with open(path) as f:
        text = f.read()
    private = re.findall(r"\borrb(?:\.\w+)*\._\w+", text) + re.findall(r"from orrb[\w.]* import [^\n]*\b_\w+", text)
    assert not private, f"{os.path.basename(path)} uses private names: {private}"
