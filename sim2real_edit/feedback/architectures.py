"""Configs of the judges' architectures, for building them with random weights offline.

"full" is the architecture of each judge's default hub model (for benchmarks); "tiny" is a few-kilobyte
version of the same architecture for tests. The full-size numbers are those of the public checkpoints'
config files, written out because configs cannot be downloaded here. Each function imports transformers
itself, so that importing the judges does not.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from transformers import (
        BertTokenizer,
        CLIPVisionConfig,
        DepthAnythingConfig,
        Dinov2Config,
        GroundingDinoConfig,
        Sam2Config,
    )

Size = Literal["full", "tiny"]
DepthSize = Literal["large", "small", "tiny"]


def depth_anything_v2_config(size: DepthSize = "large") -> DepthAnythingConfig:
    """Depth Anything V2 (relative depth): Large = ViT-L/14 backbone, Small = ViT-S/14."""
    if size == "large":
        return _depth_anything_v2(
            width=1024,
            layers=24,
            heads=16,
            out_indices=[5, 12, 18, 24],
            neck=[256, 512, 1024, 1024],
            fusion=256,
        )
    if size == "small":
        return _depth_anything_v2(
            width=384, layers=12, heads=6, out_indices=[3, 6, 9, 12], neck=[48, 96, 192, 384], fusion=64
        )
    # A wider init than the checkpoints' 0.02 keeps the tiny net's depth O(1), not ~1e-9, after its ReLUs.
    return _depth_anything_v2(
        width=16,
        layers=4,
        heads=2,
        out_indices=[1, 2, 3, 4],
        neck=[8, 8, 16, 16],
        fusion=8,
        image_size=28,
        head=8,
        initializer_range=0.2,
    )


def _depth_anything_v2(
    width: int,
    layers: int,
    heads: int,
    out_indices: list[int],
    neck: list[int],
    fusion: int,
    image_size: int = 518,
    head: int = 32,
    **initialization: float,
) -> DepthAnythingConfig:
    """A DINOv2 ViT/14 backbone of `width`, `layers` and `heads` under a DPT head reading `out_indices`."""
    from transformers import DepthAnythingConfig, Dinov2Config

    backbone = Dinov2Config(
        image_size=image_size,
        patch_size=14,
        hidden_size=width,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        out_indices=out_indices,
        apply_layernorm=True,
        reshape_hidden_states=False,
        **initialization,
    )
    return DepthAnythingConfig(
        backbone_config=backbone,
        reassemble_hidden_size=width,
        neck_hidden_sizes=neck,
        fusion_hidden_size=fusion,
        head_hidden_size=head,
        patch_size=14,
        **initialization,
    )


def grounding_dino_config(size: Size = "full") -> GroundingDinoConfig:
    """Full = IDEA-Research/grounding-dino-tiny (Swin-T image backbone, BERT-base text encoder)."""
    from transformers import BertConfig, GroundingDinoConfig, SwinConfig

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
    from transformers import (
        Sam2Config,
        Sam2HieraDetConfig,
        Sam2MaskDecoderConfig,
        Sam2PromptEncoderConfig,
        Sam2VisionConfig,
    )

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
    from transformers import Dinov2Config

    if size == "full":
        return Dinov2Config(
            image_size=518, patch_size=14, hidden_size=768, num_hidden_layers=12, num_attention_heads=12
        )
    return Dinov2Config(
        image_size=56, patch_size=14, hidden_size=16, num_hidden_layers=2, num_attention_heads=2
    )


def clip_vision_config(size: Size = "full") -> CLIPVisionConfig:
    """Full = the image tower of openai/clip-vit-base-patch16 (ViT-B/16 at 224x224)."""
    from transformers import CLIPVisionConfig

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
    from transformers import BertTokenizer

    return BertTokenizer(vocab={token: index for index, token in enumerate(TINY_VOCAB)})
