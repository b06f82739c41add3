"""RayRenderer and ``orrb dataset --ray`` on a real local Ray cluster (two nodes on this machine).

One cluster serves the module: a head node with 4 logical CPUs (the renderer of most tests
holds 2 of them while another test starts its own) and, for the node-loss test, a second
node. Render traffic is real ZeroMQ (CURVE) between real actor processes.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import orrb
from orrb.errors import RendererError

from conftest import dactyl_config

# A test cluster on loopback only: Ray otherwise advertises (and dials) the machine's outward address.
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")

ray = pytest.importorskip("ray", reason="the ray extra is not installed (pip install \"orrb[ray]\")")
from ray.cluster_utils import Cluster  # noqa: E402

from orrb.ray import RayRenderer  # noqa: E402

NODE = {"node_ip_address": "127.0.0.1", "include_dashboard": False, "object_store_memory": 80 << 20}


def small_config(**fields) -> orrb.RemoteRendererConfig:
    defaults = dict(camera_names=["vision_cam_left"], image_width=32, image_height=32, render_depth=True,
                    render_segmentation=True)
    defaults.update(fields)
    return dactyl_config(**defaults)


@pytest.fixture(scope="module")
def cluster():
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 4, **NODE})
    ray.init(address=cluster.address, log_to_driver=False)
    yield cluster
    ray.shutdown()
    cluster.shutdown()


@pytest.fixture(scope="module")
def renderer(cluster):
    with RayRenderer("test-ray", small_config(), 2, timeout=10, connect_timeout=5) as renderer:
        yield renderer


@pytest.fixture(scope="module")
def reference(dactyl_states):
    """LocalRenderer outputs of 8 states for seeds 0..19 (the bit-exact reference)."""
    with orrb.LocalRenderer(small_config()) as local:
        return [local.render_batch({"qpos": dactyl_states[:8], "seed": s}) for s in range(20)]


def assert_same(result, reference):
    for key in [k for k in reference if k not in ("seed", "seeds", "qpos")]:
        assert result[key].dtype == reference[key].dtype and result[key].shape == reference[key].shape, key
        assert np.array_equal(result[key], reference[key]), f"{key} differs"


def gone(pid: int) -> bool:
    """The process has exited (absent, or a zombie waiting to be reaped)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def wait_until(condition, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.2)
    return condition()


def test_api_document_snippet_runs_through_ray_renderer(cluster, dactyl_states):
    def _build_renderer(num_workers):
        config = orrb.RemoteRendererConfig()
        config.camera_names = ['vision_cam_left']
        config.image_width = 200
        config.image_height = 200
        config.renderer_version = orrb.get_renderer_version()
        config.model_xml_path = 'dactyl.xml'
        config.model_mapping_path = 'dactyl.mapping'
        config.renderer_config_path = 'demo_keras.renderer_config.json'
        config.asset_basedir = orrb.utils.package_relative_path('assets')
        config.render_depth = False
        config.render_normals = False
        config.render_segmentation = False
        return config, RayRenderer('OrrbRenderer0', config, num_workers)

    config, renderer = _build_renderer(2)
    renderer.start()
    batch = {"qpos": dactyl_states[:4], "seed": 0}

    result = renderer.render_batch(batch)

    result_queue = queue.Queue()

    renderer.render_batch_async(batch, result_queue)

    result2 = result_queue.get()
    result_queue.task_done()

    renderer.shutdown()

    for res in (result, result2):
        assert res["vision_cam_left"].shape == (4, 200, 200, 3) and res["vision_cam_left"].dtype == np.uint8
        assert res["vision_cam_left"].std() > 5, "blank image"
    assert np.array_equal(result["vision_cam_left"], result2["vision_cam_left"])


def test_batches_are_bit_identical_to_local_renderer(renderer, reference, dactyl_states):
    assert len(set(renderer.addresses)) == 2 and all(a.startswith("tcp://127.0.0.1:") for a in renderer.addresses)
    for seed in (0, 7):
        assert_same(renderer.render_batch({"qpos": dactyl_states[:8], "seed": seed}), reference[seed])


def test_client_with_the_wrong_secret_is_refused(renderer):
    for secret in ("not-the-renderer-secret", None):
        intruder = orrb.RemoteRenderer("intruder", [renderer.addresses[0]], small_config(), secret=secret,
                                       connect_timeout=2)
        with pytest.raises(RendererError, match="secret"):
            intruder.start()
        intruder.shutdown()


def test_killed_actor_is_restarted_and_all_20_batches_in_flight_complete_correctly(renderer, reference,
                                                                                  dactyl_states):
    old_address, old_pid = renderer.addresses[0], renderer.server_pids[0]
    futures = [renderer.render_batch_async({"qpos": dactyl_states[:8], "seed": s}) for s in range(20)]
    futures[0].result(timeout=60)  # rendering is under way
    ray.kill(renderer.actors[0], no_restart=False)
    for seed, future in enumerate(futures):
        assert_same(future.result(timeout=120), reference[seed])
    # Ray restarted the actor on a new port; the pool connects there and renders with it again
    assert wait_until(lambda: renderer.addresses[0] != old_address, 60), "the killed actor did not come back"
    assert renderer.server_pids[0] != old_pid and gone(old_pid)
    assert_same(renderer.render_batch({"qpos": dactyl_states[:8], "seed": 3}), reference[3])


def test_actors_inherit_the_drivers_entries_per_readback_and_render_as_a_local_renderer_with_it(
        cluster, dactyl_states, monkeypatch):
    from orrb.engine import EngineOptions

    monkeypatch.setenv("ORRB_ENTRIES_PER_READBACK", "3")
    with RayRenderer("test-ray-env", small_config(), 1, timeout=10, connect_timeout=5) as renderer:
        infos = ray.get([actor.info.remote() for actor in renderer.actors])
        result = renderer.render_batch({"qpos": dactyl_states[:8], "seed": 5})
    assert [info["entries_per_readback"] for info in infos] == ["3"]
    monkeypatch.delenv("ORRB_ENTRIES_PER_READBACK")
    with orrb.LocalRenderer(small_config(), engine_options=EngineOptions(entries_per_readback=3)) as local:
        assert_same(result, local.render_batch({"qpos": dactyl_states[:8], "seed": 5}))


def test_shutdown_leaves_no_actor_and_no_server_process(cluster, dactyl_states):
    renderer = RayRenderer("test-ray-shutdown", small_config(), 2)
    renderer.render_batch({"qpos": dactyl_states[:2], "seed": 0})
    pids, actors = renderer.server_pids, renderer.actors
    renderer.shutdown()
    renderer.shutdown()  # idempotent
    for actor in actors:
        with pytest.raises(ray.exceptions.RayActorError):
            ray.get(actor.info.remote(), timeout=30)
    assert wait_until(lambda: all(gone(p) for p in pids), 10), "a server process outlived shutdown()"
    with pytest.raises(RendererError):
        renderer.render_batch({"qpos": dactyl_states[:2], "seed": 0})


DRIVER = """
import json, sys, ray, orrb
sys.path.insert(0, {tests!r})
from conftest import dactyl_config
from orrb.ray import RayRenderer
ray.init(address={address!r}, log_to_driver=False)
config = dactyl_config(camera_names=["vision_cam_left"], image_width=32, image_height=32)
renderer = RayRenderer("doomed-driver", config, 2).start()
print(json.dumps({{"pids": renderer.server_pids}}), flush=True)
sys.stdin.read()  # until killed
"""


def test_driver_killed_with_sigkill_leaves_no_actor_and_no_server_process(cluster):
    script = DRIVER.format(tests=os.path.dirname(os.path.abspath(__file__)), address=cluster.address)
    with subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                          stderr=subprocess.DEVNULL, text=True) as driver:
        line = driver.stdout.readline()
        assert line, "the driver script failed before its renderer started"
        pids = json.loads(line)["pids"]
        assert len(pids) == 2 and not any(gone(p) for p in pids)
        os.kill(driver.pid, signal.SIGKILL)  # (the with block kills it too when an assertion fails first)
        driver.wait()
        assert wait_until(lambda: all(gone(p) for p in pids), 30), "a server actor outlived its killed driver"


def test_node_lost_for_good_shrinks_the_pool_and_batches_complete(cluster, reference, dactyl_states):
    node = cluster.add_node(num_cpus=1, **NODE)
    try:
        # one server per node; no restarts: the actor on the removed node is gone for good
        with RayRenderer("test-ray-node", small_config(), 2, placement="SPREAD", max_restarts=0, timeout=10,
                         connect_timeout=5) as pool:
            assert len(set(pool.node_ids)) == 2, f"SPREAD placed both servers on one node: {pool.node_ids}"
            futures = [pool.render_batch_async({"qpos": dactyl_states[:8], "seed": s}) for s in range(6)]
            futures[0].result(timeout=60)
            cluster.remove_node(node)
            node = None
            for seed, future in enumerate(futures):
                assert_same(future.result(timeout=120), reference[seed])
            assert_same(pool.render_batch({"qpos": dactyl_states[:8], "seed": 9}), reference[9])
    finally:
        if node is not None:
            cluster.remove_node(node)


def test_actor_of_a_lost_node_is_restarted_on_another_node_and_rejoins(cluster, reference, dactyl_states):
    node = cluster.add_node(num_cpus=1, **NODE)
    try:
        with RayRenderer("test-ray-move", small_config(), 2, placement="SPREAD", max_restarts=1, timeout=10,
                         connect_timeout=5) as pool:
            head = ray.get_runtime_context().get_node_id()
            assert len(set(pool.node_ids)) == 2, f"SPREAD placed both servers on one node: {pool.node_ids}"
            moved = pool.node_ids.index(next(n for n in pool.node_ids if n != head))
            futures = [pool.render_batch_async({"qpos": dactyl_states[:8], "seed": s}) for s in range(6)]
            cluster.remove_node(node)
            node = None
            for seed, future in enumerate(futures):
                assert_same(future.result(timeout=120), reference[seed])
            # Ray placed the lost bundle on the head node; the pool renders with the restarted actor there
            assert wait_until(lambda: pool.node_ids[moved] == head, 60), "the actor was not restarted elsewhere"
            assert wait_until(lambda: pool.stats["restarts"] >= 1, 30)
            assert_same(pool.render_batch({"qpos": dactyl_states[:8], "seed": 9}), reference[9])
    finally:
        if node is not None:
            cluster.remove_node(node)


def test_dataset_over_two_ray_workers_equals_the_single_machine_dataset(cluster, tmp_path):
    from orrb.cli import main
    from orrb.dataset import load_dataset, load_manifest

    common = ["dataset", "--count", "10", "--shard-size", "4", "--size", "24", "--cameras", "vision_cam_left",
              "--seed", "5", "--quiet"]
    assert main(common + ["--out", str(tmp_path / "local")]) == 0
    # in two runs: the first stops after one shard, the second resumes
    assert main(common + ["--out", str(tmp_path / "ray"), "--ray", "--workers", "2", "--stop-after", "1"]) == 0
    assert len(os.listdir(tmp_path / "ray")) == 2  # the manifest and one shard
    assert main(common + ["--out", str(tmp_path / "ray"), "--ray", "--workers", "2"]) == 0
    local, on_ray = load_dataset(tmp_path / "local"), load_dataset(tmp_path / "ray")
    assert sorted(local) == sorted(on_ray)
    for key in local:
        assert local[key].dtype == on_ray[key].dtype and np.array_equal(local[key], on_ray[key]), key
    assert load_manifest(tmp_path / "local") == load_manifest(tmp_path / "ray")


def test_server_gone_and_moved_hooks_reroute_a_pool_of_orrb_serve_processes(dactyl_states, reference):
    """The pool hooks RayRenderer uses, with servers started by hand (no Ray)."""
    from test_pool import free_base_port

    base = free_base_port(3)
    procs = [subprocess.Popen([sys.executable, "-m", "orrb", "serve", "--port", str(base + i), "--lp-threads", "0"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for i in range(3)]
    try:
        addresses = [f"tcp://127.0.0.1:{base + i}" for i in range(3)]
        with orrb.RemoteRenderer("hooks", addresses[:2], small_config(), timeout=30) as pool:
            futures = [pool.render_batch_async({"qpos": dactyl_states[:8], "seed": s}) for s in range(6)]
            procs[0].kill()
            pool.server_gone(0, "its host was switched off")  # not after the 30 s timeout
            started = time.monotonic()
            for seed, future in enumerate(futures):
                assert_same(future.result(timeout=60), reference[seed])
            assert time.monotonic() - started < 25
            pool.server_moved(0, addresses[2])
            assert wait_until(lambda: procs[2].poll() is None and _serves(pool, 0), 30)
            assert_same(pool.render_batch({"qpos": dactyl_states[:8], "seed": 4}), reference[4])
            with pytest.raises(IndexError):
                pool.server_gone(5, "no such server")
            with pytest.raises(ValueError):
                pool.server_moved(1, "127.0.0.1:80")
        # the last server gone: its batches wait for it, and complete once it is back elsewhere
        with orrb.RemoteRenderer("hooks-single", addresses[1:2], small_config(), timeout=30) as single:
            futures = [single.render_batch_async({"qpos": dactyl_states[:8], "seed": s}) for s in range(3)]
            single.server_gone(0, "its container is being rescheduled")
            futures += [single.render_batch_async({"qpos": dactyl_states[:8], "seed": s}) for s in range(3, 6)]
            time.sleep(1.0)
            assert not any(f.done() for f in futures[3:]), "a batch completed with no server"
            single.server_moved(0, addresses[2])
            for seed, future in enumerate(futures):
                assert_same(future.result(timeout=60), reference[seed])
        # moved with requests in flight and no word that it was gone: they are sent again at the new address
        with orrb.RemoteRenderer("hooks-moved", addresses[1:2], small_config(), timeout=30) as moved:
            futures = [moved.render_batch_async({"qpos": dactyl_states[:64], "seed": s}) for s in range(3)]
            moved.server_moved(0, addresses[2])
            for seed, future in enumerate(futures):
                assert_same({k: v[:8] for k, v in future.result(timeout=20).items() if np.ndim(v)}, reference[seed])
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()


def _serves(pool, index: int) -> bool:
    from orrb.pool.supervisor import ServerState

    return pool._servers[index].state is ServerState.READY
