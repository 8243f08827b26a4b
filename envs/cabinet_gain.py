"""Per-channel colour gains on the cabinet's pixels: the skeptic's non-learned baselines of a cabinet editor.

A gain multiplies every pixel inside the cabinet's exact mask, channel by channel, so the simulator's shading
(its light on each face, the dark handles and cavities) is kept and only the material's colour moves:

- `colour_transfer_gains`: from the simulator's cabinet albedo to the style exemplars' mean colour. It uses the
  exemplars and what the simulator knows of its own material, and no real-world information: the baseline a
  learned specialist has to beat.
- `oracle_gains`: from the simulator cabinet's mean colour to the real cabinet's, measured on paired frames. It
  uses the real world, so it is a diagnostic of what the sim-to-real gap is made of (if a mean colour closes the
  gap, the gap is a mean colour), never a method.

`CabinetGainEditor` applies a gain with the frame editor's interface, so the edited env runs it as a domain.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .appearance import REAL_CABINET_STYLE
from .edited import EditSettings


def mean_colour(images: Sequence[np.ndarray], masks: Sequence[np.ndarray] | None = None) -> np.ndarray:
    """Mean RGB (0-255) over the images' pixels (inside ``masks`` where given), each pixel counted once."""
    total, count = np.zeros(3), 0
    for index, image in enumerate(images):
        pixels = np.asarray(image, dtype=np.float64).reshape(-1, 3)
        if masks is not None:
            pixels = pixels[np.asarray(masks[index], dtype=bool).reshape(-1)]
        total += pixels.sum(axis=0)
        count += len(pixels)
    if count == 0:
        raise ValueError("no pixels to average: the images are empty or every mask is empty")
    return total / count


def colour_transfer_gains(exemplars: Sequence[np.ndarray], sim_albedo: Sequence[float]) -> np.ndarray:
    """Gains that turn the simulator's cabinet albedo into the exemplars' mean colour (no real information)."""
    albedo = np.asarray(sim_albedo, dtype=np.float64)
    if albedo.shape != (3,) or np.any(albedo <= 0):
        raise ValueError(f"sim_albedo must be three positive RGB values, got {sim_albedo!r}")
    return mean_colour(exemplars) / albedo


def oracle_gains(sim_frames: np.ndarray, real_frames: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """Gains that turn the simulator cabinet's mean colour into the real cabinet's, on frames of the same states
    (uses the real world: a diagnostic only)."""
    if np.shape(sim_frames) != np.shape(real_frames):
        raise ValueError(f"sim and real frames must pair up, got shapes {np.shape(sim_frames)} and "
                         f"{np.shape(real_frames)}")
    return mean_colour(real_frames, masks) / np.maximum(mean_colour(sim_frames, masks), 1e-6)


class CabinetGainEditor:
    """Multiplies the pixels inside the cabinet mask by per-channel ``gains``; every other pixel is kept byte
    for byte. Deterministic: the seeds are accepted for the editor interface and ignored."""

    def __init__(self, gains: Sequence[float], name: str = "gain"):
        gains = np.asarray(gains, dtype=np.float64)
        if gains.shape != (3,) or not np.all(np.isfinite(gains)) or np.any(gains < 0):
            raise ValueError(f"gains must be three finite non-negative numbers, got {gains!r}")
        self.gains = gains
        self.name = name
        self.settings = EditSettings(composite=True, feather=0)

    def edit(self, frames: np.ndarray, seeds: list[int], masks: np.ndarray | None = None) -> np.ndarray:
        if masks is None:
            raise ValueError(f"the {self.name} editor changes only the cabinet's pixels: pass the cabinet masks")
        frames = np.asarray(frames)
        masks = np.asarray(masks, dtype=bool)
        if masks.shape != frames.shape[:3]:
            raise ValueError(f"masks must be (N, H, W) = {frames.shape[:3]}, got {masks.shape}")
        out = frames.copy()
        out[masks] = np.clip(np.rint(frames[masks] * self.gains), 0, 255).astype(np.uint8)
        return out


def standin_oracle_gains(
    camera, poses: Sequence[str] = ("a0", "b1", "c2"), seed: int = 12_345, real_material: str = REAL_CABINET_STYLE
) -> np.ndarray:
    """`oracle_gains` of the CPU stand-in: its sim and real start frames of the open-top-drawer task at
    ``poses`` (``camera``: a `DrawerStandInConfig`), the real cabinet made of ``real_material``."""
    from .standin import DrawerStandIn

    sim_frames, real_frames, masks = [], [], []
    for pose in poses:
        sim = DrawerStandIn("OpenTopDrawer", pose, config=camera, add_segmentation=False)
        real = DrawerStandIn("OpenTopDrawer", pose, config=camera, add_segmentation=False, appearance="real",
                             real_material=real_material)
        sim_frames.append(sim.reset(seed=seed)[0]["image"]["overhead_camera"]["rgb"])
        real_frames.append(real.reset(seed=seed)[0]["image"]["overhead_camera"]["rgb"])
        masks.append(sim.cabinet_mask())
    return oracle_gains(np.stack(sim_frames), np.stack(real_frames), np.stack(masks))
