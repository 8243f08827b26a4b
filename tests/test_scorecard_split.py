"""The scorecard's validation/test split is disjoint by construction (frames, noise seeds, and from training),
and the scorecard reports the edge-structure figure and the colour ratio to the simulator's."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from envs.tiny_base import stand_in_frames_with_parts
from miniature.scorecard import (
    EditScorecard,
    OverlappingSplitError,
    ScorecardPart,
    ScorecardSplit,
    identity_edit,
    score_edits,
)
from sim2real_edit.feedback import Feedback, FeedbackConfig
from sim2real_edit.textures import generate_texture

BASE_SEED = 0
FRAMES = 3


@pytest.fixture(scope="module")
def split() -> ScorecardSplit:
    return ScorecardSplit.for_miniature(BASE_SEED, FRAMES)


@pytest.fixture(scope="module")
def validation(split):
    torch.set_num_threads(1)
    return stand_in_frames_with_parts(split.validation.frame_count, seed=split.validation.frame_seed)


@pytest.fixture(scope="module")
def judge() -> Feedback:
    return Feedback.analytic(FeedbackConfig(judges="analytic", analytic_embedder="material_statistics",
                                            use_segmenter=False, style_mask="full"))


@pytest.fixture(scope="module")
def exemplars() -> list[np.ndarray]:
    return [generate_texture("white_marble", (32, 32), seed=seed) for seed in range(2)]


def test_the_miniatures_split_is_disjoint_from_itself_and_from_training(split, validation):
    parts = (split.validation, split.test)
    frame_seeds = [part.frame_seed for part in parts]
    assert len(set(frame_seeds)) == 2 and not set(frame_seeds) & set(split.training_frame_seeds)
    assert BASE_SEED + 20_000 in split.training_frame_seeds  # the specialist's training frames
    first, second = sorted((split.validation.noise_seeds, split.test.noise_seeds), key=lambda seeds: seeds.start)
    assert first.stop <= second.start
    assert all(part.noise_seeds.stop <= 2**31 for part in parts)  # seeds any torch generator takes
    # Different seeds, different frames: no test frame is a validation frame.
    test = stand_in_frames_with_parts(FRAMES, seed=split.test.frame_seed).frames
    assert not any(np.array_equal(frame, other) for frame in test for other in validation.frames)


@pytest.mark.parametrize("change, message", [
    ({"test": ScorecardPart("test", 30_000, FRAMES, 2_100_000_000)}, "same seed"),
    ({"test": ScorecardPart("test", 20_000, FRAMES, 2_100_000_000)}, "training frame seed"),
    ({"test": ScorecardPart("test", 40_000, FRAMES, 2_000_000_000 + 39_999_999)}, "overlap"),
    ({"validation": ScorecardPart("validation", 30_000, FRAMES, 2_100_000_000 - 5, 10)}, "overlap"),
])
def test_overlapping_splits_are_refused(split, change, message):
    parts = {"validation": split.validation, "test": split.test, **change}
    with pytest.raises(OverlappingSplitError, match=message):
        ScorecardSplit(parts["validation"], parts["test"], split.training_frame_seeds)


def test_noise_seeds_come_from_the_parts_range_and_never_leave_it(split, validation, judge, exemplars):
    used: list[int] = []

    def recording_identity(frames, styles, seeds):
        used.extend(seeds)
        return frames.copy()

    card = score_edits("identity", recording_identity, validation.frames, validation.cabinet_masks, exemplars, judge,
                       rounds=2, part=split.validation, material_masks=validation.material_masks)
    assert card.split == "validation"
    assert len(set(used)) == 2 * FRAMES and all(seed in split.validation.noise_seeds for seed in used)
    assert not any(seed in split.test.noise_seeds for seed in used)
    small = ScorecardPart("validation", 30_000, FRAMES, 2_000_000_000, noise_seed_count=FRAMES)
    with pytest.raises(ValueError, match="beyond"):
        score_edits("identity", identity_edit, validation.frames, validation.cabinet_masks, exemplars, judge,
                    rounds=2, part=small)
    with pytest.raises(ValueError, match="frame_count"):
        score_edits("identity", identity_edit, validation.frames[:2], validation.cabinet_masks[:2], exemplars, judge,
                    rounds=1, part=split.validation)


def test_the_scorecard_reports_edge_structure_and_the_colour_ratio_to_the_sim(split, validation, judge, exemplars):
    frames, masks, material = validation.frames, validation.cabinet_masks, validation.material_masks
    identity = score_edits("identity", identity_edit, frames, masks, exemplars, judge, rounds=1,
                           part=split.validation, material_masks=material)
    assert identity.edge_structure == pytest.approx(1.0)
    assert identity.colour_ratio_to_sim == pytest.approx((1.0, 1.0, 1.0))

    def whiter_and_flat(frames, styles, seeds):
        edits = frames.copy()
        edits[masks] = (200, 190, 180)
        return edits

    flat = score_edits("flat", whiter_and_flat, frames, masks, exemplars, judge, rounds=1, part=split.validation,
                       material_masks=material)
    sim_colour = np.mean([frame[mask].astype(np.float64).mean(axis=0) for frame, mask in zip(frames, material)],
                         axis=0)
    assert flat.colour_ratio_to_sim == pytest.approx(tuple(np.array([200, 190, 180]) / sim_colour), rel=1e-6)
    assert flat.edge_structure < 0.1  # drawer lines and handles erased
    assert EditScorecard.from_dict(flat.to_dict()) == flat
