"""Each judge end to end on tiny random weights, and through its real loading path from a saved folder."""

import textwrap
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch
from dreamsim.config import dreamsim_args
from dreamsim.feature_extraction.vision_transformer import VisionTransformer
from dreamsim.model import PerceptualModel
from peft import LoraConfig, get_peft_model
from PIL import Image
from transformers import (
    CLIPConfig,
    CLIPModel,
    CLIPTextConfig,
    DPTImageProcessor,
    Sam2ImageProcessorFast,
    Sam2Processor,
)

from sim2real_edit.feedback import (
    DEPTH_LARGE,
    ClipEmbedder,
    DepthEstimator,
    Dinov2Embedder,
    DreamSimEmbedder,
    GroundedSAM2,
    JudgeWeightsNotFoundError,
    structure_score,
)
from sim2real_edit.feedback.architectures import clip_vision_config

SIZE = 64


def images(count: int = 3, seed: int = 0, size: tuple[int, int] = (SIZE, SIZE)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (count, *size, 3), dtype=np.uint8)


def box_mask(count: int = 3) -> torch.Tensor:
    mask = torch.zeros(count, SIZE, SIZE, dtype=torch.bool)
    mask[:, 8:40, 12:56] = True
    return mask


# Depth -----------------------------------------------------------------------------------------------------


def test_depth_is_per_pixel_at_input_size_and_zero_structure_score_for_identical_images():
    depth = DepthEstimator.tiny(seed=0)
    batch = images(3)
    maps = depth(batch)
    assert maps.shape == (3, SIZE, SIZE) and maps.dtype == torch.float32 and torch.isfinite(maps).all()
    assert torch.equal(structure_score(maps, depth(batch.copy())), torch.zeros(3))
    changed = batch.copy()
    changed[:, 20:44, 20:44] = 255 - changed[:, 20:44, 20:44]
    assert (structure_score(maps, depth(changed)) > 0).all()
    assert depth(images(2, size=(48, 80))).shape == (2, 48, 80)


@pytest.mark.parametrize(("size", "model_size"), [((48, 80), (28, 42)), ((64, 32), (56, 28))])
def test_depth_preprocessing_matches_the_checkpoints_image_processor(size, model_size):
    depth = DepthEstimator.tiny(seed=0)
    batch = images(2, size=size)
    processor = DPTImageProcessor(  # Depth Anything V2's processor settings, at the tiny model's input size
        size={"height": 28, "width": 28},
        keep_aspect_ratio=True,
        ensure_multiple_of=14,
        resample=Image.BICUBIC,
        image_mean=[0.485, 0.456, 0.406],
        image_std=[0.229, 0.224, 0.225],
        do_pad=False,
    )
    inputs = processor(images=list(batch), return_tensors="pt")
    assert tuple(inputs["pixel_values"].shape[-2:]) == depth.model_input_size(*size) == model_size
    with torch.no_grad():
        outputs = depth.model(**inputs)
    expected = torch.stack(
        [
            r["predicted_depth"]
            for r in processor.post_process_depth_estimation(outputs, target_sizes=[size] * 2)
        ]
    )
    ours = depth(batch)
    assert (ours - expected).abs().mean() < 0.03 * expected.abs().mean()


def test_depth_in_chunks_equals_depth_in_one_batch():
    depth = DepthEstimator.tiny(seed=1)
    batch = images(3)
    whole = depth(batch)
    depth.max_batch = 1
    torch.testing.assert_close(depth(batch), whole)


def test_depth_loads_from_a_saved_folder(tmp_path):
    original = DepthEstimator.tiny(seed=2)
    original.model.save_pretrained(tmp_path)
    loaded = DepthEstimator.from_pretrained(str(tmp_path), input_size=original.input_size)
    batch = images(2)
    torch.testing.assert_close(loaded(batch), original(batch))


def test_missing_depth_weights_name_the_id_and_how_to_pass_a_folder(tmp_path):
    with pytest.raises(JudgeWeightsNotFoundError, match="offline") as error:
        DepthEstimator.from_pretrained(DEPTH_LARGE)
    assert DEPTH_LARGE in str(error.value) and "from_pretrained('DIR')" in str(error.value)
    with pytest.raises(JudgeWeightsNotFoundError, match="complete model"):
        DepthEstimator.from_pretrained(str(tmp_path))


# Grounded-SAM2 ---------------------------------------------------------------------------------------------


def count_calls(module: torch.nn.Module) -> list[int]:
    """Rows seen by each forward call of `module`."""
    rows: list[int] = []
    module.register_forward_hook(
        lambda m, args, kwargs, out: rows.append(kwargs["pixel_values"].shape[0]), with_kwargs=True
    )
    return rows


def test_grounded_sam2_masks_found_objects_and_flags_missing_ones():
    batch = images(3)
    found = GroundedSAM2.tiny(seed=0, box_threshold=0.0, text_threshold=0.0)(batch, "cupboard")
    assert found.masks.shape == (3, SIZE, SIZE) and found.masks.dtype == torch.bool
    assert found.found.all() and found.masks.flatten(1).any(dim=1).all()

    nothing = GroundedSAM2.tiny(seed=0, box_threshold=1.0)(batch, "cupboard")
    assert not nothing.found.any()
    assert not nothing.masks.any()  # all-False masks, flagged; no silent substitute


def test_detections_respect_the_thresholds():
    segmenter = GroundedSAM2.tiny(seed=0, box_threshold=0.0, text_threshold=0.0)
    logits: list[torch.Tensor] = []
    segmenter.detector.register_forward_hook(lambda module, args, output: logits.append(output.logits))
    pixels = torch.from_numpy(images(2)).permute(0, 3, 1, 2) / 255
    boxes, valid = segmenter.detect(pixels, "cupboard")
    assert boxes.shape == (2, segmenter.max_boxes, 4) and valid.all()
    assert (boxes[..., 2] >= boxes[..., 0]).all() and (boxes[..., 3] >= boxes[..., 1]).all()

    best = logits[0].sigmoid().max(dim=-1).values.sort(dim=1, descending=True).values
    segmenter.box_threshold = float(best[:, 2].min() + best[:, 3].max()) / 2  # between 3rd and 4th best
    assert best[:, 2].min() > best[:, 3].max()
    _, valid = segmenter.detect(pixels, "cupboard")
    assert valid.sum(dim=1).tolist() == (best > segmenter.box_threshold).sum(dim=1).tolist()

    segmenter.box_threshold, segmenter.text_threshold = 0.0, 1.0  # no word token can pass: nothing found
    _, valid = segmenter.detect(pixels, "cupboard")
    assert not valid.any()


def test_sam2_box_prompts_match_the_checkpoints_processor():
    segmenter = GroundedSAM2.tiny(seed=0)
    batch = images(2, size=(48, 80))
    box_pixels = [[[8.0, 5.0, 60.0, 40.0]], [[0.0, 0.0, 40.0, 30.0]]]
    processor = Sam2Processor(
        image_processor=Sam2ImageProcessorFast(
            size={"height": 64, "width": 64}, mask_size={"height": 16, "width": 16}
        ),
        target_size=64,
    )
    inputs = processor(images=list(batch), input_boxes=box_pixels, return_tensors="pt")
    with torch.no_grad():
        outputs = segmenter.segmenter(
            pixel_values=inputs["pixel_values"], input_boxes=inputs["input_boxes"], multimask_output=False
        )
    expected = torch.stack(
        [m[0, 0] for m in processor.post_process_masks(outputs.pred_masks, inputs["original_sizes"])]
    )
    pixels = torch.from_numpy(batch).permute(0, 3, 1, 2) / 255
    boxes = torch.tensor(box_pixels) / torch.tensor([80.0, 48.0, 80.0, 48.0])
    with torch.no_grad():
        ours = segmenter._segment_boxes(pixels, boxes, torch.ones(2, 1, dtype=torch.bool))
    assert ours.shape == expected.shape == (2, 48, 80)
    assert (ours == expected).float().mean() > 0.97


def test_masks_are_cached_by_image_content_and_prompt():
    segmenter = GroundedSAM2.tiny(seed=0, box_threshold=0.0, text_threshold=0.0)
    rows = count_calls(segmenter.detector)
    batch = images(2)
    repeated = np.concatenate([batch, batch, batch[:1]])  # pairs share their input: 5 images, 2 distinct
    first = segmenter(repeated, "cupboard")
    assert rows == [2]
    again = segmenter(
        torch.from_numpy(repeated).permute(0, 3, 1, 2) / 255, "cupboard"
    )  # same content as floats
    assert rows == [2]
    assert torch.equal(first.masks, again.masks) and torch.equal(first.masks[0], first.masks[2])
    segmenter(batch, "drawer")
    assert rows == [2, 2]
    uncached = GroundedSAM2.tiny(seed=0, box_threshold=0.0, text_threshold=0.0, cache_size=0)
    torch.testing.assert_close(uncached(repeated, "cupboard").masks, first.masks)


def test_a_cache_smaller_than_the_batch_still_answers_every_image():
    segmenter = GroundedSAM2.tiny(seed=0, box_threshold=0.0, text_threshold=0.0, cache_size=1)
    batch = images(3)
    reference = GroundedSAM2.tiny(seed=0, box_threshold=0.0, text_threshold=0.0, cache_size=0)(
        batch, "cupboard"
    )
    assert torch.equal(segmenter(batch, "cupboard").masks, reference.masks)


def test_grounded_sam2_loads_from_saved_folders(tmp_path):
    original = GroundedSAM2.tiny(seed=3, box_threshold=0.0, text_threshold=0.0, cache_size=0)
    original.detector.save_pretrained(tmp_path / "detector")
    original.tokenizer.save_pretrained(tmp_path / "detector")
    original.segmenter.save_pretrained(tmp_path / "segmenter")
    loaded = GroundedSAM2.from_pretrained(
        str(tmp_path / "detector"),
        str(tmp_path / "segmenter"),
        box_threshold=0.0,
        text_threshold=0.0,
        detector_shortest_edge=96,
        detector_longest_edge=160,
        cache_size=0,
    )
    batch = images(2)
    assert torch.equal(loaded(batch, "cupboard").masks, original(batch, "cupboard").masks)


def test_missing_detector_weights_say_how_to_pass_folders():
    with pytest.raises(JudgeWeightsNotFoundError, match="IDEA-Research/grounding-dino-tiny") as error:
        GroundedSAM2.from_pretrained()
    assert "detector_id='DIR'" in str(error.value)


# Embeddings ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("embedder_class", [DreamSimEmbedder, Dinov2Embedder, ClipEmbedder])
def test_each_embedder_pools_its_patches_inside_the_mask(embedder_class):
    embedder = embedder_class.tiny(seed=0)
    batch, mask = images(3), box_mask(3)
    embeddings = embedder.embed(batch, mask)
    assert embeddings.ndim == 2 and embeddings.shape[0] == 3 and torch.isfinite(embeddings).all()
    assert not torch.allclose(embeddings[0], embeddings[1])

    pixels = torch.from_numpy(batch).permute(0, 3, 1, 2).float() / 255
    features = embedder.patch_features(pixels).float()
    grid = features.shape[-1]
    aligned = torch.zeros_like(mask)
    aligned[:, 16:48, 16:] = True  # whole patches on every tiny grid (4x4 and 16x16)
    expected = features[:, :, grid // 4 : grid * 3 // 4, grid // 4 :].mean(dim=(2, 3))
    torch.testing.assert_close(embedder.embed(batch, aligned), expected, atol=1e-5, rtol=1e-4)

    inside = batch.copy()
    inside[:, 8:40, 12:56] = 255 - inside[:, 8:40, 12:56]
    assert not torch.allclose(embedder.embed(inside, mask), embeddings)

    empty = torch.zeros_like(mask)
    assert torch.equal(embedder.embed(batch, empty), torch.zeros_like(embeddings))


def test_dreamsim_grid_is_sixteen_by_sixteen():
    embedder = DreamSimEmbedder.tiny()
    assert embedder.patch_features(torch.rand(1, 3, SIZE, SIZE)).shape[-2:] == (16, 16)


def test_dinov2_loads_from_a_saved_folder(tmp_path):
    original = Dinov2Embedder.tiny(seed=1)
    original.model.save_pretrained(tmp_path)
    loaded = Dinov2Embedder.from_pretrained(str(tmp_path))
    loaded.input_size, loaded.grid = original.input_size, original.grid
    torch.testing.assert_close(loaded.embed(images(2), box_mask(2)), original.embed(images(2), box_mask(2)))


def test_clip_image_tower_loads_from_a_full_clip_checkpoint(tmp_path):
    text = CLIPTextConfig(
        vocab_size=50,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        max_position_embeddings=16,
        projection_dim=8,
    )
    torch.manual_seed(0)
    CLIPModel(
        CLIPConfig(text_config=text, vision_config=clip_vision_config("tiny"), projection_dim=8)
    ).save_pretrained(tmp_path)
    loaded = ClipEmbedder.from_pretrained(str(tmp_path))
    resaved = tmp_path / "vision"
    loaded.model.save_pretrained(resaved)
    again = ClipEmbedder.from_pretrained(str(resaved))
    embeddings = loaded.embed(images(2), box_mask(2))
    assert embeddings.shape == (2, 16) and embeddings.abs().sum() > 0
    torch.testing.assert_close(again.embed(images(2), box_mask(2)), embeddings)


def write_dreamsim_cache(folder: Path) -> torch.nn.Module:
    """A DreamSim cache folder as `dreamsim(cache_dir=...)` leaves it, holding a tiny random model.

    torch.hub would download the DINOv2 code into facebookresearch_dinov2_main/; here a hubconf building a
    tiny 12-block ViT/14 (DreamSim reads block 11) stands in for that download. The LoRA adapter is saved by
    peft like DreamSim's release. Returns the LoRA-wrapped DreamSim model as the reference.
    """
    repo = folder / "facebookresearch_dinov2_main"
    repo.mkdir(parents=True)
    (folder / "checkpoints").mkdir()
    repo.joinpath("hubconf.py").write_text(
        textwrap.dedent(
            """
            import os
            from functools import partial

            import torch
            from dreamsim.feature_extraction.vision_transformer import VisionTransformer

            dependencies = ["torch"]


            def dinov2_vitb14(**kwargs):
                model = VisionTransformer(img_size=[224], patch_size=14, embed_dim=16, depth=12, num_heads=2,
                                          qkv_bias=True, norm_layer=partial(torch.nn.LayerNorm, eps=1e-6))
                folder = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
                weights = os.path.join(folder, "checkpoints", "dinov2_vitb14_pretrain.pth")
                model.load_state_dict(torch.load(weights))
                return model
            """
        )
    )
    torch.manual_seed(0)
    vit = VisionTransformer(
        img_size=[224],
        patch_size=14,
        embed_dim=16,
        depth=12,
        num_heads=2,
        qkv_bias=True,
        norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
    )
    torch.save(vit.state_dict(), folder / "checkpoints" / "dinov2_vitb14_pretrain.pth")
    (folder / "dinov2_vitb14_pretrain.pth").write_bytes(b"")  # DreamSim only checks that it exists
    hub_dir = torch.hub.get_dir()
    torch.hub.set_dir(str(folder))
    try:
        model = PerceptualModel(
            **dreamsim_args["model_config"]["dinov2_vitb14_patch"],
            device="cpu",
            load_dir=str(folder),
            normalize_embeds=True,
        )
    finally:
        torch.hub.set_dir(hub_dir)
    model = get_peft_model(
        model, LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, bias="none", target_modules=["qkv"])
    )
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0.0, 0.5)
    model.save_pretrained(folder / "dinov2_vitb14_patch_lora")
    return model.eval()


def test_dreamsim_loads_through_the_dreamsim_package_from_its_cache_folder(tmp_path):
    reference = write_dreamsim_cache(tmp_path)
    hub_dir = torch.hub.get_dir()
    embedder = DreamSimEmbedder.from_pretrained(tmp_path)
    assert torch.hub.get_dir() == hub_dir
    pixels = torch.rand(2, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(0))
    resized = torch.nn.functional.interpolate(pixels, size=(224, 224), mode="bicubic", antialias=True).clamp(
        0, 1
    )
    with torch.no_grad():
        expected = reference.embed(resized)  # DreamSim's own embedding: LoRA applied, tokens normalised
    torch.testing.assert_close(embedder.tokens(pixels), expected, atol=1e-4, rtol=1e-4)
    without_lora = DreamSimEmbedder(reference.get_base_model().extractor_list[0].model)
    with reference.disable_adapter():
        assert not torch.allclose(without_lora.tokens(pixels), expected, atol=1e-3)


def test_missing_dreamsim_weights_say_how_to_fill_the_folder(tmp_path):
    with pytest.raises(JudgeWeightsNotFoundError, match="offline") as error:
        DreamSimEmbedder.from_pretrained(tmp_path / "empty")
    assert "cache_dir='DIR'" in str(error.value) and "dinov2_vitb14_patch_lora" in str(error.value)
    assert not (tmp_path / "empty").exists()  # refused before dreamsim could start a download
