"""`Feedback` end to end on tiny random networks: batching, masks given or found, and the edge cases."""

import numpy as np
import pytest
import torch

from sim2real_edit.feedback import (
    DepthEstimator,
    Dinov2Embedder,
    Feedback,
    FeedbackConfig,
    FeedbackInputError,
    GroundedSAM2,
    JudgeWeightsNotFoundError,
    normalized_advantages,
)

SIZE = 64
INSTRUCTION = "make the cupboard out of wood"


def images(count: int, seed: int, size: tuple[int, int] = (SIZE, SIZE)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (count, *size, 3), dtype=np.uint8)


def detector_prompts(feedback: Feedback) -> list[int]:
    """Number of images each detector call sees."""
    rows: list[int] = []
    feedback.segmenter.detector.register_forward_hook(
        lambda module, args, kwargs, output: rows.append(kwargs["pixel_values"].shape[0]), with_kwargs=True
    )
    return rows


@pytest.fixture(scope="module")
def feedback() -> Feedback:
    return Feedback.tiny(seed=0, config=FeedbackConfig(box_threshold=0.0, text_threshold=0.0))


def test_scores_a_batch_of_triples(feedback):
    inputs, edits, styles = images(4, 0), images(4, 1), images(4, 2, size=(40, 56))
    scores = feedback.score(inputs, edits, styles, INSTRUCTION)
    assert len(scores) == 4
    for name in ("structure", "semantic", "embedding_distance", "pixel_error"):
        value = getattr(scores, name)
        assert value.shape == (4,) and value.dtype == torch.float32 and torch.isfinite(value).all()
    assert scores.input_masks.shape == (4, SIZE, SIZE) and scores.valid.all()
    torch.testing.assert_close(scores.semantic, scores.embedding_distance + 0.5 * scores.pixel_error)
    assert (scores.structure > 0).all()


def test_an_unchanged_edit_has_no_structure_or_pixel_error(feedback):
    inputs = images(2, 3)
    scores = feedback.score(inputs, inputs.copy(), images(1, 4), INSTRUCTION)
    assert torch.equal(scores.structure, torch.zeros(2))
    assert torch.equal(scores.pixel_error, torch.zeros(2))


def test_uint8_and_float_images_score_alike(feedback):
    inputs, edits, styles = images(2, 5), images(2, 6), images(1, 7)
    as_float = [torch.from_numpy(x).permute(0, 3, 1, 2).float() / 255 for x in (inputs, edits, styles)]
    a = feedback.score(inputs, edits, styles, INSTRUCTION)
    b = feedback.score(*as_float, INSTRUCTION)
    torch.testing.assert_close(a.structure, b.structure)
    torch.testing.assert_close(a.semantic, b.semantic)


def test_one_style_image_serves_the_whole_batch(feedback):
    inputs, edits, style = images(3, 8), images(3, 9), images(1, 10)
    shared = feedback.score(inputs, edits, style, INSTRUCTION)
    repeated = feedback.score(inputs, edits, np.repeat(style, 3, axis=0), INSTRUCTION)
    torch.testing.assert_close(shared.semantic, repeated.semantic)


def test_given_input_masks_replace_the_segmenter():
    feedback = Feedback.tiny(seed=1, config=FeedbackConfig(style_mask="full"))
    rows = detector_prompts(feedback)
    masks = torch.zeros(2, SIZE, SIZE, dtype=torch.bool)
    masks[:, 10:50, 20:60] = True
    scores = feedback.score(images(2, 11), images(2, 12), images(1, 13), input_masks=masks)
    assert rows == []  # no instruction needed, no detector call
    assert torch.equal(scores.input_masks, masks) and scores.valid.all()


def test_without_a_segmenter_masks_must_be_given():
    feedback = Feedback.tiny(seed=1, config=FeedbackConfig(use_segmenter=False))
    assert feedback.segmenter is None
    masks = torch.ones(2, SIZE, SIZE, dtype=torch.bool)
    with pytest.raises(ValueError, match="pass `input_masks`"):
        feedback.score(images(2, 11), images(2, 12), images(1, 13), INSTRUCTION)
    with pytest.raises(ValueError, match="style_mask='full'"):
        feedback.score(images(2, 11), images(2, 12), images(1, 13), INSTRUCTION, input_masks=masks)
    style_masks = torch.ones(1, SIZE, SIZE, dtype=torch.bool)
    scores = feedback.score(
        images(2, 11), images(2, 12), images(1, 13), input_masks=masks, style_masks=style_masks
    )
    assert scores.valid.all()


def test_style_masks_come_from_the_material_prompt_or_the_full_frame():
    found_everything = FeedbackConfig(box_threshold=0.0, text_threshold=0.0)
    feedback = Feedback.tiny(seed=2, config=found_everything)
    rows = detector_prompts(feedback)
    masks = torch.ones(2, SIZE, SIZE, dtype=torch.bool)
    feedback.score(images(2, 14), images(2, 15), images(2, 16), INSTRUCTION, input_masks=masks)
    assert rows == [2]  # the two style images, prompted with "wood"
    assert any(key.startswith("wood.|") for key in feedback.segmenter.cache._entries)

    full = Feedback(feedback.depth, feedback.embedder, feedback.segmenter, FeedbackConfig(style_mask="full"))
    full.score(images(2, 14), images(2, 15), images(2, 17), input_masks=masks)
    assert rows == [2]


def test_inputs_are_segmented_once_however_often_they_are_edited(feedback):
    rows = detector_prompts(feedback)
    inputs = np.repeat(images(2, 18), 2, axis=0)  # a batch of pairs: every input twice
    style = images(1, 19)
    feedback.score(inputs, images(4, 20), style, INSTRUCTION)
    feedback.score(inputs, images(4, 21), style, INSTRUCTION)
    assert rows == [2, 1]  # two distinct inputs, then the style image; the second batch is all cache hits


def test_objects_not_found_are_flagged_not_replaced():
    feedback = Feedback.tiny(seed=0, config=FeedbackConfig(box_threshold=1.0))
    scores = feedback.score(images(2, 22), images(2, 23), images(1, 24), INSTRUCTION)
    assert not scores.input_mask_found.any() and not scores.valid.any()
    assert not scores.input_masks.any()
    torch.testing.assert_close(scores.embedding_distance, torch.ones(2))  # an empty region: no evidence
    assert not feedback.rank(scores, scores).valid.any()


def test_an_empty_given_mask_counts_as_not_found(feedback):
    masks = torch.zeros(2, SIZE, SIZE, dtype=torch.bool)
    masks[0, :8, :8] = True
    scores = feedback.score(images(2, 25), images(2, 26), images(1, 27), INSTRUCTION, input_masks=masks)
    assert scores.input_mask_found.tolist() == [True, False]


def test_ranking_normalises_over_both_samples_of_every_pair(feedback):
    inputs, style = images(3, 28), images(1, 29)
    close = inputs.copy()
    close[:, :2] = 0  # barely edited
    far = images(3, 30)  # a different picture altogether
    masks = torch.zeros(3, SIZE, SIZE, dtype=torch.bool)
    masks[:, 16:48, 16:48] = True
    a = feedback.score(inputs, close, style, INSTRUCTION, input_masks=masks)
    b = feedback.score(inputs, far, style, INSTRUCTION, input_masks=masks)
    preference = feedback.rank(a, b)
    totals = torch.cat([preference.total_a, preference.total_b])
    expected = normalized_advantages(torch.cat([a.structure, b.structure])) + normalized_advantages(
        torch.cat([a.semantic, b.semantic])
    )
    torch.testing.assert_close(totals, expected)
    torch.testing.assert_close(totals.mean(), torch.tensor(0.0), atol=1e-5, rtol=0)
    assert torch.equal(preference.a_preferred, preference.total_a < preference.total_b)
    assert (a.structure < b.structure).all() and (a.pixel_error < b.pixel_error).all()


def test_a_batch_of_one_scores_and_ranks_as_a_tie(feedback):
    scores = feedback.score(images(1, 31), images(1, 32), images(1, 33), INSTRUCTION)
    assert len(scores) == 1
    alone = feedback.rank(scores, scores)
    assert alone.total_a.tolist() == alone.total_b.tolist() == [0.0]
    assert alone.a_preferred.tolist() == [False]


def test_mismatched_images_and_masks_are_refused_with_the_fix(feedback):
    inputs, style = images(2, 34), images(1, 35)
    with pytest.raises(FeedbackInputError, match="same shape"):
        feedback.score(inputs, images(2, 36, size=(SIZE, SIZE + 8)), style, INSTRUCTION)
    with pytest.raises(FeedbackInputError, match="same shape"):
        feedback.score(inputs, images(3, 36), style, INSTRUCTION)
    with pytest.raises(FeedbackInputError, match="one style image per input"):
        feedback.score(inputs, images(2, 37), images(3, 38), INSTRUCTION)
    with pytest.raises(FeedbackInputError, match="input_masks"):
        feedback.score(
            inputs, images(2, 37), style, INSTRUCTION, input_masks=torch.ones(2, 32, 32, dtype=torch.bool)
        )
    with pytest.raises(ValueError, match="instruction"):
        feedback.score(inputs, images(2, 37), style)


def test_config_is_checked():
    with pytest.raises(ValueError, match="embedder"):
        FeedbackConfig(embedder="vgg")
    with pytest.raises(ValueError, match="style_mask"):
        FeedbackConfig(style_mask="half")
    with pytest.raises(ValueError, match="box_threshold"):
        FeedbackConfig(box_threshold=1.5)


def test_from_config_loads_every_judge_from_local_folders(tmp_path):
    depth = DepthEstimator.tiny(seed=4)
    depth.model.save_pretrained(tmp_path / "depth")
    segmenter = GroundedSAM2.tiny(seed=4)
    segmenter.detector.save_pretrained(tmp_path / "detector")
    segmenter.tokenizer.save_pretrained(tmp_path / "detector")
    segmenter.segmenter.save_pretrained(tmp_path / "segmenter")
    Dinov2Embedder.tiny(seed=4).model.save_pretrained(tmp_path / "dinov2")
    config = FeedbackConfig(
        depth_model=str(tmp_path / "depth"),
        detector_model=str(tmp_path / "detector"),
        segmenter_model=str(tmp_path / "segmenter"),
        embedder="dinov2",
        embedder_model=str(tmp_path / "dinov2"),
        box_threshold=0.0,
        text_threshold=0.0,
    )
    feedback = Feedback.from_config(config, device="cpu")
    scores = feedback.score(images(2, 39), images(2, 40), images(1, 41), INSTRUCTION)
    assert torch.isfinite(scores.semantic).all() and scores.valid.all()
    assert isinstance(feedback.embedder, Dinov2Embedder)


def test_from_config_offline_names_the_missing_model():
    with pytest.raises(JudgeWeightsNotFoundError, match="Depth-Anything-V2-Large-hf"):
        Feedback.from_config(device="cpu")
