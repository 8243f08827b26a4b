"""Conversion between user-facing images (uint8 NHWC arrays, PIL images, tensors) and model tensors."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image

ImageBatch = np.ndarray | torch.Tensor | Image.Image | Sequence[np.ndarray | Image.Image]


class ImageFormatError(ValueError):
    """An image argument has the wrong shape, dtype or value range."""


def as_uint8_batch(images: ImageBatch, name: str = "images") -> np.ndarray:
    """Returns images as a uint8 array of shape (N, H, W, 3).

    Accepted: uint8 arrays HWC or NHWC; float arrays in [0, 1]; PIL images; lists of either;
    torch tensors laid out like the arrays (NHWC/HWC).
    """
    if isinstance(images, Image.Image):
        images = [images]
    if isinstance(images, (list, tuple)):
        if len(images) == 0:
            raise ImageFormatError(f"`{name}` is an empty list; pass at least one image")
        arrays = [np.asarray(im.convert("RGB")) if isinstance(im, Image.Image) else np.asarray(im) for im in images]
        shapes = {a.shape for a in arrays}
        if len(shapes) != 1:
            raise ImageFormatError(
                f"`{name}` holds images of different shapes {sorted(shapes)}; resize them to one size first"
            )
        array = np.stack(arrays)
    elif isinstance(images, torch.Tensor):
        array = images.detach().cpu().numpy()
    elif isinstance(images, np.ndarray):
        array = images
    else:
        raise ImageFormatError(
            f"`{name}` has unsupported type {type(images).__name__}; pass a uint8 numpy array (N, H, W, 3), "
            "a PIL image or a list of them"
        )

    if array.ndim == 3:
        array = array[None]
    if array.ndim != 4 or array.shape[-1] != 3:
        hint = " (it looks channels-first: transpose to (N, H, W, 3))" if array.ndim == 4 and array.shape[1] == 3 else ""
        raise ImageFormatError(
            f"`{name}` must have shape (N, H, W, 3) or (H, W, 3) with RGB channels last, got {tuple(array.shape)}"
            + hint
        )
    if array.shape[0] == 0:
        raise ImageFormatError(f"`{name}` is an empty batch (shape {tuple(array.shape)}); pass at least one image")
    if array.shape[1] == 0 or array.shape[2] == 0:
        raise ImageFormatError(
            f"`{name}` holds empty images ({array.shape[2]}x{array.shape[1]} pixels, shape {tuple(array.shape)}); "
            "pass images with at least one pixel (check that the file or crop it came from is not empty)"
        )
    if array.dtype == np.uint8:
        return np.ascontiguousarray(array)
    if np.issubdtype(array.dtype, np.floating):
        bad = int(np.count_nonzero(~np.isfinite(array)))
        if bad:
            raise ImageFormatError(
                f"`{name}` holds {bad} NaN or infinite values; float images must lie in [0, 1]. Find where they "
                "come from, or replace them (e.g. `np.nan_to_num(images)`) if that is what you mean"
            )
        lo, hi = float(array.min()), float(array.max())
        if lo < 0.0 or hi > 1.0:
            raise ImageFormatError(
                f"`{name}` is a float array with values in [{lo:.3g}, {hi:.3g}]; float images must lie in [0, 1] "
                "(or pass uint8 in [0, 255])"
            )
        return np.round(array * 255.0).astype(np.uint8)
    raise ImageFormatError(
        f"`{name}` has dtype {array.dtype}; pass uint8 in [0, 255] or float in [0, 1] "
        "(e.g. `images.astype(np.uint8)`)"
    )


def to_model_pixels(images: np.ndarray, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """uint8 (N, H, W, 3) -> float (N, 3, H, W) in [-1, 1] on `device`."""
    pixels = torch.from_numpy(images).to(device=device, non_blocking=True)
    pixels = pixels.permute(0, 3, 1, 2).to(dtype=torch.float32) / 127.5 - 1.0
    return pixels.to(dtype)


def to_uint8_images(pixels: torch.Tensor) -> np.ndarray:
    """float (N, 3, H, W) in [-1, 1] -> uint8 (N, H, W, 3), rounding like diffusers' image processor."""
    unit = (pixels.float() / 2 + 0.5).clamp(0, 1)
    return (unit.permute(0, 2, 3, 1).cpu().numpy() * 255).round().astype(np.uint8)


def resize_batch(images: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resizes uint8 (N, H, W, 3) to (N, size[0], size[1], 3) with bicubic filtering."""
    height, width = size
    if images.shape[1:3] == (height, width):
        return images
    return np.stack([np.asarray(Image.fromarray(im).resize((width, height), Image.BICUBIC)) for im in images])
