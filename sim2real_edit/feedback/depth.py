"""Depth Anything V2 through transformers: per-pixel relative depth for a batch of images."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F

from ..chunking import map_in_chunks
from .architectures import depth_anything_v2_config
from .loading import TransformersJudge
from .pixels import IMAGENET_MEAN, IMAGENET_STD, ImageInput, as_unit_pixels, normalize, resize

if TYPE_CHECKING:
    from transformers import DepthAnythingConfig, DepthAnythingForDepthEstimation

DEPTH_LARGE = "depth-anything/Depth-Anything-V2-Large-hf"
DEPTH_SMALL = "depth-anything/Depth-Anything-V2-Small-hf"


class DepthEstimator(TransformersJudge):
    """Batched monocular depth: images (N, ...) -> float32 depth (N, H, W) at the input resolution.

    Preprocessing follows the checkpoints' image processor, done in torch on the model's device: the image
    is scaled (aspect ratio kept, the side closer to `input_size` fitted) to sides that are multiples of the
    patch size, bicubic, ImageNet-normalised; the prediction is resized back bicubically. Depth Anything
    predicts relative inverse depth (larger = nearer) at an arbitrary scale, which is all Eq. 8 needs.

    `from_pretrained` loads a checkpoint by hub id (`DEPTH_LARGE`, `DEPTH_SMALL`) or local folder;
    `from_architecture` builds the "large", "small" or "tiny" architecture with random weights.
    """

    default_model_id = DEPTH_LARGE
    default_size = "large"
    model_class_name = "DepthAnythingForDepthEstimation"
    judge_name = "depth model"
    architecture_config = staticmethod(depth_anything_v2_config)

    def __init__(self, model: DepthAnythingForDepthEstimation, input_size: int = 518, max_batch: int = 32):
        self.model = model.eval().requires_grad_(False)
        self.input_size = input_size
        self.max_batch = max_batch
        self.patch_size = model.config.patch_size

    @classmethod
    def architecture_options(cls, size: str, config: DepthAnythingConfig) -> dict[str, Any]:
        return {"input_size": config.backbone_config.image_size}

    def model_input_size(self, height: int, width: int) -> tuple[int, int]:
        """The (height, width) the network sees for an input of (height, width)."""
        scale_h, scale_w = self.input_size / height, self.input_size / width
        scale = scale_w if abs(1 - scale_w) < abs(1 - scale_h) else scale_h
        multiple = self.patch_size

        def fit(length: int) -> int:
            return max(multiple, round(length * scale / multiple) * multiple)

        return fit(height), fit(width)

    @torch.inference_mode()
    def __call__(self, images: ImageInput) -> torch.Tensor:
        pixels = as_unit_pixels(images, self.device)
        return map_in_chunks(self._predict, pixels, chunk_size=self.max_batch)

    def _predict(self, pixels: torch.Tensor) -> torch.Tensor:
        height, width = pixels.shape[-2:]
        model_pixels = normalize(
            resize(pixels, self.model_input_size(height, width)), IMAGENET_MEAN, IMAGENET_STD
        )
        depth = self.model(pixel_values=model_pixels.to(self.dtype)).predicted_depth.float()
        return F.interpolate(depth[:, None], size=(height, width), mode="bicubic", align_corners=False)[:, 0]
