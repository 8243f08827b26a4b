"""Masked-mean patch embeddings: one vector per image for the region inside its mask.

A ViT's patch tokens form a grid; each image's mask is averaged down to that grid, so a patch counts with
the fraction of its pixels inside the mask (for masks that follow the grid this is the plain mean over the
masked patches), and the embedding is the weighted mean of the patch tokens. An empty mask gives the zero
vector, whose cosine distance to anything is 1 (see `scores.embedding_distance`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
import torch.nn.functional as F
from transformers import CLIPVisionModel, Dinov2Model, PreTrainedModel

from ..chunking import map_in_chunks
from .architectures import Size, clip_vision_config, dinov2_config
from .loading import build_random, load_pretrained, place
from .pixels import (
    CLIP_MEAN,
    CLIP_STD,
    IMAGENET_MEAN,
    IMAGENET_STD,
    ImageInput,
    as_bool_masks,
    as_unit_pixels,
    normalize,
    resize,
)

DINOV2_BASE = "facebook/dinov2-base"
CLIP_B16 = "openai/clip-vit-base-patch16"


def patch_weights(masks: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """bool (N, H, W) -> float (N, gh, gw): the fraction of each patch's pixels inside the mask."""
    return F.adaptive_avg_pool2d(masks[:, None].float(), grid)[:, 0]


def masked_mean(features: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Weighted mean of patch features (N, D, gh, gw) by weights (N, gh, gw) -> (N, D); 0 if all are 0."""
    total = weights.sum(dim=(1, 2)).clamp_min(1e-12)
    return torch.einsum("ndhw,nhw->nd", features, weights) / total[:, None]


class PatchEmbedder(ABC):
    """Common interface of the embedding judges: subclasses turn pixels into a grid of patch features."""

    max_batch: int = 32

    @property
    @abstractmethod
    def device(self) -> torch.device: ...

    @abstractmethod
    def patch_features(self, pixels: torch.Tensor) -> torch.Tensor:
        """float (N, 3, H, W) in [0, 1] on `device` -> float (N, D, gh, gw)."""

    @torch.inference_mode()
    def embed(self, images: ImageInput, masks: torch.Tensor) -> torch.Tensor:
        """Images and bool masks (N, H, W) -> float32 (N, D) masked-mean embeddings."""
        pixels = as_unit_pixels(images, self.device)
        masks = as_bool_masks(masks, pixels)
        features = map_in_chunks(self.patch_features, pixels, chunk_size=self.max_batch).float()
        return masked_mean(features, patch_weights(masks, tuple(features.shape[-2:])))


class TransformersViTEmbedder(PatchEmbedder):
    """Patch tokens of a transformers ViT's last hidden state (class token dropped)."""

    def __init__(
        self,
        model: PreTrainedModel,
        input_size: int,
        mean: tuple[float, ...],
        std: tuple[float, ...],
        max_batch: int = 32,
    ):
        self.model = model.eval().requires_grad_(False)
        self.input_size = input_size
        self.mean, self.std = mean, std
        self.max_batch = max_batch
        self.grid = input_size // model.config.patch_size

    @property
    def device(self) -> torch.device:
        return self.model.device

    @property
    def dtype(self) -> torch.dtype:
        return self.model.dtype

    def patch_features(self, pixels: torch.Tensor) -> torch.Tensor:
        model_pixels = normalize(resize(pixels, (self.input_size, self.input_size)), self.mean, self.std)
        hidden = self.model(pixel_values=model_pixels.to(self.dtype)).last_hidden_state
        patches = hidden[:, -self.grid * self.grid :]
        return patches.transpose(1, 2).reshape(hidden.shape[0], -1, self.grid, self.grid)


class Dinov2Embedder(TransformersViTEmbedder):
    """DINOv2 (transformers `Dinov2Model`) patch tokens at 224x224: a 16x16 grid like DreamSim's."""

    def __init__(self, model: Dinov2Model, input_size: int = 224, max_batch: int = 32):
        super().__init__(model, input_size, IMAGENET_MEAN, IMAGENET_STD, max_batch)

    @classmethod
    def from_pretrained(
        cls,
        model_id: str = DINOV2_BASE,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
        max_batch: int = 32,
    ) -> Dinov2Embedder:
        model = load_pretrained(
            Dinov2Model, model_id, "DINOv2 embedder", "Dinov2Embedder.from_pretrained('DIR')"
        )
        return cls(place(model, device, dtype), max_batch=max_batch)

    @classmethod
    def from_architecture(
        cls,
        size: Size = "full",
        seed: int = 0,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
        max_batch: int = 32,
    ) -> Dinov2Embedder:
        model = build_random(Dinov2Model, dinov2_config(size), seed)
        return cls(place(model, device, dtype), input_size=224 if size == "full" else 56, max_batch=max_batch)

    @classmethod
    def tiny(cls, seed: int = 0) -> Dinov2Embedder:
        return cls.from_architecture("tiny", seed=seed)


class ClipEmbedder(TransformersViTEmbedder):
    """CLIP image-tower (transformers `CLIPVisionModel`) patch tokens at the model's input size."""

    def __init__(self, model: CLIPVisionModel, max_batch: int = 32):
        super().__init__(model, model.config.image_size, CLIP_MEAN, CLIP_STD, max_batch)

    @classmethod
    def from_pretrained(
        cls,
        model_id: str = CLIP_B16,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
        max_batch: int = 32,
    ) -> ClipEmbedder:
        """Loads the image tower of a CLIP checkpoint (CLIPModel or CLIPVisionModel) by hub id or folder."""
        model = load_pretrained(
            CLIPVisionModel, model_id, "CLIP embedder", "ClipEmbedder.from_pretrained('DIR')"
        )
        return cls(place(model, device, dtype), max_batch=max_batch)

    @classmethod
    def from_architecture(
        cls,
        size: Size = "full",
        seed: int = 0,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
        max_batch: int = 32,
    ) -> ClipEmbedder:
        model = build_random(CLIPVisionModel, clip_vision_config(size), seed)
        return cls(place(model, device, dtype), max_batch=max_batch)

    @classmethod
    def tiny(cls, seed: int = 0) -> ClipEmbedder:
        return cls.from_architecture("tiny", seed=seed)
