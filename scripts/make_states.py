#!/usr/bin/env python
"""Generate plausible qpos states for the Dactyl scene (assets/dactyl.xml).

Each row holds 31 floats in the order of assets/dactyl.mapping: the 24 Shadow Hand joints
(robot0:WRJ1 ... robot0:THJ0), the cube's slide offsets cube:cube_tx/ty/tz (metres, relative to
the cube body's rest position (1, 0.87, 0.2)) and its orientation cube:cube_rot as a unit
quaternion (w, x, y, z).

Hand joints are drawn uniformly inside their ranges, with finger flexion limited to the lower
part of the range (relaxed hands whose fingers do not cover the cube). The cube is placed over
the palm: its rest offset from the palm is kept in the palm's frame (so it follows the wrist),
plus up to +-1 cm of noise per axis. Orientation is a uniformly random unit quaternion.

Usage: python scripts/make_states.py [--count 64] [--seed 0] [--out assets/states/qpos.csv]
Runs from any working directory; output is deterministic for a given seed and count.
"""
import argparse
import os
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
XML = os.path.join(ROOT, "assets", "dactyl.xml")
MAPPING = os.path.join(ROOT, "assets", "dactyl.mapping")
if ROOT not in sys.path:  # the package's own mapping parser and joint table, also from a checkout
    sys.path.insert(0, ROOT)

# Fraction of each joint's range that is used, as (low, high) fractions of [lo, hi].
RELAXED = {
    "WRJ1": (0.25, 0.85), "WRJ0": (0.3, 0.7),
    "J3": (0.0, 1.0),            # finger abduction
    "J2": (0.0, 0.45), "J1": (0.0, 0.45), "J0": (0.0, 0.45),   # finger flexion
    "LFJ4": (0.0, 0.5),
    "THJ4": (0.0, 1.0), "THJ3": (0.0, 0.6), "THJ2": (0.0, 1.0), "THJ1": (0.0, 1.0),
    "THJ0": (0.5, 1.0),          # range is [-1.571, 0]; keep the tip mostly straight
}


def _fraction(joint):
    short = joint.split(":")[1]
    if short in RELAXED:
        return RELAXED[short]
    return RELAXED[short[-2:]]


def make_states(count, seed):
    import mujoco

    from orrb.scene import JOINT_WIDTH, Mapping, read_mapping

    model = mujoco.MjModel.from_xml_path(XML)
    data = mujoco.MjData(model)
    mapping = [(name, index) for _, name, index in read_mapping(MAPPING)]
    ncol = Mapping(model, MAPPING).columns
    rng = np.random.default_rng(seed)

    palm = model.body("robot0:palm").id
    cube_rest = model.body("cube").pos.copy()
    mujoco.mj_kinematics(model, data)
    local_offset = data.xmat[palm].reshape(3, 3).T @ (cube_rest - data.xpos[palm])

    states = np.zeros((count, ncol))
    hand = [(n, i) for n, i in mapping if n.startswith("robot0:")]
    for k in range(count):
        data.qpos[:] = model.qpos0
        for name, idx in hand:
            j = model.joint(name)
            lo, hi = j.range
            a, b = _fraction(name)
            q = rng.uniform(lo + a * (hi - lo), lo + b * (hi - lo))
            states[k, idx] = q
            data.qpos[j.qposadr[0]] = q
        mujoco.mj_kinematics(model, data)
        target = data.xpos[palm] + data.xmat[palm].reshape(3, 3) @ local_offset
        target += rng.uniform(-0.01, 0.01, size=3)
        offset = target - cube_rest
        quat = rng.normal(size=4)
        quat /= np.linalg.norm(quat)
        if quat[0] < 0:
            quat = -quat
        for name, idx in mapping:
            if name == "cube:cube_tx":
                states[k, idx] = offset[0]
            elif name == "cube:cube_ty":
                states[k, idx] = offset[1]
            elif name == "cube:cube_tz":
                states[k, idx] = offset[2]
            elif name == "cube:cube_rot":
                states[k, idx:idx + 4] = quat
    header = []
    for name, idx in mapping:
        if JOINT_WIDTH[int(model.joint(name).type[0])] == 4:  # a ball joint's quaternion
            header += [f"{name}.{c}" for c in "wxyz"]
        else:
            header.append(name)
    return states, header


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=os.path.join(ROOT, "assets", "states", "qpos.csv"))
    args = parser.parse_args()
    states, header = make_states(args.count, args.seed)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    np.savetxt(args.out, states, fmt="%.6f", delimiter=",", header=",".join(header), comments="# ")
    print(f"wrote {len(states)} states x {states.shape[1]} columns to {args.out}")


if __name__ == "__main__":
    main()
