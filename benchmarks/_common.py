"""Shared helpers for the benchmarks: the Dactyl config, states, timing and the output format.

Every benchmark is a script of its own (``python benchmarks/engine.py --quick``) that prints
a table of throughputs and then one line per ratio::

    ratio: <what> = <value> (target >= <target>)
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import numpy as np

import orrb

CAMERAS = ["vision_cam_left", "vision_cam_right", "vision_cam_top"]


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--quick", action="store_true", help="fewer states and repetitions (a smoke run)")
    p.add_argument("--size", type=int, default=200, help="image width and height in pixels (default 200)")
    p.add_argument("--states", type=int, default=16, help="states per batch (default 16)")
    p.add_argument("--repeats", type=int, default=15,
                   help="timed repetitions per variant, interleaved; the median counts (default 15)")
    return p


def dactyl_config(size: int, renderer_config_path: str | None = None) -> orrb.RemoteRendererConfig:
    config = orrb.RemoteRendererConfig()
    config.camera_names = list(CAMERAS)
    config.image_width = config.image_height = size
    config.model_xml_path = "dactyl.xml"
    config.model_mapping_path = "dactyl.mapping"
    config.renderer_config_path = renderer_config_path
    config.asset_basedir = orrb.utils.package_relative_path("assets")
    return config


def dactyl_states(count: int) -> np.ndarray:
    states = np.loadtxt(orrb.utils.package_relative_path("assets/states/qpos.csv"), delimiter=",")
    return np.resize(states, (count, states.shape[1]))


def bare_loop(renderer: orrb.LocalRenderer, config: orrb.RemoteRendererConfig, states: np.ndarray):
    """The baseline: what any user would write with ``mujoco.Renderer`` for the same model,
    cameras, states and render settings (qpos, kinematics, update_scene + render per camera).

    Returns ``(run, close)``: ``run()`` renders every state once.
    """
    import mujoco

    model = renderer.model
    qpos = orrb.scene.Mapping(model, config.resolve(config.model_mapping_path)).apply(states)
    data = mujoco.MjData(model)
    bare = mujoco.Renderer(model, config.image_height, config.image_width)

    def run():
        for q in qpos:
            data.qpos[:] = q
            mujoco.mj_kinematics(model, data)
            mujoco.mj_camlight(model, data)
            for camera in config.camera_names:
                bare.update_scene(data, camera)
                bare.render()

    return run, bare.close


def interleaved(variants: dict, repeats: int) -> dict[str, float]:
    """Times each ``{name: fn}`` ``repeats`` times, interleaved (A B A B ...) so drift hits all
    alike; returns the median seconds per call of each."""
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(repeats):
        for name, fn in variants.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def interleaved_cpu(variants: dict, repeats: int) -> tuple[dict[str, float], dict[str, float]]:
    """As :func:`interleaved`, also returning each variant's median process CPU seconds per
    call (all threads of this process: on llvmpipe the rasterizer's too). CPU time stays
    meaningful on a machine shared with other work, where wall time mostly measures the others."""
    times: dict[str, list[float]] = {name: [] for name in variants}
    cpu: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(repeats):
        for name, fn in variants.items():
            start, start_cpu = time.perf_counter(), time.process_time()
            fn()
            times[name].append(time.perf_counter() - start)
            cpu[name].append(time.process_time() - start_cpu)
    return ({name: statistics.median(v) for name, v in times.items()},
            {name: statistics.median(v) for name, v in cpu.items()})


def machine() -> str:
    import os

    import mujoco

    return (f"{platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}, mujoco {mujoco.__version__}, "
            f"MUJOCO_GL={os.environ.get('MUJOCO_GL')}")


def report(title: str, rates: dict[str, float], unit: str, ratios: list[tuple[str, float, float | None]]) -> None:
    print(f"== {title}")
    print(f"machine: {machine()}")
    width = max(len(k) for k in rates)
    for name, rate in rates.items():
        print(f"  {name:<{width}}  {rate:9.1f} {unit}")
    for what, value, target in ratios:
        suffix = f" (target >= {target})" if target is not None else ""
        print(f"ratio: {what} = {value:.3f}{suffix}")
