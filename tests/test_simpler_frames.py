"""The cabinet-mask recipe of envs.masks, and the SIMPLER start frames in ../shared/simpler-frames.

The frames (rasterised, `shader_dir="ibl"`, URDF recolor_cabinet_visual_matching_1, reset seed 0) come with
exact cabinet masks from SIMPLER's segmentation. Tests that use them skip where the folder is absent; the
test marked `simpler` recomputes every mask from the live simulator (SIMPLER installed, e.g. in the
simpler-cpu virtual environment) and compares it with the PNG.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from envs.masks import MaskSource, SimulatorMasks, cabinet_mask, cabinet_segmentation_ids
from envs.protocol import ROBOT_POSES, DrawerTask, Trial

FRAMES_DIR = Path(__file__).resolve().parents[2] / "shared" / "simpler-frames"
FRAME_SHAPE = (512, 640, 3)
FRAMES_URDF_VERSION = "recolor_cabinet_visual_matching_1"  # see FRAMES_DIR / "README.md"
MASK_EDGE_TOLERANCE = 0.001  # fraction of the frame's pixels


def load_index() -> list[dict]:
    return json.loads((FRAMES_DIR / "index.json").read_text())


def load_mask(entry: dict) -> np.ndarray:
    return np.asarray(Image.open(FRAMES_DIR / entry["mask"])) > 127


@pytest.fixture(scope="module")
def index() -> list[dict]:
    if not (FRAMES_DIR / "index.json").is_file():
        pytest.skip(f"no SIMPLER start frames at {FRAMES_DIR}")
    return load_index()


# --- the recipe, on segmentations built here -------------------------------------------------------------


def segmentation_from_ids(actor_ids: np.ndarray) -> np.ndarray:
    """An (H, W, 4) uint32 segmentation like SIMPLER's, with `actor_ids` in channel 1 and mesh ids in 0."""
    segmentation = np.zeros((*actor_ids.shape, 4), dtype=np.uint32)
    segmentation[..., 0] = actor_ids + 100
    segmentation[..., 1] = actor_ids
    return segmentation


def test_cabinet_mask_selects_cabinet_ids_in_channel_1():
    actor_ids = np.array([[38, 39, 40], [41, 42, 25], [39, 26, 38]])  # 38 arena, 39-42 cabinet, 25-26 robot
    mask = cabinet_mask(segmentation_from_ids(actor_ids), (39, 40, 41, 42))
    np.testing.assert_array_equal(mask, [[False, True, True], [True, True, False], [True, False, False]])
    batch = np.stack([segmentation_from_ids(actor_ids), segmentation_from_ids(np.full((3, 3), 38))])
    assert cabinet_mask(batch, [39, 40, 41, 42]).sum(axis=(1, 2)).tolist() == [5, 0]


@pytest.mark.parametrize("shape", [(8, 8), (8, 8, 1), (2, 3, 8, 8, 4)])
def test_cabinet_mask_refuses_other_layouts(shape):
    with pytest.raises(ValueError, match="segmentation image"):
        cabinet_mask(np.zeros(shape, dtype=np.uint32), [1])


def test_simulator_masks_follow_the_mask_source_protocol():
    actor_ids = np.stack([np.where(np.eye(4, dtype=bool), 7, 1), np.ones((4, 4), dtype=int)])
    segmentations = np.stack([segmentation_from_ids(ids) for ids in actor_ids])
    frames = np.zeros((2, 4, 4, 3), dtype=np.uint8)
    source: MaskSource = SimulatorMasks([7])
    masks, found = source.masks(frames, segmentations)
    assert masks.dtype == bool and masks.shape == (2, 4, 4)
    np.testing.assert_array_equal(masks[0], np.eye(4, dtype=bool))
    assert found.tolist() == [True, False]
    with pytest.raises(ValueError, match="segmentation of each frame"):
        source.masks(frames, None)
    with pytest.raises(ValueError, match="same N, H, W"):
        source.masks(frames[:1], segmentations)


def test_cabinet_segmentation_ids_of_an_env_without_a_cabinet_says_what_is_expected():
    import gymnasium as gym

    env = gym.make("CartPole-v1")
    with pytest.raises(TypeError, match="cabinet_segmentation_ids"):
        cabinet_segmentation_ids(env)


def test_the_same_recipe_gives_the_stand_in_its_exact_cabinet_mask():
    from envs.standin import DrawerStandIn

    env = DrawerStandIn("CloseMiddleDrawer", "c1")
    obs, _ = env.reset(seed=0)
    segmentation = obs["image"]["overhead_camera"]["Segmentation"]
    mask = cabinet_mask(segmentation, cabinet_segmentation_ids(env))
    np.testing.assert_array_equal(mask, env.unwrapped.cabinet_mask())
    robot_pixels = np.isin(segmentation[..., 1], env.unwrapped.robot_segmentation_ids)
    assert 0.15 < mask.mean() < 0.6 and robot_pixels.any() and not (mask & robot_pixels).any()


# --- the shared frames -------------------------------------------------------------------------------


def test_index_covers_the_protocol_start_frames(index):
    by_env = defaultdict(set)
    for entry in index:
        by_env[entry["env_id"]].add(entry["pose"])
        assert entry["instruction"] == DrawerTask.parse(entry["env_id"]).instruction
    assert set(by_env) == {"OpenTopDrawerCustomInScene-v0"} | {
        f"Close{d}DrawerCustomInScene-v0" for d in ("Top", "Middle", "Bottom")}
    assert all(poses == set(ROBOT_POSES) for poses in by_env.values())


def test_frames_and_masks_load_with_plausible_cabinet_areas(index):
    for entry in index:
        frame = np.asarray(Image.open(FRAMES_DIR / entry["file"]))
        raw_mask = np.asarray(Image.open(FRAMES_DIR / entry["mask"]))
        assert frame.shape == FRAME_SHAPE and frame.dtype == np.uint8, entry["file"]
        assert raw_mask.shape == FRAME_SHAPE[:2] and set(np.unique(raw_mask)) <= {0, 255}, entry["mask"]
        mask = raw_mask > 127
        assert mask.mean() == pytest.approx(entry["cabinet_fraction"], abs=1e-9), entry["mask"]
        assert 0.15 < mask.mean() < 0.6, entry["mask"]
        assert not mask[:16].any(), f"{entry['mask']}: the camera sees the cabinet's top below the frame's edge"


def test_an_open_drawer_shows_more_cabinet_than_closed_ones(index):
    closed = {e["pose"]: load_mask(e).sum() for e in index if e["env_id"].startswith("Open")}
    for entry in index:
        if entry["env_id"].startswith("Close"):
            assert load_mask(entry).sum() > closed[entry["pose"]], entry["mask"]


@pytest.mark.simpler
@pytest.mark.slow
def test_live_simulator_masks_match_the_shared_masks(index):
    pytest.importorskip("mani_skill2_real2sim.envs", reason="SIMPLER (ManiSkill2_real2sim) is not installed")
    pytest.importorskip("simpler_env", reason="SIMPLER (SimplerEnv) is not installed")
    from envs.simpler import POLICY_CAMERA, make_simpler_drawer, trial_reset_options

    entries_by_task = defaultdict(list)
    for entry in index:
        entries_by_task[DrawerTask.parse(entry["env_id"])].append(entry)
    mismatches, frame_differences = {}, {}
    for task, entries in entries_by_task.items():
        # One env per task; the other poses are reached through reset options. Masks do not depend on the
        # background overlay, but frames do, so frames are compared at the env's own pose only.
        own_pose = entries[0]["pose"]
        env = make_simpler_drawer(task, own_pose, shader_dir="ibl", urdf_version=FRAMES_URDF_VERSION)
        try:
            for entry in entries:
                options = trial_reset_options(Trial(task, entry["pose"]))
                obs, _ = env.reset(seed=0, options=options)
                camera = obs["image"][POLICY_CAMERA]
                live_mask = cabinet_mask(camera["Segmentation"], cabinet_segmentation_ids(env))
                mismatches[entry["mask"]] = int((live_mask != load_mask(entry)).sum())
                if entry["pose"] == own_pose:
                    shared_frame = np.asarray(Image.open(FRAMES_DIR / entry["file"])).astype(np.int16)
                    frame_differences[entry["file"]] = float(np.abs(camera["rgb"] - shared_frame).mean())
        finally:
            env.close()
    # With the software rasteriser the frames were made with, masks and frames match bit for bit; another
    # rasteriser (a GPU's) may differ on a few edge pixels, while a wrong id set misses thousands.
    assert len(mismatches) == len(index)
    allowed_pixels = MASK_EDGE_TOLERANCE * FRAME_SHAPE[0] * FRAME_SHAPE[1]
    assert all(count <= allowed_pixels for count in mismatches.values()), mismatches
    assert all(difference < 1.0 for difference in frame_differences.values()), frame_differences
