"""Image and mask batches as the judges consume them: float (N, 3, H, W) in [0, 1] and bool (N, H, W)."""

from __future__ import annotations

import hashlib

import numpy as np
import torch
import torch.nn.functional as F

ImageInput = np.ndarray | torch.Tensor
MaskInput = np.ndarray | torch.Tensor

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


class FeedbackInputError(ValueError):
    """An image or mask batch handed to a judge has the wrong shape, dtype, range or batch size."""


def as_unit_pixels(
    images: ImageInput, device: torch.device | str | None = None, name: str = "images"
) -> torch.Tensor:
    """Returns float32 (N, 3, H, W) pixels in [0, 1] on `device`.

    Accepted: uint8 arrays or tensors laid out (N, H, W, 3) or (H, W, 3), as simulators and PIL give them;
    float tensors or arrays laid out (N, 3, H, W) with values in [0, 1], as models give them (a diffusion
    model's [-1, 1] output becomes `(x + 1) / 2`).
    """
    tensor = torch.from_numpy(np.ascontiguousarray(images)) if isinstance(images, np.ndarray) else images
    if not isinstance(tensor, torch.Tensor):
        raise FeedbackInputError(
            f"`{name}` has unsupported type {type(images).__name__}; pass a uint8 array (N, H, W, 3) or a "
            "float tensor (N, 3, H, W) in [0, 1]"
        )
    if device is not None:
        tensor = tensor.to(device, non_blocking=True)
    if tensor.dtype == torch.uint8:
        if tensor.ndim == 3:
            tensor = tensor[None]
        if tensor.ndim != 4 or tensor.shape[-1] != 3:
            raise FeedbackInputError(
                f"uint8 `{name}` must be channels-last (N, H, W, 3) or (H, W, 3), got {tuple(tensor.shape)}; "
                "transpose channels-first data with `.permute(0, 2, 3, 1)`"
            )
        return tensor.permute(0, 3, 1, 2).float().div_(255.0)
    if not tensor.is_floating_point():
        raise FeedbackInputError(
            f"`{name}` has dtype {tensor.dtype}; pass uint8 in [0, 255] or float in [0, 1]"
        )
    if tensor.ndim != 4 or tensor.shape[1] != 3:
        raise FeedbackInputError(
            f"float `{name}` must be channels-first (N, 3, H, W), got {tuple(tensor.shape)}; "
            "channels-last float data: `.permute(0, 3, 1, 2)`"
        )
    tensor = tensor.float()
    low, high = (bound.item() for bound in torch.aminmax(tensor))
    if low < -1e-3 or high > 1 + 1e-3:
        raise FeedbackInputError(
            f"float `{name}` has values in [{low:.3g}, {high:.3g}]; float images must lie in [0, 1] "
            "(map [-1, 1] model output with `(x + 1) / 2`)"
        )
    return tensor if low >= 0 and high <= 1 else tensor.clamp(0.0, 1.0)


def as_bool_masks(masks: MaskInput, like: torch.Tensor, name: str = "masks") -> torch.Tensor:
    """Returns bool (N, H, W) masks on `like`'s device, checked against the pixels `like` (N, 3, H, W)."""
    tensor = torch.from_numpy(np.ascontiguousarray(masks)) if isinstance(masks, np.ndarray) else masks
    if not isinstance(tensor, torch.Tensor):
        raise FeedbackInputError(
            f"`{name}` has unsupported type {type(masks).__name__}; pass a bool (N, H, W) array"
        )
    if tensor.is_floating_point():
        raise FeedbackInputError(f"`{name}` is a float tensor; pass bool masks (e.g. `soft_mask > 0.5`)")
    expected = (like.shape[0], *like.shape[2:])
    if tuple(tensor.shape) != expected:
        raise FeedbackInputError(
            f"`{name}` has shape {tuple(tensor.shape)} but its images need masks of shape {expected} "
            "(N, H, W): one mask per image, at the image's resolution"
        )
    return tensor.to(like.device, non_blocking=True) != 0


def resize(pixels: torch.Tensor, size: tuple[int, int], mode: str = "bicubic") -> torch.Tensor:
    """Resizes (N, C, H, W) to `size` with PIL-like antialiasing; clamps bicubic overshoot to [0, 1]."""
    if tuple(pixels.shape[-2:]) == tuple(size):
        return pixels
    resized = F.interpolate(pixels, size=size, mode=mode, align_corners=False, antialias=True)
    return resized.clamp_(0.0, 1.0) if mode == "bicubic" else resized


def normalize(pixels: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    mean_t = torch.tensor(mean, device=pixels.device, dtype=pixels.dtype).view(1, -1, 1, 1)
    std_t = torch.tensor(std, device=pixels.device, dtype=pixels.dtype).view(1, -1, 1, 1)
    return (pixels - mean_t) / std_t


def content_hashes(pixels: torch.Tensor) -> list[str]:
    """One digest per image of its 8-bit content, so a uint8 image and its float copy share a key."""
    quantized = (pixels * 255.0).round_().to(torch.uint8).cpu().numpy()
    return [
        hashlib.blake2b(image.tobytes() + str(image.shape).encode(), digest_size=16).hexdigest()
        for image in quantized
    ]
