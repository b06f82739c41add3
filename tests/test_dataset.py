"""``orrb dataset``: round trip against direct renders, resuming after a kill, the format."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import orrb
from orrb.cli import main
from orrb.dataset import load_dataset, load_states, sample_states
from orrb.scene import Mapping, compile_spec, load_spec

ASSETS = orrb.utils.package_relative_path("assets")


def _config_arg() -> str:
    try:
        orrb.RendererConfig.load(os.path.join(ASSETS, "dactyl.renderer_config.json"))
    except orrb.ConfigError:
        return "none"
    return "dactyl.renderer_config.json"


def _args(out, count, shard_size, *extra):
    return ["dataset", "--count", str(count), "--shard-size", str(shard_size), "--out", str(out),
            "--size", "32", "--cameras", "vision_cam_left", "--config", _config_arg(), "--seed", "3",
            "--quiet", *extra]


def _direct_render(qpos, seeds, segmentation=True):
    from orrb.cli.dataset import dataset_chain

    config = orrb.RemoteRendererConfig(
        camera_names=["vision_cam_left"], image_width=32, image_height=32, model_xml_path="dactyl.xml",
        model_mapping_path="dactyl.mapping", asset_basedir=ASSETS, render_segmentation=segmentation,
        renderer_config_path=None if _config_arg() == "none" else _config_arg())
    chain = dataset_chain(config, "cube")
    with orrb.LocalRenderer(config, chain) as renderer:
        return renderer.render_batch({"qpos": qpos, "seeds": seeds}), renderer.class_names


def test_dataset_round_trips_to_a_direct_render_of_its_states_and_seeds(tmp_path):
    out = tmp_path / "ds"
    assert main(_args(out, 6, 4)) == 0
    data = load_dataset(out)
    np.testing.assert_array_equal(data["index"], np.arange(6))
    assert len(np.unique(data["seeds"])) == 6
    expected, class_names = _direct_render(data["qpos"], data["seeds"])
    np.testing.assert_array_equal(data["images_vision_cam_left"], expected["vision_cam_left"])
    np.testing.assert_array_equal(data["segmentation_vision_cam_left"], expected["vision_cam_left_segmentation"])
    for key, value in expected.items():
        if key.startswith("tracker_"):
            np.testing.assert_array_equal(data[key], value, err_msg=key)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["class_names"] == class_names
    assert "cube" in manifest["class_names"]


def test_sampled_states_stay_in_joint_ranges_with_a_randomly_oriented_cube():
    xml = os.path.join(ASSETS, "dactyl.xml")
    model = compile_spec(load_spec(xml), xml)
    mapping = Mapping(model, os.path.join(ASSETS, "dactyl.mapping"))
    states = sample_states(model, mapping, 500, np.random.default_rng(0))
    assert states.shape == (500, 31)
    hand = states[:, :24]
    lo, hi = model.jnt_range[:24].T  # the hand's joints come first in model and mapping order
    assert np.all(hand >= lo - 1e-12) and np.all(hand <= hi + 1e-12)
    assert np.all(hand.std(axis=0) > 0)
    assert np.all(np.abs(states[:, 24:27]) <= 0.01)  # cube within 1 cm of its rest position
    quats = states[:, 27:31]
    np.testing.assert_allclose(np.linalg.norm(quats, axis=1), 1.0)
    assert np.abs(quats.mean(axis=0)[1:]).max() < 0.1  # no preferred axis
    again = sample_states(model, mapping, 500, np.random.default_rng(0))
    np.testing.assert_array_equal(states, again)


def test_killed_dataset_run_resumes_to_the_same_items_without_rewriting_finished_shards(tmp_path):
    out = tmp_path / "ds"
    command = [sys.executable, "-m", "orrb", *_args(out, 24, 2)]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while not (out / "shard_00001.npz").exists():
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline, "no shard written within 120 s"
            time.sleep(0.005)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
        proc.stderr.close()
    finished = {p.name: p.stat().st_mtime_ns for p in out.glob("shard_*.npz")}
    assert 2 <= len(finished) < 12, f"the kill came too late to test resuming ({len(finished)} shards)"

    assert main(_args(out, 24, 2)) == 0
    for name, mtime in finished.items():
        assert (out / name).stat().st_mtime_ns == mtime, f"{name} was rewritten"
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json"] + [f"shard_{s:05d}.npz" for s in range(12)]
    resumed = load_dataset(out)
    np.testing.assert_array_equal(resumed["index"], np.arange(24))

    assert main(_args(tmp_path / "straight", 24, 2, "--no-segmentation")) == 0
    straight = load_dataset(tmp_path / "straight")
    for key in ("images_vision_cam_left", "qpos", "seeds", "cube_pos", "cube_quat"):
        np.testing.assert_array_equal(resumed[key], straight[key], err_msg=key)


def test_dataset_in_chunks_with_stop_after_ends_complete(tmp_path, capsys):
    out = tmp_path / "ds"
    assert main(_args(out, 5, 2, "--stop-after", "1", "--no-segmentation")) == 0
    assert "2 shards still to write" in capsys.readouterr().out
    assert sorted(p.name for p in out.glob("shard_*")) == ["shard_00000.npz"]
    with pytest.raises(FileNotFoundError, match="shard_00001.npz is missing"):
        load_dataset(out)
    assert main(_args(out, 5, 2, "--no-segmentation")) == 0
    assert "dataset complete" in capsys.readouterr().out
    assert load_dataset(out)["images_vision_cam_left"].shape == (5, 32, 32, 3)


def test_dataset_loads_with_numpy_and_json_alone_as_documented(tmp_path):
    out = tmp_path / "ds"
    assert main(_args(out, 3, 2, "--depth")) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["format"] == "orrb-dataset" and manifest["version"] == 2
    assert manifest["count"] == 3 and manifest["num_shards"] == 2 and manifest["cameras"] == ["vision_cam_left"]
    assert manifest["image_width"] == manifest["image_height"] == 32
    assert "shard_" in manifest["description"]
    with np.load(out / "shard_00001.npz", allow_pickle=False) as shard:
        assert sorted(shard.files) == sorted(manifest["arrays"])
        for name, info in manifest["arrays"].items():
            assert list(shard[name].shape[1:]) == info["shape"] and str(shard[name].dtype) == info["dtype"], name
            assert info["doc"]
        assert shard["images_vision_cam_left"].dtype == np.uint8
        assert shard["depth_vision_cam_left"].dtype == np.float32
        assert shard["index"].tolist() == [2]


def test_rerun_with_other_settings_refuses_to_mix_datasets(tmp_path, capsys):
    out = tmp_path / "ds"
    assert main(_args(out, 2, 2, "--no-segmentation")) == 0
    assert main([*_args(out, 2, 2, "--no-segmentation")[:-4], "--seed", "4", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "seed: existing 3, now 4" in err and "another --out folder" in err


def test_rerun_with_other_render_settings_refuses_to_mix_datasets(tmp_path, capsys):
    out = tmp_path / "ds"
    assert main(_args(out, 2, 1, "--no-segmentation", "--msaa", "0", "--stop-after", "1")) == 0
    assert main(_args(out, 2, 1, "--no-segmentation", "--msaa", "4")) == 2
    err = capsys.readouterr().err
    assert "render_settings: existing {'msaa_samples': 0" in err and "now {'msaa_samples': 4" in err
    assert sorted(os.listdir(out)) == ["manifest.json", "shard_00000.npz"]


def test_shards_without_a_manifest_are_not_resumed(tmp_path, capsys):
    out = tmp_path / "ds"
    assert main(_args(out, 2, 1, "--no-segmentation", "--stop-after", "1")) == 0
    (out / "manifest.json").unlink()
    assert main(_args(out, 2, 1, "--no-segmentation")) == 2
    assert "holds dataset shards but no manifest.json" in capsys.readouterr().err


def test_manifest_is_written_before_the_first_shard(tmp_path):
    out = tmp_path / "ds"
    assert main(_args(out, 2, 1, "--no-segmentation", "--stop-after", "0")) == 0
    assert sorted(os.listdir(out)) == ["manifest.json"]  # a rerun can check what it continues
    assert json.loads((out / "manifest.json").read_text())["seed"] == 3


def test_loading_shards_that_disagree_names_the_shard(tmp_path):
    out = tmp_path / "ds"
    assert main(_args(out, 3, 2, "--no-segmentation")) == 0
    with np.load(out / "shard_00001.npz") as shard:
        arrays = {k: shard[k] for k in shard.files if k != "seeds"}
    np.savez(out / "shard_00001.npz", **arrays)
    with pytest.raises(ValueError, match="shard_00001.npz holds arrays"):
        load_dataset(out)


def test_load_states_reads_the_shipped_csv():
    states = load_states(os.path.join(ASSETS, "states", "qpos.csv"))
    assert states.shape == (64, 31) and states.dtype == np.float64


def test_dataset_rendered_by_a_server_pool_equals_the_in_process_one(tmp_path):
    import random
    import socket

    rng = random.Random(os.getpid() + 1)
    while True:
        port = rng.randrange(20000, 60000)
        try:
            for p in (port, port + 1):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", p))
            break
        except OSError:
            continue
    assert main(_args(tmp_path / "pool", 6, 4, "--workers", "2", "--base-port", str(port))) == 0
    assert main(_args(tmp_path / "local", 6, 4)) == 0
    pool, local = load_dataset(tmp_path / "pool"), load_dataset(tmp_path / "local")
    assert sorted(pool) == sorted(local)
    for key in local:
        np.testing.assert_array_equal(pool[key], local[key], err_msg=key)
    manifest = json.loads((tmp_path / "pool" / "manifest.json").read_text())
    assert manifest["class_names"][0] == "background" and "cube" in manifest["class_names"]
