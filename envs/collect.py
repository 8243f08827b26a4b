"""Training frames for a specialist, with the cabinet's exact masks, from SIMPLER or the stand-in."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .masks import cabinet_mask
from .protocol import Trial, protocol_trials
from .simpler import POLICY_CAMERA
from .trial_env import DrawerTrialEnv


def sweep_action(step: int, seed: int) -> np.ndarray:
    """A smooth scripted end-effector sweep (the same on both backends): the arm drifts towards and along
    the cabinet so that frames show it at many places in front of the drawers."""
    phase = 0.7 * step + seed
    return np.array([0.5 * np.cos(phase / 3), 0.6 * np.sin(phase / 2), -0.3 * np.sin(phase / 4), 0, 0, 0, 0.0])


def collect_frames(
    out: str | Path | None,
    backend: str = "standin",
    trials: list[Trial] | None = None,
    motion_steps: int = 6,
    every: int = 3,
    seed: int = 0,
    progress: bool = True,
    overwrite: bool = False,
    **backend_kwargs,
):
    """Each trial's start frame and frames along a scripted sweep, with exact masks, as TrainingFrames
    (written to `out` unless it is None; a folder that holds frames already needs `overwrite`)."""
    from tqdm.auto import tqdm

    from sim2real_edit.frames import TrainingFrames
    from sim2real_edit.outputs import FRAME_OUTPUTS, check_outputs

    if out is not None:  # refused before the collection, not after it
        check_outputs(out, FRAME_OUTPUTS, overwrite=overwrite, what="training frames", advice="or choose another --out")
    trials = trials if trials is not None else protocol_trials()
    env = DrawerTrialEnv(backend, **backend_kwargs)
    frames, masks, names = [], [], []

    def keep(obs: dict, name: str) -> None:
        camera = obs["image"][POLICY_CAMERA]
        frames.append(camera["rgb"])
        masks.append(cabinet_mask(camera["Segmentation"], env.cabinet_ids()))
        names.append(name)

    try:
        for index, trial in enumerate(tqdm(trials, desc=f"collecting frames ({backend})", disable=not progress)):
            obs, _ = env.reset(seed=seed + index, options={"trial": trial})
            stem = trial.key.replace("/", "_")
            keep(obs, f"{stem}_000")
            for step in range(1, motion_steps + 1):
                obs, *_ = env.step(sweep_action(step, seed + index))
                if step % every == 0:
                    keep(obs, f"{stem}_{step:03d}")
    finally:
        env.close()
    collected = TrainingFrames(np.stack(frames), np.stack(masks), np.ones(len(frames), bool), names)
    if out is not None:
        collected.save(out, overwrite=overwrite)
    return collected
