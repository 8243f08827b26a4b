"""The CPU stand-in for SIMPLER's drawer envs: API, success rule, determinism, exact mask, dynamics."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from PIL import Image
from scipy.spatial import Delaunay

from envs import standin
from envs.protocol import ALL_TASKS, MAX_EPISODE_STEPS, DrawerTask
from envs.standin import CAMERA_NAME, DrawerStandIn, DrawerStandInConfig

SIMPLER_FRAMES = Path(__file__).resolve().parents[2] / "shared" / "simpler-frames"
# Same geometry at a quarter of the resolution, for tests that do not look at pixels.
SMALL = DrawerStandInConfig(image_width=160, image_height=128, focal_length=106.25)


def move_tcp_towards(env: DrawerStandIn, obs: dict, target: np.ndarray, gripper: float, steps: int) -> dict:
    """Drives the tcp towards a world point, converting the world offset into the base-frame action."""
    yaw = 2 * np.arctan2(obs["agent"]["base_pose"][6], obs["agent"]["base_pose"][3])
    for _ in range(steps):
        d = target - obs["extra"]["tcp_pose"][:3]
        base = np.array(
            [np.cos(yaw) * d[0] + np.sin(yaw) * d[1], -np.sin(yaw) * d[0] + np.cos(yaw) * d[1], d[2]]
        )
        obs, *_ = env.step(np.r_[base, 0.0, 0.0, 0.0, gripper])
    return obs


def test_check_env_passes():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # SIMPLER's own spaces are unbounded / not normalised
        check_env(DrawerStandIn("CloseTopDrawer", "b2"))
        check_env(DrawerStandIn("OpenBottomDrawer", "c0", add_segmentation=False, render_mode="rgb_array"))


def test_observation_layout_matches_simpler_rgbd():
    env = DrawerStandIn(DrawerTask("open", "middle"), "a1")
    obs, info = env.reset(seed=0)
    camera = obs["image"][CAMERA_NAME]
    assert camera["rgb"].dtype == np.uint8 and camera["rgb"].shape == (512, 640, 3)
    assert camera["Segmentation"].dtype == np.int32 and camera["Segmentation"].shape == (512, 640, 4)
    assert obs["agent"]["qpos"].shape == (11,) and obs["agent"]["qpos"].dtype == np.float32
    assert obs["extra"]["tcp_pose"].shape == (7,) and obs["extra"]["tcp_pose"].dtype == np.float32
    assert obs["extra"]["handle_pos"].shape == (3, 3)
    assert obs["camera_param"][CAMERA_NAME]["intrinsic_cv"][0, 0] == pytest.approx(425.0)
    assert env.observation_space.contains(obs)
    assert set(info) >= {"success", "drawer_qpos", "elapsed_steps"}
    assert env.get_language_instruction() == "open middle drawer"
    assert env.action_space.shape == (7,)
    np.testing.assert_allclose(
        env.action_space.high, [1, 1, 1, np.pi / 2, np.pi / 2, np.pi / 2, 1], rtol=1e-6
    )
    np.testing.assert_array_equal(
        env.cabinet_mask(), np.isin(camera["Segmentation"][..., 1], env.cabinet_segmentation_ids)
    )
    assert (
        "Segmentation"
        not in DrawerStandIn("OpenTopDrawer", add_segmentation=False).reset(seed=0)[0]["image"][CAMERA_NAME]
    )


@pytest.mark.parametrize(
    ("task", "target_qpos", "success"),
    [
        ("OpenTopDrawer", 0.15, True),
        ("OpenTopDrawer", 0.1499, False),
        ("OpenBottomDrawer", 0.15, True),
        ("CloseMiddleDrawer", 0.05, True),
        ("CloseMiddleDrawer", 0.0501, False),
        ("CloseBottomDrawer", 0.2, False),
    ],
)
def test_success_rule_at_thresholds(task: str, target_qpos: float, success: bool):
    env = DrawerStandIn(task, "b1", config=SMALL, add_segmentation=False)
    qpos = np.zeros(3)
    qpos[env.target_index] = target_qpos
    env.reset(seed=0, options={"drawer_qpos": qpos})
    _, reward, terminated, truncated, info = env.step(np.zeros(7))
    assert info["drawer_qpos"] == pytest.approx(target_qpos)
    assert info["success"] is success and reward == float(success)
    assert not terminated and not truncated


@pytest.mark.parametrize("task", ALL_TASKS, ids=lambda task: task.name)
def test_start_openings_follow_simpler(task: DrawerTask):
    env = DrawerStandIn(task, "a0", config=SMALL, add_segmentation=False)
    _, info = env.reset(seed=3)
    expected = 0.2 if task.action == "close" else 0.0
    assert info["drawer_qpos"] == pytest.approx(expected) and not info["success"]
    assert env.drawer_qpos.sum() == pytest.approx(expected)  # the other drawers start closed


def test_truncates_at_113_steps_and_never_terminates():
    env = DrawerStandIn("OpenTopDrawer", "c1", config=SMALL, add_segmentation=False)
    env.reset(seed=0)
    for step in range(1, MAX_EPISODE_STEPS + 1):
        _, _, terminated, truncated, info = env.step(np.zeros(7))
        assert not terminated
        assert truncated == (step == MAX_EPISODE_STEPS)
        assert info["elapsed_steps"] == step


def test_same_seed_gives_byte_identical_episode():
    actions = np.random.default_rng(0).uniform(-0.05, 0.05, size=(15, 7))
    actions[:, 6] = np.where(np.arange(15) % 4 == 0, 1.0, -1.0)

    def episode(seed: int) -> list[dict]:
        env = DrawerStandIn("CloseTopDrawer", "b0")
        frames = [env.reset(seed=seed)[0]]
        frames += [env.step(action)[0] for action in actions]
        return frames

    first, second, other_seed = episode(7), episode(7), episode(8)
    for a, b in zip(first, second):
        assert a["image"][CAMERA_NAME]["rgb"].tobytes() == b["image"][CAMERA_NAME]["rgb"].tobytes()
        assert (
            a["image"][CAMERA_NAME]["Segmentation"].tobytes()
            == b["image"][CAMERA_NAME]["Segmentation"].tobytes()
        )
        np.testing.assert_array_equal(a["extra"]["tcp_pose"], b["extra"]["tcp_pose"])
    assert not np.array_equal(first[0]["extra"]["tcp_pose"], other_seed[0]["extra"]["tcp_pose"])


@pytest.mark.parametrize("pose", ["a0", "b1", "c2"])
def test_cabinet_mask_is_the_projected_cabinet_minus_the_arm(pose: str):
    env = DrawerStandIn("OpenTopDrawer", pose)
    obs, _ = env.reset(seed=0)
    # Bring the gripper in front of the middle drawer (not touching it) so that it hides part of the cabinet.
    obs = move_tcp_towards(env, obs, obs["extra"]["handle_pos"][1] + [0.06, 0.0, 0.0], gripper=-1.0, steps=12)
    assert np.all(obs["extra"]["drawer_qpos"] == 0.0)

    # With every drawer closed the cabinet's silhouette is the convex hull of its box's projected corners.
    c = env.config
    xs = (c.cabinet_front_x - c.cabinet_depth, c.cabinet_front_x)
    ys = (c.cabinet_center_y - c.cabinet_width / 2, c.cabinet_center_y + c.cabinet_width / 2)
    corners = np.array([[x, y, z, 1.0] for x in xs for y in ys for z in (0.0, c.cabinet_height)])
    params = obs["camera_param"][CAMERA_NAME]
    in_camera = (params["extrinsic_cv"].astype(np.float64) @ corners.T)[:3]
    uv = (params["intrinsic_cv"].astype(np.float64) @ in_camera)[:2] / in_camera[2]
    v, u = np.mgrid[0:512, 0:640]
    silhouette = (Delaunay(uv.T).find_simplex(np.stack([u.ravel(), v.ravel()], axis=1)) >= 0).reshape(
        512, 640
    )

    segmentation = obs["image"][CAMERA_NAME]["Segmentation"][..., 1]
    arm = np.isin(segmentation, env.robot_segmentation_ids)
    mask = np.isin(segmentation, env.cabinet_segmentation_ids)
    assert (arm & silhouette).sum() > 300, "the arm should hide part of the cabinet in this test"
    assert not (mask & arm).any()
    np.testing.assert_array_equal(mask, silhouette & ~arm)
    np.testing.assert_array_equal(env.cabinet_mask(), mask)
    # Where the arm is, the frame shows the arm, not the cabinet rendered without it.
    without_robot = env.render_without_robot()
    rgb = obs["image"][CAMERA_NAME]["rgb"]
    assert np.any(rgb[arm] != without_robot[arm])
    np.testing.assert_array_equal(rgb[~arm], without_robot[~arm])


def test_opening_a_drawer_changes_its_appearance():
    env = DrawerStandIn("OpenMiddleDrawer", "b1")
    env.reset(seed=0, options={"drawer_qpos": (0.0, 0.0, 0.0)})
    closed_rgb, closed_mask = env.render_without_robot(), env.cabinet_mask()
    env.reset(seed=0, options={"drawer_qpos": (0.0, 0.25, 0.0)})
    open_rgb, open_mask = env.render_without_robot(), env.cabinet_mask()
    assert (
        open_mask & ~closed_mask
    ).sum() > 2000  # the pulled-out drawer reaches below the closed silhouette
    assert np.abs(open_rgb.astype(int) - closed_rgb).sum(axis=-1).astype(bool).sum() > 10000


def test_start_pose_moves_the_camera_like_simpler():
    def mask_centre_u(pose: str) -> float:
        env = DrawerStandIn("OpenTopDrawer", pose)
        env.reset(seed=0)
        return float(np.nonzero(env.cabinet_mask())[1].mean())

    # In SIMPLER the cabinet appears further left from the a poses to the c poses (robot y grows).
    a1, b1, c1 = mask_centre_u("a1"), mask_centre_u("b1"), mask_centre_u("c1")
    assert a1 > b1 + 50 and b1 > c1 + 50


@pytest.mark.skipif(not SIMPLER_FRAMES.is_dir(), reason="../shared/simpler-frames is not present")
def test_masks_resemble_simpler_start_frames():
    entries = json.loads((SIMPLER_FRAMES / "index.json").read_text())
    for entry in entries[::4]:
        env = DrawerStandIn(entry["file"].split("_")[0], entry["pose"])
        env.reset(seed=0)
        simpler = np.asarray(Image.open(SIMPLER_FRAMES / entry["mask"])) > 0
        ours = env.cabinet_mask()
        iou = (ours & simpler).sum() / (ours | simpler).sum()
        assert iou > 0.8, f"{entry['file']}: IoU {iou:.3f} with SIMPLER's cabinet mask"


def test_closed_gripper_at_handle_pulls_and_open_gripper_pushes():
    env = DrawerStandIn("OpenBottomDrawer", "b1", config=SMALL, add_segmentation=False)
    obs, _ = env.reset(seed=0)
    handle = obs["extra"]["handle_pos"][2].astype(np.float64)
    obs = move_tcp_towards(env, obs, handle + [0.08, 0.0, 0.0], gripper=-1.0, steps=15)
    obs = move_tcp_towards(env, obs, handle, gripper=-1.0, steps=4)
    obs = move_tcp_towards(env, obs, obs["extra"]["tcp_pose"][:3], gripper=1.0, steps=1)
    obs = move_tcp_towards(env, obs, handle + [0.2, 0.0, 0.0], gripper=0.0, steps=6)
    assert obs["extra"]["drawer_qpos"][2] == pytest.approx(0.2, abs=0.02)
    assert obs["extra"]["drawer_qpos"][:2].tolist() == [0.0, 0.0]
    # Release, back off, then push the front with the open gripper.
    obs = move_tcp_towards(env, obs, obs["extra"]["tcp_pose"][:3] + [0.05, 0, 0.04], gripper=-1.0, steps=2)
    obs = move_tcp_towards(env, obs, obs["extra"]["tcp_pose"][:3] - [0.4, 0, 0], gripper=-1.0, steps=8)
    assert obs["extra"]["drawer_qpos"][2] == pytest.approx(0.0)


def test_closing_the_gripper_away_from_a_handle_grasps_nothing():
    env = DrawerStandIn("OpenTopDrawer", "b1", config=SMALL, add_segmentation=False)
    obs, _ = env.reset(seed=0)
    handle = obs["extra"]["handle_pos"][0].astype(np.float64)
    obs = move_tcp_towards(env, obs, handle + [0.0, 0.0, 0.06], gripper=-1.0, steps=15)  # above the handle
    obs = move_tcp_towards(env, obs, obs["extra"]["tcp_pose"][:3], gripper=1.0, steps=1)
    obs = move_tcp_towards(env, obs, obs["extra"]["tcp_pose"][:3] + [0.2, 0, 0], gripper=0.0, steps=6)
    assert obs["extra"]["drawer_qpos"][0] == 0.0


def test_errors_name_the_problem_and_the_fix():
    with pytest.raises(ValueError, match="overhead_camera"):
        DrawerStandIn(camera="base_camera")
    with pytest.raises(ValueError, match="known tasks"):
        DrawerStandIn(task="OpenFridge")
    with pytest.raises(ValueError, match="a0"):
        DrawerStandIn(pose="z9")
    env = DrawerStandIn(config=SMALL)
    with pytest.raises(RuntimeError, match="reset"):
        env.step(np.zeros(7))
    with pytest.raises(ValueError, match="drawer_qpos"):
        env.reset(options={"drawer_qpos": (0.5, 0.0)})
    env.reset(seed=0)
    with pytest.raises(ValueError, match="7-D"):
        env.step(np.zeros(6))


@pytest.mark.parametrize("pose", ["a2", "b0", "c1"])
def test_cached_cabinet_equals_a_full_redraw(pose: str):
    """The renderer redraws only pulled-out drawers over a cached closed cabinet; painting the whole cabinet
    back to front must give the same pixels and ids."""
    config = DrawerStandInConfig()
    camera = standin._Camera.mounted(pose, config)
    scene = standin._DrawerScene(pose, config)
    for qpos in ([0.0, 0.3, 0.0], [0.32, 0.0, 0.32], [0.12, 0.25, 0.07]):
        full = standin._background_canvas(pose, config).copy()
        y_half = config.cabinet_width / 2
        low = [config.cabinet_front_x - config.cabinet_depth, config.cabinet_center_y - y_half, 0.0]
        high = [config.cabinet_front_x, config.cabinet_center_y + y_half, config.cabinet_height]
        body = standin.CABINET_LINK_IDS["body"]
        standin._draw_box(
            full, camera, low, high, standin.CABINET_ALBEDO, body, body + standin._MESH_ID_OFFSET
        )
        for index in range(3):
            standin._draw_cavity(full, camera, config, index)
        for index in (2, 1, 0):
            standin._draw_drawer(full, camera, config, index, qpos[index])
        cached = scene.render_cabinet(np.array(qpos))
        np.testing.assert_array_equal(cached.rgb, full.rgb)
        np.testing.assert_array_equal(cached.actor_ids, full.actor_ids)
        np.testing.assert_array_equal(cached.mesh_ids, full.mesh_ids)


def test_box_faces_carry_their_own_outward_normals():
    """Shading and back-face culling read each box face's normal; it must be the normal of its corners."""
    low, high = np.array([0.0, 0.0, 0.0]), np.array([1.0, 2.0, 3.0])
    corners = np.array(
        [[(low, high)[i >> 2][0], (low, high)[(i >> 1) & 1][1], (low, high)[i & 1][2]] for i in range(8)]
    )
    for normal, face in standin._BOX_FACES:
        points = corners[list(face)]
        axis = int(np.argmax(np.abs(normal)))
        assert np.ptp(points[:, axis]) == 0  # the face is the plane across the normal's axis...
        side = high if normal[axis] > 0 else low
        assert points[0, axis] == side[axis]  # ...on the side it points to
