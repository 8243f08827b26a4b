"""Model-free judges with the same interfaces as the networks, for fast end-to-end training tests.

`GradientDepth` stands in for depth with the image's edge strength (structure is kept when edges stay where
they were); `MeanColourEmbedder` stands in for DreamSim with the masked mean colour (style is matched when
the edited region takes the style image's colour).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .embeddings import PatchEmbedder
from .pixels import ImageInput, as_unit_pixels

_LUMA = (0.299, 0.587, 0.114)


class GradientDepth:
    """Images -> (N, H, W) Sobel gradient magnitude of the luminance, a depth-map stand-in."""

    def __init__(self, device: torch.device | str = "cpu"):
        self.device = torch.device(device)
        sobel_x = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]]) / 8
        self.kernels = torch.stack([sobel_x, sobel_x.T])[:, None].to(self.device)

    @torch.inference_mode()
    def __call__(self, images: ImageInput) -> torch.Tensor:
        pixels = as_unit_pixels(images, self.device)
        luma = torch.einsum("nchw,c->nhw", pixels, torch.tensor(_LUMA, device=self.device))[:, None]
        gradients = F.conv2d(F.pad(luma, (1, 1, 1, 1), mode="replicate"), self.kernels)
        return gradients.square().sum(dim=1).sqrt()


class MeanColourEmbedder(PatchEmbedder):
    """The masked mean colour, in [-1, 1] so that cosine distance sees brightness as well as hue, as a 3-d
    embedding through the same patch-grid pooling as the ViT judges."""

    def __init__(self, grid: int = 16, device: torch.device | str = "cpu"):
        self.grid = grid
        self._device = torch.device(device)

    @property
    def device(self) -> torch.device:
        return self._device

    def patch_features(self, pixels: torch.Tensor) -> torch.Tensor:
        return F.adaptive_avg_pool2d(pixels * 2 - 1, self.grid)
