"""The tiny preset's trained diffusion base: built from stand-in frames the first time it is needed.

`ensure_tiny_base()` returns the folder of the base (`<data root>/tiny/base`, or `$SIM2REAL_EDIT_TINY_BASE`),
training it first when the folder holds no complete base (a few minutes on a 2-core CPU;
`sim2real_edit.tiny_base` says how).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from sim2real_edit.components import TINY_BASE_ENV_VAR, tiny_trained_base_folder
from sim2real_edit.images import resize_batch
from sim2real_edit.outputs import check_writable_folder
from sim2real_edit.styles import HOME_ENV_VAR
from sim2real_edit.tiny_base import TinyBaseConfig, read_tiny_base_report, save_tiny_base, train_tiny_base

from .protocol import ROBOT_POSES
from .standin import DrawerStandIn, DrawerStandInConfig

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


def stand_in_frames(count: int, seed: int = 0, frames_per_reset: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """`count` stand-in frames at the tiny edit size with their cabinet masks: every start pose, random
    drawer openings and the arm at random places in front of the cabinet."""
    rng = np.random.default_rng(seed)
    poses = list(ROBOT_POSES)
    envs = {pose: DrawerStandIn("OpenTopDrawer", pose, config=tiny_camera_config()) for pose in poses}
    frames, masks = [], []
    while len(frames) < count:
        env = envs[poses[rng.integers(len(poses))]]
        openings = rng.uniform(0.0, 0.3, 3) * (rng.random(3) < 0.4)
        obs, _ = env.reset(seed=int(rng.integers(2**31)), options={"drawer_qpos": openings})
        for _ in range(frames_per_reset):
            for _ in range(int(rng.integers(1, 5))):
                action = np.zeros(7)
                action[:3] = rng.normal(0.0, 0.04, 3)
                obs, *_ = env.step(action)
            frames.append(obs["image"]["overhead_camera"]["rgb"])
            masks.append(env.cabinet_mask())
    frames_array, masks_array = np.stack(frames[:count]), np.stack(masks[:count])
    return resize_batch(frames_array, TINY_EDIT_SIZE), resize_masks(masks_array, TINY_EDIT_SIZE)


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
