"""Preference scores, advantages and ranking, and the analytic judges through `Feedback` (no networks)."""

import numpy as np
import pytest
import torch

from sim2real_edit.feedback import (
    Feedback,
    FeedbackConfig,
    FeedbackInputError,
    GradientDepth,
    MeanColourEmbedder,
    embedding_distance,
    material_word,
    normalized_advantages,
    object_word,
    outside_mask_error,
    rank_pairs,
    semantic_score,
    structure_score,
    total_advantage,
)
from sim2real_edit.feedback.embeddings import masked_mean, patch_weights
from sim2real_edit.feedback.pixels import as_bool_masks, as_unit_pixels

SIZE = 64


def grid_mask(count: int = 2) -> torch.Tensor:
    """A mask of the central 32x32 square, aligned to a 16x16 patch grid of 4-pixel patches."""
    mask = torch.zeros(count, SIZE, SIZE, dtype=torch.bool)
    mask[:, 16:48, 16:48] = True
    return mask


def random_pixels(count: int = 2, seed: int = 0) -> torch.Tensor:
    return torch.rand(count, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(seed))


def test_structure_score_is_zero_for_identical_depth_and_grows_with_the_change():
    depth = torch.rand(3, SIZE, SIZE)
    assert torch.equal(structure_score(depth, depth.clone()), torch.zeros(3))
    scores = []
    for height in (0.1, 0.5, 2.0):
        changed = depth.clone()
        changed[:, :16] += height  # a quarter of the rows move by `height`
        scores.append(structure_score(depth, changed))
        torch.testing.assert_close(scores[-1], torch.full((3,), height / 4))
    assert scores[0][0] < scores[1][0] < scores[2][0]


def test_structure_score_rejects_depth_maps_of_different_sizes():
    with pytest.raises(ValueError, match="same shape"):
        structure_score(torch.zeros(2, 8, 8), torch.zeros(2, 8, 9))


def test_pixel_term_responds_only_to_changes_outside_the_mask():
    inputs, mask = random_pixels(), grid_mask()
    inside = inputs.clone()
    inside[:, :, 16:48, 16:48] = 1 - inside[:, :, 16:48, 16:48]
    assert torch.equal(outside_mask_error(inputs, inside, mask), torch.zeros(2))
    outside = inputs.clone()
    outside[:, :, :8] = (outside[:, :, :8] + 0.25).clamp(max=1)
    expected = (outside - inputs).square().mean(dim=1)[:, :8].sum(dim=(1, 2)) / (~mask[0]).sum()
    torch.testing.assert_close(outside_mask_error(inputs, outside, mask), expected)
    assert (expected > 0).all()


def test_a_mask_covering_the_whole_image_leaves_no_pixel_error():
    inputs = random_pixels()
    full = torch.ones(2, SIZE, SIZE, dtype=torch.bool)
    assert torch.equal(outside_mask_error(inputs, 1 - inputs, full), torch.zeros(2))


def test_embedding_term_responds_only_to_changes_inside_the_mask():
    """With a patch-local embedder the masked pooling makes the embedding blind outside the mask.

    (A ViT's patch tokens also see their context, so there the embedding of the region moves a little with
    changes elsewhere; the masking and pooling tested here are the same code.)
    """
    embedder = MeanColourEmbedder(grid=16)
    inputs, mask = random_pixels(), grid_mask()
    style = torch.zeros(2, 3, SIZE, SIZE)
    style[:, 0] = 0.9  # a red material
    style_embedding = embedder.embed(style, torch.ones_like(mask))
    base = embedding_distance(embedder.embed(inputs, mask), style_embedding)

    outside = inputs.clone()
    outside[:, :, :8] = 0.0
    torch.testing.assert_close(embedding_distance(embedder.embed(outside, mask), style_embedding), base)

    inside = inputs.clone()
    inside[:, :, 16:48, 16:48] = style[:, :, 16:48, 16:48]
    moved = embedding_distance(embedder.embed(inside, mask), style_embedding)
    assert (moved < base - 0.1).all()
    torch.testing.assert_close(moved, torch.zeros(2), atol=1e-5, rtol=0)


def test_semantic_score_is_distance_plus_lambda_times_pixel_error():
    edit_embedding, style_embedding = torch.randn(2, 5), torch.randn(2, 5)
    inputs, edits, mask = random_pixels(seed=1), random_pixels(seed=2), grid_mask()
    expected = embedding_distance(edit_embedding, style_embedding) + 0.5 * outside_mask_error(
        inputs, edits, mask
    )
    torch.testing.assert_close(semantic_score(edit_embedding, style_embedding, inputs, edits, mask), expected)
    doubled = semantic_score(edit_embedding, style_embedding, inputs, edits, mask, pixel_weight=1.0)
    assert (doubled > expected).all()


def test_embedding_distance_is_zero_for_equal_and_one_for_empty_regions():
    vectors = torch.randn(3, 8)
    torch.testing.assert_close(embedding_distance(vectors, 2 * vectors), torch.zeros(3), atol=1e-6, rtol=0)
    torch.testing.assert_close(embedding_distance(vectors, -vectors), torch.full((3,), 2.0))
    torch.testing.assert_close(embedding_distance(torch.zeros(3, 8), vectors), torch.ones(3))


def test_masked_mean_over_grid_aligned_masks_is_the_mean_over_masked_patches():
    features = torch.randn(2, 4, 16, 16)
    weights = patch_weights(grid_mask(), (16, 16))
    assert set(weights.unique().tolist()) == {0.0, 1.0}
    expected = features[:, :, 4:12, 4:12].mean(dim=(2, 3))
    torch.testing.assert_close(masked_mean(features, weights), expected)
    empty = patch_weights(torch.zeros(2, SIZE, SIZE, dtype=torch.bool), (16, 16))
    assert torch.equal(masked_mean(features, empty), torch.zeros(2, 4))


def test_advantages_have_zero_mean_and_unit_variance():
    scores = torch.randn(64, generator=torch.Generator().manual_seed(0)) * 3 + 5
    advantages = normalized_advantages(scores)
    torch.testing.assert_close(advantages.mean(), torch.tensor(0.0), atol=1e-6, rtol=0)
    torch.testing.assert_close(advantages.var(unbiased=False), torch.tensor(1.0), atol=1e-5, rtol=0)
    assert torch.equal(advantages.argsort(), scores.argsort())


def test_a_batch_of_one_or_of_equal_scores_has_zero_advantage():
    assert torch.equal(normalized_advantages(torch.tensor([3.7])), torch.zeros(1))
    assert torch.equal(normalized_advantages(torch.full((5,), 0.3)), torch.zeros(5))


def test_advantage_statistics_come_from_valid_rows_only():
    scores = torch.tensor([1.0, 2.0, 3.0, 100.0])
    valid = torch.tensor([True, True, True, False])
    advantages = normalized_advantages(scores, valid=valid)
    torch.testing.assert_close(advantages[:3], normalized_advantages(scores[:3]))
    assert advantages[3] == 0


def test_ranking_prefers_the_lower_total():
    structure = torch.tensor([0.1, 0.9, 0.5, 0.5])
    semantic = torch.tensor([0.2, 0.1, 0.8, 0.1])
    totals = total_advantage(normalized_advantages(structure), normalized_advantages(semantic), alpha=1.0)
    total_a, total_b = totals[:2], totals[2:]
    preferred = rank_pairs(total_a, total_b)
    assert preferred.tolist() == (total_a < total_b).tolist()
    assert preferred.tolist() == [True, False]
    assert rank_pairs(torch.tensor([1.0, 2.0]), torch.tensor([2.0, 1.0])).tolist() == [True, False]
    assert rank_pairs(torch.tensor([1.0]), torch.tensor([1.0])).tolist() == [False]  # ties go to b


def test_alpha_weights_the_semantic_advantage():
    a_struct, a_sem = torch.tensor([1.0, -1.0]), torch.tensor([-1.0, 1.0])
    torch.testing.assert_close(total_advantage(a_struct, a_sem, alpha=0.0), a_struct)
    torch.testing.assert_close(total_advantage(a_struct, a_sem, alpha=2.0), torch.tensor([-1.0, 1.0]))


@pytest.mark.parametrize(
    ("instruction", "thing", "material"),
    [
        ("make the cupboard out of wood", "cupboard", "wood"),
        ("Turn the kitchen cabinet into marble.", "kitchen cabinet", "marble"),
        ("make the cabinet look like brushed metal", "cabinet", "brushed metal"),
        ("paint cabinet with oak", "cabinet", "oak"),
    ],
)
def test_prompts_come_from_the_instruction(instruction, thing, material):
    assert object_word(instruction) == thing
    assert material_word(instruction) == material


def test_an_instruction_without_a_material_says_how_to_write_it():
    with pytest.raises(ValueError, match="object_prompt"):
        material_word("make the cupboard")


def test_image_and_mask_formats_are_checked():
    assert as_unit_pixels(np.zeros((2, 8, 8, 3), np.uint8)).shape == (2, 3, 8, 8)
    assert as_unit_pixels(np.full((8, 8, 3), 255, np.uint8)).max() == 1.0
    with pytest.raises(FeedbackInputError, match="channels-last"):
        as_unit_pixels(np.zeros((2, 3, 8, 8), np.uint8))
    with pytest.raises(FeedbackInputError, match=r"\(x \+ 1\) / 2"):
        as_unit_pixels(torch.full((1, 3, 8, 8), -1.0))
    with pytest.raises(FeedbackInputError, match="channels-first"):
        as_unit_pixels(torch.zeros(1, 8, 8, 3))
    pixels = torch.zeros(2, 3, 8, 8)
    with pytest.raises(FeedbackInputError, match=r"\(2, 8, 8\)"):
        as_bool_masks(torch.zeros(2, 8, 9, dtype=torch.bool), pixels)
    with pytest.raises(FeedbackInputError, match="bool"):
        as_bool_masks(torch.zeros(2, 8, 8), pixels)
    assert as_bool_masks(np.ones((2, 8, 8), np.uint8), pixels).dtype == torch.bool


def analytic_triples():
    """Inputs with a grey 'cabinet' square on noise, a red style, and two edits: a good and a bad one."""
    generator = torch.Generator().manual_seed(3)
    inputs = torch.rand(4, 3, SIZE, SIZE, generator=generator) * 0.2
    inputs[:, :, 16:48, 16:48] = 0.5
    mask = grid_mask(4)
    style = torch.zeros(1, 3, 40, 56)
    style[:, 0] = 0.9
    good = inputs.clone()
    good[:, :, 16:48, 16:48] = torch.tensor([0.9, 0.0, 0.0])[
        :, None, None
    ]  # repainted red, nothing else moved
    bad = inputs.clone()
    bad[:, :, :16] = torch.rand(
        4, 3, 16, SIZE, generator=generator
    )  # background scrambled, cabinet untouched
    return inputs, good, bad, style, mask


def test_analytic_judges_plug_into_feedback_and_rank_the_better_edit_first():
    feedback = Feedback.analytic(FeedbackConfig(style_mask="full"))
    inputs, good, bad, style, mask = analytic_triples()
    unchanged = feedback.score(inputs, inputs, style, input_masks=mask)
    assert torch.equal(unchanged.structure, torch.zeros(4))
    assert torch.equal(unchanged.pixel_error, torch.zeros(4))
    good_scores = feedback.score(inputs, good, style, input_masks=mask)
    bad_scores = feedback.score(inputs, bad, style, input_masks=mask)
    assert (good_scores.semantic < bad_scores.semantic).all()
    assert (good_scores.pixel_error == 0).all() and (bad_scores.pixel_error > 0).all()
    preference = feedback.rank(good_scores, bad_scores)
    assert preference.a_preferred.all() and preference.valid.all()
    assert not feedback.rank(bad_scores, good_scores).a_preferred.any()


def test_gradient_depth_sees_moved_edges():
    depth = GradientDepth()
    inputs, _, bad, _, _ = analytic_triples()
    flat = torch.full((1, 3, SIZE, SIZE), 0.5)
    assert torch.equal(depth(flat), torch.zeros(1, SIZE, SIZE))
    assert (structure_score(depth(inputs), depth(bad)) > 0).all()
