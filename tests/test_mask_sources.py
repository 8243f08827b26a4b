"""Both mask sources answer the same call: the simulator's exact masks and Grounded-SAM2's."""

from __future__ import annotations

import numpy as np
import torch

from envs.masks import GroundedSAM2Masks, SimulatorMasks
from envs.standin import DrawerStandIn
from sim2real_edit.feedback import MaskResult


def test_simulator_masks_equal_the_stand_ins_known_cabinet_region():
    env = DrawerStandIn("CloseMiddleDrawer", "c1")
    obs, _ = env.reset(seed=0)
    camera = obs["image"]["overhead_camera"]
    masks, found = SimulatorMasks.from_env(env).masks(camera["rgb"][None], camera["Segmentation"][None])
    np.testing.assert_array_equal(masks[0], env.cabinet_mask())
    assert found.tolist() == [True]


class HalfFrameSegmenter:
    """Finds the prompt in the left half of the first image only."""

    def __call__(self, images, prompt):
        count, height, width = images.shape[0], images.shape[1], images.shape[2]
        masks = torch.zeros(count, height, width, dtype=torch.bool)
        masks[0, :, : width // 2] = True
        return MaskResult(masks, torch.tensor([True] + [False] * (count - 1)))


def test_grounded_sam2_masks_report_what_was_not_found():
    frames = np.zeros((2, 16, 20, 3), np.uint8)
    masks, found = GroundedSAM2Masks(HalfFrameSegmenter()).masks(frames, None)
    assert masks.shape == (2, 16, 20) and masks.dtype == bool
    assert found.tolist() == [True, False]
    assert masks[0, :, :10].all() and not masks[1].any()


def test_same_call_for_both_sources():
    env = DrawerStandIn("OpenTopDrawer", "a0")
    obs, _ = env.reset(seed=1)
    camera = obs["image"]["overhead_camera"]
    for source in (SimulatorMasks.from_env(env), GroundedSAM2Masks(HalfFrameSegmenter())):
        masks, found = source.masks(camera["rgb"][None], camera["Segmentation"][None])
        assert masks.shape == (1, 512, 640) and found.shape == (1,)
