"""Configs of the judges' architectures, for building them with random weights offline.

"full" is the architecture of each judge's default hub model (for benchmarks); "tiny" is a few-kilobyte
version of the same architecture for tests. The full-size numbers are those of the public checkpoints'
config files, written out because configs cannot be downloaded here.
"""

from __future__ import annotations

from typing import Literal

from transformers import (
    BertConfig,
    BertTokenizer,
    CLIPVisionConfig,
    DepthAnythingConfig,
    Dinov2Config,
    GroundingDinoConfig,
    Sam2Config,
    Sam2HieraDetConfig,
    Sam2MaskDecoderConfig,
    Sam2PromptEncoderConfig,
    Sam2VisionConfig,
    SwinConfig,
)

Size = Literal["full", "tiny"]
DepthSize = Literal["large", "small", "tiny"]


def depth_anything_v2_config(size: DepthSize = "large") -> DepthAnythingConfig:
    """Depth Anything V2 (relative depth): Large = ViT-L/14 backbone, Small = ViT-S/14."""
    if size == "large":
        backbone = Dinov2Config(
            image_size=518,
            patch_size=14,
            hidden_size=1024,
            num_hidden_layers=24,
            num_attention_heads=16,
            out_indices=[5, 12, 18, 24],
            apply_layernorm=True,
            reshape_hidden_states=False,
        )
        return DepthAnythingConfig(
            backbone_config=backbone,
            reassemble_hidden_size=1024,
            neck_hidden_sizes=[256, 512, 1024, 1024],
            fusion_hidden_size=256,
            head_hidden_size=32,
            patch_size=14,
        )
    if size == "small":
        backbone = Dinov2Config(
            image_size=518,
            patch_size=14,
            hidden_size=384,
            num_hidden_layers=12,
            num_attention_heads=6,
            out_indices=[3, 6, 9, 12],
            apply_layernorm=True,
            reshape_hidden_states=False,
        )
        return DepthAnythingConfig(
            backbone_config=backbone,
            reassemble_hidden_size=384,
            neck_hidden_sizes=[48, 96, 192, 384],
            fusion_hidden_size=64,
            head_hidden_size=32,
            patch_size=14,
        )
    # A wider init than the checkpoints' 0.02 keeps the tiny net's depth O(1), not ~1e-9, after its ReLUs.
    backbone = Dinov2Config(
        image_size=28,
        patch_size=14,
        hidden_size=16,
        num_hidden_layers=4,
        num_attention_heads=2,
        out_indices=[1, 2, 3, 4],
        apply_layernorm=True,
        reshape_hidden_states=False,
        initializer_range=0.2,
    )
    return DepthAnythingConfig(
        backbone_config=backbone,
        reassemble_hidden_size=16,
        neck_hidden_sizes=[8, 8, 16, 16],
        fusion_hidden_size=8,
        head_hidden_size=8,
        patch_size=14,
        initializer_range=0.2,
    )


def grounding_dino_config(size: Size = "full") -> GroundingDinoConfig:
    """Full = IDEA-Research/grounding-dino-tiny (Swin-T image backbone, BERT-base text encoder)."""
    if size == "full":
        swin_t = SwinConfig(
            embed_dim=96, depths=[2, 2, 6, 2], num_heads=[3, 6, 12, 24], window_size=7, out_indices=[2, 3, 4]
        )
        return GroundingDinoConfig(backbone_config=swin_t, text_config=BertConfig())
    backbone = SwinConfig(
        embed_dim=8,
        depths=[1, 1, 1, 1],
        num_heads=[1, 1, 2, 2],
        window_size=4,
        image_size=64,
        out_indices=[2, 3, 4],
    )
    text = BertConfig(
        vocab_size=len(TINY_VOCAB),
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=256,
    )
    # d_model: GroupNorm(32) needs a multiple of 32. Two decoder layers: the box heads are tied across layers.
    return GroundingDinoConfig(
        backbone_config=backbone,
        text_config=text,
        d_model=32,
        encoder_layers=1,
        decoder_layers=2,
        encoder_ffn_dim=32,
        decoder_ffn_dim=32,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        num_queries=12,
    )


def sam2_config(size: Size = "full") -> Sam2Config:
    """Full = facebook/sam2.1-hiera-large (Hiera-L image encoder, 1024x1024 input)."""
    if size == "full":
        hiera = Sam2HieraDetConfig(
            hidden_size=144,
            num_attention_heads=2,
            blocks_per_stage=[2, 6, 36, 4],
            embed_dim_per_stage=[144, 288, 576, 1152],
            num_attention_heads_per_stage=[2, 4, 8, 16],
            window_size_per_stage=[8, 4, 16, 8],
            global_attention_blocks=[23, 33, 43],
            window_positional_embedding_background_size=[7, 7],
        )
        return Sam2Config(
            vision_config=Sam2VisionConfig(
                backbone_config=hiera, backbone_channel_list=[1152, 576, 288, 144]
            ),
            prompt_encoder_config=Sam2PromptEncoderConfig(),
            mask_decoder_config=Sam2MaskDecoderConfig(),
        )
    # A global-attention block must not open a stage (it would have no window to pool), hence block 4 of 6.
    hiera = Sam2HieraDetConfig(
        hidden_size=8,
        num_attention_heads=1,
        blocks_per_stage=[1, 2, 2, 1],
        embed_dim_per_stage=[8, 16, 32, 64],
        num_attention_heads_per_stage=[1, 1, 2, 2],
        window_size_per_stage=[4, 4, 4, 4],
        global_attention_blocks=[4],
        image_size=[64, 64],
        window_positional_embedding_background_size=[2, 2],
    )
    return Sam2Config(
        vision_config=Sam2VisionConfig(
            backbone_config=hiera,
            backbone_channel_list=[64, 32, 16, 8],
            backbone_feature_sizes=[[16, 16], [8, 8], [4, 4]],
            fpn_hidden_size=16,
        ),
        prompt_encoder_config=Sam2PromptEncoderConfig(hidden_size=16, image_size=64, patch_size=16),
        mask_decoder_config=Sam2MaskDecoderConfig(
            hidden_size=16, mlp_dim=32, num_attention_heads=2, iou_head_hidden_dim=16
        ),
    )


def dinov2_config(size: Size = "full") -> Dinov2Config:
    """Full = facebook/dinov2-base (ViT-B/14)."""
    if size == "full":
        return Dinov2Config(
            image_size=518, patch_size=14, hidden_size=768, num_hidden_layers=12, num_attention_heads=12
        )
    return Dinov2Config(
        image_size=56, patch_size=14, hidden_size=16, num_hidden_layers=2, num_attention_heads=2
    )


def clip_vision_config(size: Size = "full") -> CLIPVisionConfig:
    """Full = the image tower of openai/clip-vit-base-patch16 (ViT-B/16 at 224x224)."""
    if size == "full":
        return CLIPVisionConfig(
            hidden_size=768,
            intermediate_size=3072,
            num_hidden_layers=12,
            num_attention_heads=12,
            patch_size=16,
            image_size=224,
            projection_dim=512,
        )
    return CLIPVisionConfig(
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        patch_size=16,
        image_size=64,
        projection_dim=8,
    )


# DreamSim's patch model is DINOv2 ViT-B/14 at 224x224 (a 16x16 patch grid); tiny keeps the grid.
DREAMSIM_VIT_SIZES: dict[str, dict[str, int]] = {
    "full": {"embed_dim": 768, "depth": 12, "num_heads": 12, "patch_size": 14},
    "tiny": {"embed_dim": 16, "depth": 2, "num_heads": 2, "patch_size": 14},
}

# Enough WordPiece vocabulary for the prompts the tests and benchmarks use.
TINY_VOCAB = [
    "[PAD]",
    "[UNK]",
    "[CLS]",
    "[SEP]",
    "[MASK]",
    ".",
    "cupboard",
    "cabinet",
    "drawer",
    "wood",
    "marble",
    "metal",
    "the",
    "a",
    "of",
    "##s",
]


def word_piece_tokenizer() -> BertTokenizer:
    """A BERT tokenizer over `TINY_VOCAB`: bert-base-uncased's stand-in where no vocabulary can be fetched."""
    return BertTokenizer(vocab={token: index for index, token in enumerate(TINY_VOCAB)})
