"""Crop editing's geometry: the box around an object's mask that is edited at the model's resolution, and the
round trip frames -> crops at the edit size -> edits pasted back. The edited env (`envs.edited`, `crop=True`)
and anything that must see the same crops (e.g. training frames) share it."""

from __future__ import annotations

import numpy as np

from .images import resize_batch

Box = tuple[slice, slice]  # (rows, columns) of a frame


def crop_box(mask: np.ndarray, aspect: float, margin: float) -> Box | None:
    """The box a crop edit takes from a frame: the (H, W) mask's bounding box grown by `margin` of its size on
    every side, then to the width/height ratio `aspect`, shifted (never shrunk below the bounding box) to lie
    inside the frame. None for an empty mask.

    The box always holds the whole mask. A box too big for the frame becomes the largest box of `aspect` the
    frame holds; it departs from `aspect` only where the mask's bounding box itself does not fit in that."""
    height, width = mask.shape
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return None
    mask_height, mask_width = rows[-1] + 1 - rows[0], cols[-1] + 1 - cols[0]
    box_height = max(mask_height * (1 + 2 * margin), mask_width * (1 + 2 * margin) / aspect)
    box_height = min(box_height, height, width / aspect)
    box_height = int(np.clip(round(box_height), mask_height, height))
    box_width = int(np.clip(round(box_height * aspect), mask_width, width))

    def place(start: int, extent: int, box_extent: int, limit: int) -> slice:
        first = int(np.clip(start - (box_extent - extent) // 2, 0, limit - box_extent))
        return slice(first, first + box_extent)

    return place(rows[0], mask_height, box_height, height), place(cols[0], mask_width, box_width, width)


def crops_at_size(frames: np.ndarray, masks: np.ndarray, size: tuple[int, int],
                  margin: float) -> tuple[np.ndarray | None, list[Box | None]]:
    """Each frame's `crop_box` (aspect of `size`) and the crops of the frames that have one, resized to `size`
    (K, size[0], size[1], 3) in frame order; None when no mask has a pixel."""
    boxes = [crop_box(mask, size[1] / size[0], margin) for mask in masks]
    crops = [resize_batch(frame[box][None], size)[0] for frame, box in zip(frames, boxes) if box is not None]
    return (np.stack(crops) if crops else None), boxes


def paste_crops(frames: np.ndarray, edits: np.ndarray, boxes: list[Box | None]) -> np.ndarray:
    """A copy of `frames` with the edits of `crops_at_size`'s crops resized back into their boxes."""
    pasted = frames.copy()
    cropped = [i for i, box in enumerate(boxes) if box is not None]
    for i, edit in zip(cropped, edits):
        rows, cols = boxes[i]
        pasted[i][rows, cols] = resize_batch(edit[None], (rows.stop - rows.start, cols.stop - cols.start))[0]
    return pasted
