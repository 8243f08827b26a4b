"""Widening an InstructPix2Pix UNet's conv_in so that it takes a third latent (the style channels)."""

from __future__ import annotations

import torch
from diffusers import UNet2DConditionModel
from torch import nn

SD_LATENT_CHANNELS = 4


class Float32ConvIn(nn.Module):
    """The UNet's first convolution kept in float32 while the rest of the UNet may run in half precision.

    The widened input weights are trained; fp16 would lose the small updates they receive.
    """

    def __init__(self, conv: nn.Conv2d):
        super().__init__()
        self.conv = conv.float()

    @property
    def in_channels(self) -> int:
        return self.conv.in_channels

    def forward(self, sample: torch.Tensor) -> torch.Tensor:
        return self.conv(sample.to(self.conv.weight.dtype)).to(sample.dtype)


def widen_conv_in(unet: UNet2DConditionModel, latent_channels: int = SD_LATENT_CHANNELS) -> UNet2DConditionModel:
    """Adds `latent_channels` zero-initialised input channels (the style channels) to `unet.conv_in`, in place.

    An InstructPix2Pix UNet takes [noisy latent, input-image latent]: 2 x latent_channels (8 for SD's VAE). With
    zero weights on the new channels the widened UNet computes exactly what it did before, whatever they hold.
    """
    old = unet.conv_in.conv if isinstance(unet.conv_in, Float32ConvIn) else unet.conv_in
    if old.in_channels != 2 * latent_channels:
        raise ValueError(
            f"expected an InstructPix2Pix UNet with {2 * latent_channels} input channels (noisy and input-image "
            f"latents of {latent_channels} channels each), got {old.in_channels}; pass the InstructPix2Pix base "
            "(e.g. 'timbrooks/instruct-pix2pix') with its own VAE"
        )
    new = nn.Conv2d(
        old.in_channels + latent_channels,
        old.out_channels,
        kernel_size=old.kernel_size,
        stride=old.stride,
        padding=old.padding,
        device=old.weight.device,
        dtype=torch.float32,
    )
    with torch.no_grad():
        new.weight.zero_()
        new.weight[:, : old.in_channels] = old.weight.float()
        new.bias.copy_(old.bias.float())
    unet.conv_in = Float32ConvIn(new)
    # Marked as float32 so that diffusers' `unet.dtype` reports the dtype the rest of the UNet computes in.
    unet._keep_in_fp32_modules = ["conv_in"]
    unet.register_to_config(in_channels=old.in_channels + latent_channels)
    return unet
