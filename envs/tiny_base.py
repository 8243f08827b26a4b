"""The tiny preset's trained diffusion base: built from stand-in frames the first time it is needed.

`ensure_tiny_base()` returns the folder of the base (`<data root>/tiny/base`, or `$SIM2REAL_EDIT_TINY_BASE`),
training it first when the folder holds no complete base (a few minutes on a 2-core CPU;
`sim2real_edit.tiny_base` says how).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sim2real_edit.components import TINY_BASE_ENV_VAR, tiny_trained_base_folder
from sim2real_edit.images import resize_batch
from sim2real_edit.outputs import check_writable_folder
from sim2real_edit.styles import HOME_ENV_VAR
from sim2real_edit.tiny_base import TinyBaseConfig, read_tiny_base_report, save_tiny_base, train_tiny_base

from .protocol import ROBOT_POSES
from .standin import _HANDLE_MESH_IDS, CABINET_ALBEDO, CAMERA_NAME, DrawerStandIn, DrawerStandInConfig

logger = logging.getLogger(__name__)

#: The tiny preset's camera (SIMPLER's field of view at a quarter of its 640x512) and edit size.
TINY_CAMERA = (160, 128)
TINY_EDIT_SIZE = (64, 80)


def tiny_camera_config() -> DrawerStandInConfig:
    width, height = TINY_CAMERA
    return DrawerStandInConfig(image_width=width, image_height=height, focal_length=425.0 * width / 640)


def resize_masks(masks: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize of bool masks (N, H, W) to `size` (height, width)."""
    rows = (np.arange(size[0]) + 0.5) * masks.shape[1] / size[0]
    cols = (np.arange(size[1]) + 0.5) * masks.shape[2] / size[1]
    return masks[:, rows.astype(int)][:, :, cols.astype(int)]


def shrink_masks(masks: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize of bool masks (N, H, W) to `size` (height, width) that keeps a pixel only where its whole
    footprint (every source pixel it covers) is in the mask, so that a kept pixel is not mostly another part."""
    height, width = masks.shape[1:]
    # Summed-area table: the count of mask pixels in any rectangle in four look-ups.
    table = np.pad(masks.astype(np.int32).cumsum(axis=1).cumsum(axis=2), ((0, 0), (1, 0), (1, 0)))
    row_edges = np.arange(size[0] + 1) * height / size[0]
    col_edges = np.arange(size[1] + 1) * width / size[1]
    top, bottom = np.floor(row_edges[:-1]).astype(int), np.ceil(row_edges[1:]).astype(int)
    left, right = np.floor(col_edges[:-1]).astype(int), np.ceil(col_edges[1:]).astype(int)
    inside = (table[:, bottom][:, :, right] - table[:, top][:, :, right]
              - table[:, bottom][:, :, left] + table[:, top][:, :, left])
    area = (bottom - top)[:, None] * (right - left)[None, :]
    return inside == area


#: The darkest the stand-in shades a face (its Lambertian factor's floor, `envs.standin`), less a margin: a
#: cabinet pixel darker than the albedo under this shading is a cavity or a drawer's inside rim, not material.
_DARKEST_CABINET_SHADING = 0.62 * 0.9


def cabinet_material_mask(rgb: np.ndarray, segmentation: np.ndarray, cabinet_ids: tuple[int, ...]) -> np.ndarray:
    """bool (H, W): the cabinet pixels that show its material, from a stand-in frame (H, W, 3) and its
    Segmentation (H, W, 4): the cabinet links' pixels less the handles (their own mesh ids) and the dark
    cavities and drawer rims (the cabinet's albedo shaded no darker than the simulator shades a face)."""
    cabinet = np.isin(segmentation[..., 1], cabinet_ids)
    handles = np.isin(segmentation[..., 0], tuple(_HANDLE_MESH_IDS.values()))
    luma = np.asarray(rgb, dtype=np.float64) @ np.array([0.299, 0.587, 0.114])
    darkest = float(CABINET_ALBEDO @ np.array([0.299, 0.587, 0.114])) * _DARKEST_CABINET_SHADING
    return cabinet & ~handles & (luma >= darkest)


@dataclass(frozen=True)
class StandInFrames:
    """Stand-in frames at the tiny edit size: uint8 (N, H, W, 3), and bool (N, H, W) masks of the whole
    cabinet (what an edit may change) and of its material (what a style judge should look at: no handles,
    cavities or pixels blended with them)."""

    frames: np.ndarray
    cabinet_masks: np.ndarray
    material_masks: np.ndarray


def stand_in_frames_with_parts(count: int, seed: int = 0, frames_per_reset: int = 4,
                               crop_margin: float | None = None) -> StandInFrames:
    """`count` stand-in frames at the tiny edit size with their cabinet and material masks: every start pose,
    random drawer openings and the arm at random places in front of the cabinet. With `crop_margin` each frame
    is the cabinet's crop box (`sim2real_edit.crops.crop_box`, that margin), as the crop-editing env edits it."""
    from sim2real_edit.crops import crop_box

    rng = np.random.default_rng(seed)
    poses = list(ROBOT_POSES)
    envs = {pose: DrawerStandIn("OpenTopDrawer", pose, config=tiny_camera_config()) for pose in poses}
    frames, masks, materials = [], [], []
    aspect = TINY_EDIT_SIZE[1] / TINY_EDIT_SIZE[0]
    while len(frames) < count:
        env = envs[poses[rng.integers(len(poses))]]
        openings = rng.uniform(0.0, 0.3, 3) * (rng.random(3) < 0.4)
        obs, _ = env.reset(seed=int(rng.integers(2**31)), options={"drawer_qpos": openings})
        for _ in range(frames_per_reset):
            for _ in range(int(rng.integers(1, 5))):
                action = np.zeros(7)
                action[:3] = rng.normal(0.0, 0.04, 3)
                obs, *_ = env.step(action)
            image = obs["image"][CAMERA_NAME]
            mask = env.cabinet_mask()
            material = cabinet_material_mask(image["rgb"], image["Segmentation"], env.cabinet_segmentation_ids)
            box = crop_box(mask, aspect, crop_margin) if crop_margin is not None else None
            rgb = image["rgb"]
            if box is not None:
                rgb, mask, material = rgb[box], mask[box], material[box]
            frames.append(resize_batch(rgb[None], TINY_EDIT_SIZE)[0])
            masks.append(resize_masks(mask[None], TINY_EDIT_SIZE)[0])
            materials.append(shrink_masks(material[None], TINY_EDIT_SIZE)[0])
    return StandInFrames(np.stack(frames[:count]), np.stack(masks[:count]), np.stack(materials[:count]))


def stand_in_frames(count: int, seed: int = 0, frames_per_reset: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """`count` stand-in frames at the tiny edit size with their cabinet masks (see `stand_in_frames_with_parts`,
    which also gives the material masks)."""
    parts = stand_in_frames_with_parts(count, seed, frames_per_reset)
    return parts.frames, parts.cabinet_masks


def ensure_tiny_base(
    folder: str | Path | None = None,
    config: TinyBaseConfig | None = None,
    frames: int = 800,
    progress: bool = True,
) -> Path:
    """The folder of a complete tiny base, trained and saved there first if needed (default folder:
    `components.tiny_trained_base_folder()`). With `config`, a base built with other settings is rebuilt;
    without, any complete base is used, and a missing one is built with the default settings."""
    folder = Path(folder) if folder is not None else tiny_trained_base_folder()
    report = read_tiny_base_report(folder)
    if report is not None and (config is None or report.config == config.to_dict()):
        return folder
    config = config or TinyBaseConfig()
    # Minutes of training end in a save: a folder that cannot take it fails now, not after them.
    check_writable_folder(folder, what=f"the tiny preset's base folder {folder}",
                          fix=f"set {HOME_ENV_VAR} (or {TINY_BASE_ENV_VAR}) to a writable folder")
    logger.warning("building the tiny preset's diffusion base in %s (once; a few minutes on a CPU)", folder)
    training = stand_in_frames(frames, seed=config.seed)
    held_out = stand_in_frames(32, seed=config.seed + 10_000)
    components, report = train_tiny_base(*training, held_out, config, progress)
    save_tiny_base(components, report, folder)
    logger.info("tiny base: VAE %.1f dB, untrained specialist's edit %.1f dB (cabinet %.1f dB) in %.0f s",
                report.vae_psnr, report.edit_psnr, report.edit_cabinet_psnr, report.seconds)
    return folder
