"""The shipped Dactyl scene has the original renderer's geometry: its cameras and its cube."""

from __future__ import annotations

import mujoco
import numpy as np
import pytest

import orrb
from orrb.scene import Mapping
from conftest import DACTYL_CAMERAS, dactyl_config

# (pos, quat w x y z, fovy in degrees) of the original's scene file
ORIGINAL_CAMERAS = {
    "vision_cam_left": ((1.75368, 1.28696, 0.901017), (-0.569423, -0.165741, -0.375009, -0.7125), 15.0),
    "vision_cam_right": ((0.281267, 1.30725, 0.827613), (-0.54325, -0.167474, 0.400291, 0.718748), 16.0),
    "vision_cam_top": ((1.01696, 0.892165, 0.880369), (0.024637, 0.018284, 0.021682, 0.999294), 28.0),
}
CUBE_HALF_SIZE = 0.0285
# which face (axis, sign) of the cube each letter sits on
LETTER_FACES = {"A": (2, 1), "I": (2, -1), "O": (1, 1), "E": (1, -1), "N": (0, 1), "P": (0, -1)}


@pytest.fixture(scope="module")
def model(assets_dir) -> mujoco.MjModel:
    return mujoco.MjModel.from_xml_path(f"{assets_dir}/dactyl.xml")


@pytest.mark.parametrize("camera", DACTYL_CAMERAS)
def test_each_camera_has_the_original_pose_and_field_of_view(model, camera):
    pos, quat, fovy = ORIGINAL_CAMERAS[camera]
    cam = model.camera(camera)
    np.testing.assert_allclose(cam.pos, pos, atol=1e-6)
    expected = np.array(quat) / np.linalg.norm(quat)
    assert min(np.abs(cam.quat - expected).max(), np.abs(cam.quat + expected).max()) < 1e-5
    assert cam.fovy[0] == pytest.approx(fovy)
    assert model.body(cam.bodyid[0]).id == 0, "the cameras are fixed in the world"


def test_cube_is_a_5_7_cm_block_at_the_original_place(model):
    cube = model.body("cube")
    np.testing.assert_allclose(cube.pos, (1.0, 0.87, 0.2))
    data = mujoco.MjData(model)
    mujoco.mj_kinematics(model, data)
    # the outer surface of the drawn faces is the block's surface
    faces = [g for g in range(model.ngeom) if (mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_GEOM, g) or "")
             .startswith("cube:face_")]
    extent = np.max([np.abs(model.geom_pos[g]) + model.geom_size[g] for g in faces], axis=0)
    np.testing.assert_allclose(extent, [CUBE_HALF_SIZE] * 3, atol=1e-9)


def _letter_face(model, geom_name):
    mesh = model.geom(geom_name).dataid[0]
    adr, n = model.mesh_vertadr[mesh], model.mesh_vertnum[mesh]
    g = model.geom(geom_name)
    rot = np.zeros(9)
    mujoco.mju_quat2Mat(rot, g.quat)
    verts = model.mesh_vert[adr:adr + n] @ rot.reshape(3, 3).T + g.pos  # in the cube's frame
    centre = verts.mean(axis=0)
    axis = int(np.argmax(np.abs(centre)))
    return axis, int(np.sign(centre[axis])), np.abs(verts[:, axis]).min()


@pytest.mark.parametrize("face,letter", [("top", "A"), ("bottom", "I"), ("left", "O"), ("right", "E"),
                                         ("front", "N"), ("back", "P")])
def test_each_letter_sits_on_the_original_face_just_proud_of_it(model, face, letter):
    axis, sign, inner = _letter_face(model, f"cube:letter_{face}")
    assert (axis, sign) == LETTER_FACES[letter]
    assert CUBE_HALF_SIZE - 0.0005 < inner < CUBE_HALF_SIZE
    assert (axis, sign) == _face_of_plate(model, f"cube:face_{face}")


def _face_of_plate(model, geom_name):
    pos = model.geom(geom_name).pos
    axis = int(np.argmax(np.abs(pos)))
    return axis, int(np.sign(pos[axis]))


def _project(points, cam_pos, cam_mat, fovy_deg, width, height):
    """Pinhole projection of world points to pixel coordinates (x right, y down, row 0 at top)."""
    local = (points - cam_pos) @ cam_mat  # camera frame: x right, y up, looking along -z
    f = (height / 2) / np.tan(np.radians(fovy_deg) / 2)
    u = width / 2 + f * local[:, 0] / -local[:, 2]
    v = height / 2 - f * local[:, 1] / -local[:, 2]
    return np.stack([u, v], axis=1)


def test_cube_projects_where_a_pinhole_camera_puts_its_box_corners(model, dactyl_states):
    size = 200
    state = dactyl_states[3:4]
    chain = orrb.RendererConfig()
    chain.add("Hide", "hide_hand", body_prefix="robot0:")  # nothing in front of the cube
    config = dactyl_config(image_width=size, image_height=size, render_segmentation=True)
    with orrb.LocalRenderer(config, chain) as renderer:
        cube_class = renderer.class_names.index("cube")
        out = renderer.render_batch({"qpos": state, "seed": 0})
    data = mujoco.MjData(model)
    data.qpos[:] = Mapping(model, config.resolve(config.model_mapping_path)).apply(state)[0]
    mujoco.mj_kinematics(model, data)
    mujoco.mj_camlight(model, data)
    cube = model.body("cube").id
    signs = np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)])
    corners = data.xpos[cube] + (signs * CUBE_HALF_SIZE) @ data.xmat[cube].reshape(3, 3).T
    for camera in DACTYL_CAMERAS:
        cam = model.camera(camera).id
        uv = _project(corners, data.cam_xpos[cam], data.cam_xmat[cam].reshape(3, 3), model.cam_fovy[cam], size, size)
        rows, cols = np.nonzero(out[f"{camera}_segmentation"][0] == cube_class)
        assert len(rows) > 100, f"{camera}: the cube is not in view"
        # a pixel belongs to the cube when its centre (i + 0.5) is inside the projected outline
        seen_lo = np.array([cols.min(), rows.min()], dtype=float)
        seen_hi = np.array([cols.max() + 1, rows.max() + 1], dtype=float)
        lo, hi = uv.min(axis=0), uv.max(axis=0)
        np.testing.assert_allclose(seen_hi - seen_lo, hi - lo, atol=2.0, err_msg=f"{camera}: projected size (px)")
        np.testing.assert_allclose((seen_lo + seen_hi) / 2, (lo + hi) / 2, atol=2.0,
                                   err_msg=f"{camera}: projected centre (px)")
