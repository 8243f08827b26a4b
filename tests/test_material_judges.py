"""Judges of material, not lighting: the material mask of the stand-in's cabinet, the material-statistics judge
(the simulator's shading divided out before colour and texture are compared with the exemplars) and the
edge-structure figure."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from envs.standin import CABINET_ALBEDO
from envs.tiny_base import shrink_masks, stand_in_frames_with_parts
from sim2real_edit.feedback import Feedback, FeedbackConfig, FeedbackInputError, MaterialStatisticsEmbedder
from sim2real_edit.feedback.analytic import edge_structure
from sim2real_edit.textures import generate_texture

_LUMA = np.array([0.299, 0.587, 0.114])


@pytest.fixture(scope="module")
def parts():
    torch.set_num_threads(1)
    return stand_in_frames_with_parts(4, seed=11)


@pytest.fixture(scope="module")
def exemplars() -> np.ndarray:
    return np.stack([generate_texture("white_marble", (96, 96), seed=seed) for seed in range(4)])


def paint_cabinet(frames: np.ndarray, masks: np.ndarray, inside: np.ndarray) -> np.ndarray:
    edits = frames.astype(np.float64)
    edits[masks] = inside[masks]
    return np.clip(edits.round(), 0, 255).astype(np.uint8)


def sim_shading(frames: np.ndarray) -> np.ndarray:
    """The stand-in's shading factor of each cabinet pixel: its luminance over the albedo's."""
    return (frames.astype(np.float64) @ _LUMA) / (CABINET_ALBEDO @ _LUMA)


def material_judge(**overrides) -> Feedback:
    return Feedback.analytic(FeedbackConfig(judges="analytic", analytic_embedder="material_statistics",
                                            use_segmenter=False, style_mask="full", **overrides))


def test_the_material_mask_is_the_cabinet_less_its_handles_and_dark_parts(parts):
    cabinet, material = parts.cabinet_masks, parts.material_masks
    assert not (material & ~cabinet).any()
    left_out = cabinet & ~material
    assert 0.1 < left_out.sum() / cabinet.sum() < 0.6, left_out.sum() / cabinet.sum()
    luma = parts.frames.astype(np.float64) @ _LUMA
    # Kept: the albedo under the simulator's light; left out: handles and cavities, darker than any shaded face.
    assert luma[material].min() >= 0.55 * (CABINET_ALBEDO @ _LUMA)
    assert np.percentile(luma[left_out], 25) < 0.55 * (CABINET_ALBEDO @ _LUMA)


def test_shrinking_a_mask_keeps_only_pixels_whose_whole_footprint_is_inside():
    mask = np.zeros((1, 8, 8), bool)
    mask[0, 1:7, 2:8] = True
    shrunk = shrink_masks(mask, (4, 4))
    expected = np.zeros((4, 4), bool)
    expected[1:3, 1:4] = True  # 2x2 blocks fully inside rows 1..6, columns 2..7
    np.testing.assert_array_equal(shrunk[0], expected)


def test_the_exemplars_material_under_the_sims_light_beats_their_unshaded_mean_colour(parts, exemplars):
    frames, cabinet, material = parts.frames, parts.cabinet_masks, parts.material_masks
    marble = np.stack([generate_texture("white_marble", frames.shape[1:3], seed=100 + i) for i in range(len(frames))])
    shaded_marble = paint_cabinet(frames, cabinet, marble * sim_shading(frames)[..., None])
    exemplar_mean = exemplars.reshape(-1, 3).mean(axis=0)
    flat_mean = paint_cabinet(frames, cabinet, np.broadcast_to(exemplar_mean, frames.shape).astype(np.float64))
    judge = material_judge()
    shaded = judge.score(frames, shaded_marble, exemplars, input_masks=cabinet, material_masks=material)
    flat = judge.score(frames, flat_mean, exemplars, input_masks=cabinet, material_masks=material)
    untouched = judge.score(frames, frames, exemplars, input_masks=cabinet, material_masks=material)
    assert (shaded.embedding_distance < flat.embedding_distance).all(), (shaded.embedding_distance,
                                                                         flat.embedding_distance)
    assert (flat.embedding_distance < untouched.embedding_distance).all()
    # The judge this replaces prefers the flat unshaded colour: it pulls towards the wrong target.
    old = Feedback.analytic(FeedbackConfig(judges="analytic", analytic_embedder="colour_statistics", analytic_grid=64,
                                           use_segmenter=False, style_mask="full"))
    old_shaded = old.score(frames, shaded_marble, exemplars, input_masks=cabinet)
    old_flat = old.score(frames, flat_mean, exemplars, input_masks=cabinet)
    assert (old_flat.embedding_distance < old_shaded.embedding_distance).all()


def test_a_change_of_light_alone_barely_moves_the_material_score(parts, exemplars):
    frames, cabinet, material = parts.frames, parts.cabinet_masks, parts.material_masks
    marble = np.stack([generate_texture("white_marble", frames.shape[1:3], seed=200 + i) for i in range(len(frames))])
    edits = paint_cabinet(frames, cabinet, marble * sim_shading(frames)[..., None])
    judge = material_judge()
    base = judge.score(frames, edits, exemplars, input_masks=cabinet, material_masks=material).embedding_distance
    sim_gap = judge.score(frames, frames, exemplars, input_masks=cabinet,
                          material_masks=material).embedding_distance - base
    for gain in (0.85, 1.15):  # the same scene and material under a dimmer or brighter light
        dimmed = [np.clip(image.astype(np.float64) * gain, 0, 255).round().astype(np.uint8)
                  for image in (frames, edits)]
        moved = judge.score(*dimmed, exemplars, input_masks=cabinet, material_masks=material).embedding_distance
        assert ((moved - base).abs() < 0.05 * sim_gap).all(), (gain, moved, base, sim_gap)


def test_pixels_that_are_not_the_albedo_under_the_sims_light_carry_no_weight(parts, exemplars):
    """Given only the cabinet mask, the judge itself leaves out handles and cavities (their shading would be
    implausibly dark), so repainting them does not move the score."""
    frames, cabinet = parts.frames, parts.cabinet_masks
    embedder = MaterialStatisticsEmbedder()
    dark_parts = cabinet & (sim_shading(frames) < 0.45)
    assert dark_parts.sum() > 20
    repainted = frames.copy()
    repainted[dark_parts] = (250, 250, 250)
    before = embedder.embed(frames, torch.from_numpy(cabinet), lit_by=frames)
    after = embedder.embed(repainted, torch.from_numpy(cabinet), lit_by=frames)
    torch.testing.assert_close(before, after)
    assert (before[:, -1] < 1).all()  # the evidence fraction says part of the mask was left out
    # With no pixel of the material in the region there is no evidence: distance 1, as for an empty mask.
    empty = embedder.embed(frames, torch.from_numpy(dark_parts), lit_by=frames)
    style = embedder.embed(exemplars, torch.ones(exemplars.shape[:3], dtype=torch.bool))
    assert torch.equal(embedder.distance(empty, style), torch.ones(len(frames)))


def test_the_material_judge_is_checked():
    with pytest.raises(ValueError, match="analytic_embedder"):
        FeedbackConfig(judges="analytic", analytic_embedder="material", use_segmenter=False, style_mask="full")
    with pytest.raises(ValueError, match="sim_albedo"):
        FeedbackConfig(judges="analytic", analytic_embedder="material_statistics", sim_albedo=(0, 1, 2),
                       use_segmenter=False, style_mask="full")
    embedder = MaterialStatisticsEmbedder()
    images = np.zeros((2, 8, 8, 3), np.uint8)
    with pytest.raises(FeedbackInputError, match="lit_by"):
        embedder.embed(images, torch.ones(2, 8, 8, dtype=torch.bool), lit_by=images[:1])


def test_edge_structure_is_one_for_identity_and_falls_when_edges_are_blurred_or_erased(parts):
    frames, cabinet = parts.frames, parts.cabinet_masks
    assert edge_structure(frames, frames, cabinet) == pytest.approx(1.0)
    brighter = np.clip(frames.astype(np.float64) * 1.1, 0, 255).round().astype(np.uint8)
    assert edge_structure(frames, brighter, cabinet) > 0.97  # a gain keeps every edge
    blurred = {size: torch.nn.functional.avg_pool2d(torch.from_numpy(frames).permute(0, 3, 1, 2).double(), size, 1,
                                                    size // 2, count_include_pad=False).round().byte()
               .permute(0, 2, 3, 1).numpy() for size in (3, 5)}
    more_blur_less_structure = [edge_structure(frames, blurred[size], cabinet) for size in (3, 5)]
    assert 0.97 > more_blur_less_structure[0] > more_blur_less_structure[1] + 0.1, more_blur_less_structure
    # Painted flat: the outline survives, the drawer lines and handles do not.
    flat = paint_cabinet(frames, cabinet, np.full(frames.shape, 200.0))
    assert edge_structure(frames, flat, cabinet) == 0.0
    noise = np.random.default_rng(0).integers(0, 256, frames.shape, dtype=np.uint8)
    assert abs(edge_structure(frames, noise, cabinet)) < 0.2
