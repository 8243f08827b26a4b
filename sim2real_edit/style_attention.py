"""StyleAttention: the pre-UNet cross-attention that turns (input image, style image, text) into 4 channels."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class StyleAttentionConfig:
    latent_channels: int = 4
    text_dim: int = 768
    inner_dim: int = 320
    num_heads: int = 8

    def to_dict(self) -> dict:
        return asdict(self)


class StyleAttention(nn.Module):
    """Cross-attention from image latents to the instruction's text embedding.

    Query: a linear map of the concatenated input-image and style-image latents at each spatial position
    (2 * latent_channels -> inner_dim). Key/value: linear maps of the CLIP text embedding
    (text_dim -> inner_dim). Output: inner_dim -> latent_channels at the latent's spatial size; it fills
    the UNet's style input channels.

    The same module, with the same inputs (the *input image's* latent, never the noisy latent), is used
    for sampling and for training, so that training log-probabilities are those of the sampler.
    """

    def __init__(self, config: StyleAttentionConfig = StyleAttentionConfig()):
        super().__init__()
        if config.inner_dim % config.num_heads:
            raise ValueError(f"inner_dim {config.inner_dim} is not divisible by num_heads {config.num_heads}")
        self.config = config
        self.to_q = nn.Linear(2 * config.latent_channels, config.inner_dim)
        self.to_k = nn.Linear(config.text_dim, config.inner_dim)
        self.to_v = nn.Linear(config.text_dim, config.inner_dim)
        self.to_out = nn.Linear(config.inner_dim, config.latent_channels)

    def forward(
        self, image_latents: torch.Tensor, style_latents: torch.Tensor, text_embeds: torch.Tensor
    ) -> torch.Tensor:
        """(B, C, H, W), (B, C, H, W), (B, L, text_dim) -> (B, C, H, W), computed in the module's dtype."""
        if image_latents.shape != style_latents.shape:
            raise ValueError(
                f"image latents {tuple(image_latents.shape)} and style latents {tuple(style_latents.shape)} "
                "differ; encode the style image at the input image's size"
            )
        batch, channels, height, width = image_latents.shape
        dtype = self.to_q.weight.dtype
        heads = self.config.num_heads
        head_dim = self.config.inner_dim // heads

        pixels = torch.cat([image_latents, style_latents], dim=1).to(dtype)
        pixels = pixels.flatten(2).transpose(1, 2)  # (B, HW, 2C)
        text = text_embeds.to(dtype)

        def split_heads(x: torch.Tensor) -> torch.Tensor:
            return x.view(batch, -1, heads, head_dim).transpose(1, 2)

        query = split_heads(self.to_q(pixels))
        key = split_heads(self.to_k(text))
        value = split_heads(self.to_v(text))
        attended = F.scaled_dot_product_attention(query, key, value)
        attended = attended.transpose(1, 2).reshape(batch, height * width, self.config.inner_dim)
        out = self.to_out(attended)  # (B, HW, C)
        return out.transpose(1, 2).reshape(batch, channels, height, width)
