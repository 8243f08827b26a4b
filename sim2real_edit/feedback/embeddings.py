"""Masked-mean patch embeddings: one vector per image for the region inside its mask.

A ViT's patch tokens form a grid; each image's mask is averaged down to that grid, so a patch counts with
the fraction of its pixels inside the mask (for masks that follow the grid this is the plain mean over the
masked patches), and the embedding is the weighted mean of the patch tokens. An empty mask gives the zero
vector, whose cosine distance to anything is 1 (see `scores.embedding_distance`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F

from ..chunking import map_in_chunks
from .architectures import clip_vision_config, dinov2_config
from .loading import TransformersJudge
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

if TYPE_CHECKING:
    from transformers import CLIPVisionModel, Dinov2Config, Dinov2Model, PreTrainedModel

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


class TransformersViTEmbedder(TransformersJudge, PatchEmbedder):
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

    def patch_features(self, pixels: torch.Tensor) -> torch.Tensor:
        model_pixels = normalize(resize(pixels, (self.input_size, self.input_size)), self.mean, self.std)
        hidden = self.model(pixel_values=model_pixels.to(self.dtype)).last_hidden_state
        patches = hidden[:, -self.grid * self.grid :]
        return patches.transpose(1, 2).reshape(hidden.shape[0], -1, self.grid, self.grid)


class Dinov2Embedder(TransformersViTEmbedder):
    """DINOv2 (transformers `Dinov2Model`) patch tokens at 224x224: a 16x16 grid like DreamSim's."""

    default_model_id = DINOV2_BASE
    model_class_name = "Dinov2Model"
    judge_name = "DINOv2 embedder"
    architecture_config = staticmethod(dinov2_config)

    def __init__(self, model: Dinov2Model, input_size: int = 224, max_batch: int = 32):
        super().__init__(model, input_size, IMAGENET_MEAN, IMAGENET_STD, max_batch)

    @classmethod
    def architecture_options(cls, size: str, config: Dinov2Config) -> dict[str, Any]:
        return {"input_size": 224 if size == "full" else 56}


class ClipEmbedder(TransformersViTEmbedder):
    """CLIP image-tower (transformers `CLIPVisionModel`) patch tokens at the model's input size.

    `from_pretrained` takes the image tower of a CLIPModel or CLIPVisionModel checkpoint.
    """

    default_model_id = CLIP_B16
    model_class_name = "CLIPVisionModel"
    judge_name = "CLIP embedder"
    architecture_config = staticmethod(clip_vision_config)

    def __init__(self, model: CLIPVisionModel, max_batch: int = 32):
        super().__init__(model, model.config.image_size, CLIP_MEAN, CLIP_STD, max_batch)
