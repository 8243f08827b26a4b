"""Depth Anything V2 through transformers: per-pixel relative depth for a batch of images."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from transformers import DepthAnythingForDepthEstimation

from ..chunking import map_in_chunks
from .architectures import DepthSize, depth_anything_v2_config
from .loading import build_random, load_pretrained, place
from .pixels import IMAGENET_MEAN, IMAGENET_STD, ImageInput, as_unit_pixels, normalize, resize

DEPTH_LARGE = "depth-anything/Depth-Anything-V2-Large-hf"
DEPTH_SMALL = "depth-anything/Depth-Anything-V2-Small-hf"


class DepthEstimator:
    """Batched monocular depth: images (N, ...) -> float32 depth (N, H, W) at the input resolution.

    Preprocessing follows the checkpoints' image processor, done in torch on the model's device: the image
    is scaled (aspect ratio kept, the side closer to `input_size` fitted) to sides that are multiples of the
    patch size, bicubic, ImageNet-normalised; the prediction is resized back bicubically. Depth Anything
    predicts relative inverse depth (larger = nearer) at an arbitrary scale, which is all Eq. 8 needs.
    """

    def __init__(self, model: DepthAnythingForDepthEstimation, input_size: int = 518, max_batch: int = 32):
        self.model = model.eval().requires_grad_(False)
        self.input_size = input_size
        self.max_batch = max_batch
        self.patch_size = model.config.patch_size

    @property
    def device(self) -> torch.device:
        return self.model.device

    @property
    def dtype(self) -> torch.dtype:
        return self.model.dtype

    @classmethod
    def from_pretrained(
        cls,
        model_id: str = DEPTH_LARGE,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
        input_size: int = 518,
        max_batch: int = 32,
    ) -> DepthEstimator:
        """Loads a Depth Anything checkpoint by hub id (`DEPTH_LARGE`, `DEPTH_SMALL`) or local folder."""
        model = load_pretrained(
            DepthAnythingForDepthEstimation, model_id, "depth model", "DepthEstimator.from_pretrained('DIR')"
        )
        return cls(place(model, device, dtype), input_size=input_size, max_batch=max_batch)

    @classmethod
    def from_architecture(
        cls,
        size: DepthSize = "large",
        seed: int = 0,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
        max_batch: int = 32,
    ) -> DepthEstimator:
        """Random weights in the Large, Small or tiny architecture (offline; for benchmarks and tests)."""
        config = depth_anything_v2_config(size)
        model = build_random(DepthAnythingForDepthEstimation, config, seed)
        return cls(place(model, device, dtype), input_size=config.backbone_config.image_size, max_batch=max_batch)

    @classmethod
    def tiny(cls, seed: int = 0) -> DepthEstimator:
        return cls.from_architecture("tiny", seed=seed)

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
