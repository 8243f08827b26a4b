"""The trainer uses the simulator's exact masks where frames carry them and Grounded-SAM2 elsewhere."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sim2real_edit.d3po import tiny_config, train
from sim2real_edit.feedback import Feedback, FeedbackConfig, GradientDepth, MaskResult, MeanColourEmbedder
from sim2real_edit.frames import TrainingFrames

pytestmark = pytest.mark.usefixtures("tiny_base")  # the tiny preset's base: the session's small build


class CountingSegmenter:
    """A segmenter that finds the left half of every image and records how many images it was asked about."""

    def __init__(self):
        self.images_seen = 0

    def __call__(self, images, prompt):
        count = len(images)
        self.images_seen += count
        shape = tuple(images.shape)  # uint8 (N, H, W, 3) or float (N, 3, H, W)
        height, width = shape[2:] if shape[1] == 3 else shape[1:3]
        masks = torch.zeros(count, height, width, dtype=torch.bool)
        masks[:, :, : width // 2] = True
        return MaskResult(masks, torch.ones(count, dtype=torch.bool))


def frames_with_masks(known: list[bool]) -> TrainingFrames:
    rng = np.random.default_rng(0)
    count = len(known)
    frames = rng.integers(0, 256, (count, 32, 32, 3), dtype=np.uint8)
    masks = np.zeros((count, 32, 32), bool)
    masks[:, 8:24, 8:24] = True
    return TrainingFrames(frames, masks, np.array(known), [str(i) for i in range(count)])


@pytest.mark.parametrize(("known", "expected_segmented"), [([True] * 4, 0), ([True, False, True, False], 4),
                                                           ([False] * 4, 8)])
def test_trainer_segments_only_frames_without_exact_masks(tmp_path, monkeypatch, known, expected_segmented):
    monkeypatch.setenv("SIM2REAL_EDIT_HOME", str(tmp_path / "home"))
    segmenter = CountingSegmenter()
    feedback = Feedback(GradientDepth(), MeanColourEmbedder(), segmenter, FeedbackConfig(style_mask="full"))
    config = tiny_config(output_dir=str(tmp_path / "run"), optimizer_steps=1, samples_per_step=8,
                         num_denoising_steps=2, short_side=32, sample_batch_size=4)
    style = np.full((32, 32, 3), (180, 120, 60), np.uint8)
    # 4 pairs per step drawn from 4 frames without replacement: every frame is edited twice.
    train(config, frames=frames_with_masks(known), exemplars=[style], feedback=feedback, progress=False)
    assert segmenter.images_seen == expected_segmented
