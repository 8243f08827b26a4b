"""Model-free judges with the same interfaces as the networks, for fast end-to-end training tests.

`GradientDepth` stands in for depth with the image's edge strength (structure is kept when edges stay where
they were); `MeanColourEmbedder` stands in for DreamSim with the masked mean colour (style is matched when
the edited region takes the style image's colour); `ColourStatisticsEmbedder` with its mean colour and local
contrast (a material's colour and how much its texture varies: white marble is bright, grey and veined).
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


class ColourStatisticsEmbedder(MeanColourEmbedder):
    """Mean colour and local contrast (standard deviation over a small window) per patch, plus a constant.

    The constant makes cosine distance a colour distance: with it, (x, c) and (y, c) have 1 - cos close to
    |x - y|^2 / 2c^2, so brightness counts as much as hue (without it, cosine distance of centred mean colours
    sees only a colour's direction, and a brighter orange scores as well as a white).
    """

    def __init__(self, grid: int = 16, window: int = 5, contrast_scale: float = 4.0, constant: float = 1.0,
                 device: torch.device | str = "cpu"):
        super().__init__(grid, device)
        self.window = window
        self.contrast_scale = contrast_scale
        self.constant = constant

    def patch_features(self, pixels: torch.Tensor) -> torch.Tensor:
        pad = self.window // 2
        mean = F.avg_pool2d(pixels, self.window, stride=1, padding=pad, count_include_pad=False)
        square = F.avg_pool2d(pixels.square(), self.window, stride=1, padding=pad, count_include_pad=False)
        contrast = (square - mean.square()).clamp_min(0).sqrt()
        constant = torch.full_like(pixels[:, :1], self.constant)
        features = torch.cat([mean * 2 - 1, contrast * self.contrast_scale, constant], dim=1)
        return F.adaptive_avg_pool2d(features, self.grid)
