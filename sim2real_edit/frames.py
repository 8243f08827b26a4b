"""Training frames: simulator images a specialist learns to edit, with exact cabinet masks where known.

Folder layout (written by `scripts/collect_frames.py`, or any folder of images):

    frames/
      0000.png  0001.png  ...          RGB frames
      masks/0000.png ...               optional: the cabinet's exact mask (white = cabinet)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from .images import resize_batch
from .outputs import FRAME_OUTPUTS, check_outputs, remove_outputs

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
MASKS_DIR = "masks"


def edit_size(height: int, width: int, short_side: int, multiple: int = 8) -> tuple[int, int]:
    """The (height, width) a frame is edited at: short side `short_side`, aspect kept, multiples of 8."""
    scale = short_side / min(height, width)
    return (
        max(multiple, round(height * scale / multiple) * multiple),
        max(multiple, round(width * scale / multiple) * multiple),
    )


@dataclass
class TrainingFrames:
    frames: np.ndarray  # uint8 (N, H, W, 3)
    masks: np.ndarray  # bool (N, H, W); meaningful only where has_mask
    has_mask: np.ndarray  # bool (N,)
    names: list[str]

    def __len__(self) -> int:
        return len(self.frames)

    @classmethod
    def from_folder(cls, folder: str | Path, short_side: int = 256) -> TrainingFrames:
        folder = Path(folder)
        paths = sorted(p for p in folder.glob("*") if p.suffix.lower() in IMAGE_SUFFIXES) if folder.is_dir() else []
        if not paths:
            raise FileNotFoundError(
                f"no training frames in {folder}: put RGB frames (png/jpg) there, or write them from the "
                f"simulator with `python scripts/collect_frames.py --out {folder}` (SIMPLER when installed, "
                "else the stand-in drawer env)"
            )
        first = Image.open(paths[0])
        height, width = edit_size(first.height, first.width, short_side)
        frames, masks, has_mask = [], [], []
        for path in paths:
            frames.append(np.asarray(Image.open(path).convert("RGB").resize((width, height), Image.BICUBIC)))
            mask_path = folder / MASKS_DIR / f"{path.stem}.png"
            if mask_path.is_file():
                mask = Image.open(mask_path).convert("L").resize((width, height), Image.NEAREST)
                masks.append(np.asarray(mask) > 127)
                has_mask.append(True)
            else:
                masks.append(np.zeros((height, width), dtype=bool))
                has_mask.append(False)
        return cls(np.stack(frames), np.stack(masks), np.array(has_mask), [p.stem for p in paths])

    def resized(self, short_side: int) -> TrainingFrames:
        """These frames at the edit size for `short_side` (aspect kept, multiples of 8); masks follow."""
        height, width = self.frames.shape[1:3]
        size = edit_size(height, width, short_side)
        if size == (height, width):
            return self
        frames = resize_batch(self.frames, size)
        masks = np.stack([np.asarray(Image.fromarray(m.astype(np.uint8) * 255).resize(size[::-1], Image.NEAREST)) > 127
                          for m in self.masks])
        return TrainingFrames(frames, masks, self.has_mask.copy(), list(self.names))

    def save(self, folder: str | Path, overwrite: bool = False) -> Path:
        """Writes the frames (and masks/) into `folder`. A folder that already holds frames is refused unless
        `overwrite`, which deletes them first: a training run never reads a mix of two collections."""
        folder = Path(folder)
        check_outputs(folder, FRAME_OUTPUTS, overwrite=overwrite, what="training frames",
                      advice="or choose another folder")
        remove_outputs(folder, FRAME_OUTPUTS)
        (folder / MASKS_DIR).mkdir(parents=True, exist_ok=True)
        for name, frame, mask, known in zip(self.names, self.frames, self.masks, self.has_mask):
            Image.fromarray(frame).save(folder / f"{name}.png")
            if known:
                Image.fromarray(mask.astype(np.uint8) * 255).save(folder / MASKS_DIR / f"{name}.png")
        return folder
