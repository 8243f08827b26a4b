"""What a judge must provide to be plugged into `Feedback`: the model judges and analytic stand-ins alike."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import torch

from .pixels import ImageInput


@dataclass
class MaskResult:
    """Object masks for a batch of images.

    masks: bool (N, H, W). found: bool (N,). Where the object was not found, `found` is False and the mask is
    all False; nothing downstream substitutes an empty or full-frame mask, the caller decides what to do.
    """

    masks: torch.Tensor
    found: torch.Tensor

    def __post_init__(self):
        if self.masks.dtype != torch.bool or self.masks.ndim != 3:
            raise ValueError(
                f"MaskResult.masks must be bool (N, H, W), got {self.masks.dtype} {tuple(self.masks.shape)}"
            )
        if self.found.shape != self.masks.shape[:1]:
            raise ValueError(
                f"MaskResult.found must have shape ({self.masks.shape[0]},), got {tuple(self.found.shape)}"
            )


@runtime_checkable
class DepthModel(Protocol):
    """Images (N, ...) -> float32 depth (N, H, W) at the images' resolution (see `pixels.as_unit_pixels`)."""

    def __call__(self, images: ImageInput) -> torch.Tensor: ...


@runtime_checkable
class Segmenter(Protocol):
    """Images (N, ...) and a text prompt -> the prompt's object mask in each image."""

    def __call__(self, images: ImageInput, prompt: str) -> MaskResult: ...


@runtime_checkable
class Embedder(Protocol):
    """Images (N, ...) and bool masks (N, H, W) -> float32 (N, D): an embedding of each masked region."""

    def embed(self, images: ImageInput, masks: torch.Tensor) -> torch.Tensor: ...


@runtime_checkable
class LightingAwareEmbedder(Protocol):
    """An embedder that judges material rather than light: it divides the simulator's shading (read from each
    edit's unedited input, `lit_by`) out of the edit, and compares embeddings with its own `distance` (N,)."""

    def embed(self, images: ImageInput, masks: torch.Tensor, lit_by: ImageInput | None = None) -> torch.Tensor: ...

    def distance(self, edit_embedding: torch.Tensor, style_embedding: torch.Tensor) -> torch.Tensor: ...
