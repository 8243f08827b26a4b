"""The stand-in's miniature real world (`appearance="real"`, envs.appearance): same scene and state as the
simulator, a marble cabinet in object space, warm light with a vignette, blur and per-frame sensor noise."""

from __future__ import annotations

import math

import numpy as np
import pytest

from envs import standin
from envs.appearance import REAL_CABINET_STYLE, REAL_CABINET_TEXTURE_SEED, TEXTURE_SIZE, RealCamera
from envs.standin import CAMERA_NAME, DrawerStandIn, DrawerStandInConfig
from sim2real_edit.styles import get_style

SMALL = DrawerStandInConfig(image_width=160, image_height=128, focal_length=106.25)
ACTIONS = [np.r_[0.03, 0.02, -0.04, 0.0, 0.0, 0.0, 0.0], np.r_[0.04, -0.01, -0.03, 0.0, 0.0, 0.0, 1.0]]


def run(
    appearance: str,
    seed: int,
    task: str = "CloseTopDrawer",
    pose: str = "b1",
    config: DrawerStandInConfig = SMALL,
    steps: int = 4,
) -> list[tuple[dict, dict]]:
    env = DrawerStandIn(task, pose, config=config, appearance=appearance)
    obs, info = env.reset(seed=seed)
    frames = [(obs, info)]
    for step in range(steps):
        obs, _, _, _, info = env.step(ACTIONS[step % len(ACTIONS)])
        frames.append((obs, info))
    return frames


def lighting_gain(height: int, width: int) -> np.ndarray:
    """The stated lighting: RGB cast (1.04, 1.00, 0.94) times a vignette 8% darker in the corners."""
    v, u = np.mgrid[0:height, 0:width]
    cy, cx = (height - 1) / 2, (width - 1) / 2
    vignette = 1 - 0.08 * ((u - cx) ** 2 + (v - cy) ** 2) / (cx**2 + cy**2)
    return vignette[..., None] * np.array([1.04, 1.00, 0.94])


@pytest.mark.parametrize(("task", "pose"), [("CloseTopDrawer", "b1"), ("OpenBottomDrawer", "a2")])
def test_real_frames_differ_inside_the_cabinet_and_follow_the_light_and_noise_model_outside(
    task: str, pose: str
):
    sim, real = run("sim", 3, task, pose), run("real", 3, task, pose)
    gain = lighting_gain(SMALL.image_height, SMALL.image_width)
    previous = None
    for (sim_obs, _), (real_obs, _) in zip(sim, real):
        sim_camera, real_camera = sim_obs["image"][CAMERA_NAME], real_obs["image"][CAMERA_NAME]
        mask = np.isin(sim_camera["Segmentation"][..., 1], [21, 22, 23, 24])
        expected = np.clip(sim_camera["rgb"] * gain, 0, 255)
        residual = real_camera["rgb"].astype(float) - expected
        outside = residual[~mask]
        assert mask.sum() > 1000
        # At 160 px the blur (sigma 0.15 px) is below a pixel: outside the cabinet, light and noise remain.
        assert abs(outside.mean()) < 0.3
        assert 2.7 < outside.std() < 3.3
        # The marble cabinet is far from the simulator's brown one.
        assert np.abs(residual[mask]).mean() > 25
        if previous is not None:  # fresh sensor noise every frame
            previous_residual, previous_mask = previous
            both = ~mask & ~previous_mask
            assert abs(np.corrcoef(previous_residual[both].ravel(), residual[both].ravel())[0, 1]) < 0.1
        previous = residual, mask


def test_state_masks_and_rewards_are_the_simulators():
    sim, real = run("sim", 11), run("real", 11)
    for (sim_obs, sim_info), (real_obs, real_info) in zip(sim, real):
        np.testing.assert_array_equal(
            sim_obs["image"][CAMERA_NAME]["Segmentation"], real_obs["image"][CAMERA_NAME]["Segmentation"]
        )
        for group in ("agent", "extra"):
            for key, value in sim_obs[group].items():
                np.testing.assert_array_equal(value, real_obs[group][key])
        assert sim_info == real_info


def test_a_real_episode_is_reproducible_per_seed_and_its_noise_is_not_shared_between_seeds():
    first, again, other = run("real", 5), run("real", 5), run("real", 6)
    for (a, _), (b, _) in zip(first, again):
        np.testing.assert_array_equal(a["image"][CAMERA_NAME]["rgb"], b["image"][CAMERA_NAME]["rgb"])
    # Another seed moves the start by its jitter; the noise differs even where the scene does not.
    a, b = first[0][0]["image"][CAMERA_NAME], other[0][0]["image"][CAMERA_NAME]
    background = (a["Segmentation"][..., 1] == 1) & (b["Segmentation"][..., 1] == 1)
    difference = a["rgb"][background].astype(float) - b["rgb"][background]
    assert 3.5 < difference.std() < 5.0  # two independent sigma-3 noises: sqrt(2) * 3


def project(obs: dict, points: np.ndarray) -> np.ndarray:
    """Nearest pixel (row, col) of world points, from the observation's camera parameters."""
    params = obs["camera_param"][CAMERA_NAME]
    extrinsic, intrinsic = params["extrinsic_cv"].astype(float), params["intrinsic_cv"].astype(float)
    camera_points = points @ extrinsic[:3, :3].T + extrinsic[:3, 3]
    uv = camera_points[:, :2] / camera_points[:, 2:] * intrinsic[0, 0] + intrinsic[:2, 2]
    return np.rint(uv[:, ::-1]).astype(int)


def test_the_texture_slides_with_its_drawer():
    """Points fixed on the top drawer keep their colour when it slides; a texture fixed in the world would
    show other veins on the drawer's top edge (whose texture coordinates are (x, y))."""
    config = DrawerStandInConfig()
    env = DrawerStandIn("OpenTopDrawer", "b1", config=config, appearance="real")
    _, _, z_low, z_high = standin._drawer_front_extent(config, 0)
    ys = np.linspace(-0.25, 0.25, 60)
    front_face = np.array([[0.0, y, z] for y in ys for z in np.linspace(z_low + 0.02, z_high - 0.02, 12)])
    top_edge = np.array([[-config.drawer_front_thickness / 2, y, z_high] for y in ys])
    samples, on_drawer = {}, {}
    for opening in (0.10, 0.22):
        obs, _ = env.reset(seed=0, options={"drawer_qpos": (opening, 0.0, 0.0)})
        rgb, mesh_ids = env.render_without_robot(), obs["image"][CAMERA_NAME]["Segmentation"][..., 0]
        for name, points in (("front", front_face), ("top", top_edge)):
            rows, cols = project(obs, points + [config.cabinet_front_x + opening, 0.0, 0.0]).T
            samples[(name, opening)] = rgb[rows, cols].astype(float)
            # The top drawer's own mesh: not its handle, not the arm.
            on_drawer[name] = on_drawer.get(name, True) & (mesh_ids[rows, cols] == 32)
    for name, shift in (("front", 14 * 12), ("top", 14)):  # 14 samples along y: 0.12 m, 30 texels
        assert on_drawer[name].mean() > 0.8
        brightness = {
            opening: samples[(name, opening)][on_drawer[name]].mean(axis=1) for opening in (0.10, 0.22)
        }
        same_points = np.corrcoef(brightness[0.10], brightness[0.22])[0, 1]
        # What a world-fixed texture would show on the edge instead: the material 0.12 m away.
        elsewhere = np.corrcoef(brightness[0.10], np.roll(brightness[0.10], shift))[0, 1]
        assert same_points > 0.5 and elsewhere < 0.3, (name, same_points, elsewhere)
    assert samples[("top", 0.10)].std() > 5  # the edge shows texture, not a flat colour


def test_the_real_cabinet_is_a_held_out_piece_of_the_styles_marble():
    style = get_style(REAL_CABINET_STYLE)
    assert style.texture == "white_marble"
    assert REAL_CABINET_TEXTURE_SEED not in style.procedural_exemplar_seeds()
    texture = style.procedural_texture((TEXTURE_SIZE, TEXTURE_SIZE), REAL_CABINET_TEXTURE_SEED)
    sim, real = DrawerStandIn("OpenTopDrawer", "b1"), DrawerStandIn("OpenTopDrawer", "b1", appearance="real")
    sim.reset(seed=0)
    real.reset(seed=0)
    up = np.array([0.0, 0.0, 1.0])
    top_colour = standin._shade(standin.CABINET_ALBEDO, up).astype(np.uint8)
    top_face = np.all(sim.render_without_robot() == top_colour, axis=-1) & sim.cabinet_mask()
    assert top_face.sum() > 10_000
    marble = real.render_without_robot()[top_face] / standin._shading_factor(up)
    np.testing.assert_allclose(marble.mean(axis=0), texture.reshape(-1, 3).mean(axis=0), atol=8)
    assert marble.std(axis=0).min() > 5  # veins and clouds, not a flat colour


def test_the_blur_is_a_gaussian_of_0_6_px_at_640_and_scales_with_the_width():
    camera = RealCamera()
    for width, sigma in ((640, 0.6), (1280, 1.2)):
        edge = np.full((8, width, 3), 20, dtype=np.uint8)  # away from 0 and 255: no clipped noise
        edge[:, width // 2 :] = 220
        frames = np.stack([camera.expose(edge, (seed,)) for seed in range(64)]).astype(float)
        gain = lighting_gain(8, width)
        profile = (
            (frames.mean(axis=0) / gain)[:, width // 2 - 4 : width // 2 + 4].mean(axis=(0, 2)) - 20
        ) / 200
        # A step convolved with the sampled Gaussian (truncated at 3 sigma): its cumulative weights.
        offsets = np.arange(-math.ceil(3 * sigma), math.ceil(3 * sigma) + 1)
        weights = np.exp(-0.5 * (offsets / sigma) ** 2)
        weights /= weights.sum()
        expected = [weights[offsets <= k].sum() for k in range(-4, 4)]
        np.testing.assert_allclose(profile, expected, atol=0.02)
    sharp = np.zeros((8, 160, 3), dtype=np.uint8)
    sharp[:, 80:] = 200
    small = np.stack([camera.expose(sharp, (seed,)) for seed in range(64)]).astype(float).mean(axis=0)
    assert small[:, 79].mean() < 2 and small[:, 80].mean() > 180  # 0.15 px: no visible blur


def test_unknown_appearance_names_the_choices():
    with pytest.raises(ValueError, match="'sim'.*'real'"):
        DrawerStandIn("OpenTopDrawer", "b1", appearance="photo")
