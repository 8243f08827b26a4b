"""The cabinet's pixel mask: exact from a simulator's segmentation, behind one interface for all mask sources.

SIMPLER's cameras (made with `camera_cfgs={"add_segmentation": True}`) return `Segmentation`, an
(H, W, 4) uint32 image whose channel 1 holds the id of the actor or articulation link seen at each pixel.
The cabinet is the articulation `env.unwrapped.art_obj`, so its mask is the set of pixels showing one of its
links; the robot arm in front of the cabinet is excluded because its links have ids of their own. The
stand-in drawer env (`envs.standin`) returns the same segmentation layout and names its cabinet ids in
`env.unwrapped.cabinet_segmentation_ids`.

    ids = cabinet_segmentation_ids(env)  # after reset: SIMPLER assigns ids when it builds the scene
    mask = cabinet_mask(obs["image"]["overhead_camera"]["Segmentation"], ids)  # (H, W) bool
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import gymnasium as gym
import numpy as np

#: Channel of SIMPLER's `Segmentation` image that holds actor and link ids (channel 0 holds mesh ids).
ACTOR_ID_CHANNEL = 1


def cabinet_segmentation_ids(env: gym.Env) -> tuple[int, ...]:
    """The segmentation ids of the cabinet's parts in `env` (SIMPLER or the stand-in), sorted.

    SIMPLER assigns ids when it builds a scene, so read them after `reset` and again after a reset that
    rebuilds the scene (a change of robot URDF version does).
    """
    simulator = env.unwrapped
    if hasattr(simulator, "cabinet_segmentation_ids"):
        return tuple(sorted(int(i) for i in simulator.cabinet_segmentation_ids))
    cabinet = getattr(simulator, "art_obj", None)
    if cabinet is None:
        raise TypeError(
            f"{type(simulator).__name__} has no cabinet to segment: expected SIMPLER's drawer env (cabinet "
            "articulation `art_obj`; build it with envs.simpler.make_simpler_drawer and reset it first) or an "
            "env with a `cabinet_segmentation_ids` attribute such as envs.standin.DrawerStandIn."
        )
    return tuple(sorted(int(link.get_id()) for link in cabinet.get_links()))


def cabinet_mask(segmentation: np.ndarray, cabinet_ids: Sequence[int]) -> np.ndarray:
    """Boolean mask of the cabinet from one segmentation image (H, W, C) or a batch (N, H, W, C).

    Returns (H, W) or (N, H, W): True where channel 1 holds one of `cabinet_ids`.
    """
    segmentation = np.asarray(segmentation)
    if segmentation.ndim not in (3, 4) or segmentation.shape[-1] <= ACTOR_ID_CHANNEL:
        raise ValueError(
            f"expected a segmentation image (H, W, 4) or a batch (N, H, W, 4) with actor ids in channel "
            f"{ACTOR_ID_CHANNEL}, as SIMPLER's cameras return under 'Segmentation'; got shape {segmentation.shape}"
        )
    if len(cabinet_ids) == 0:
        raise ValueError("no cabinet ids given: read them with cabinet_segmentation_ids(env) after env.reset()")
    return np.isin(segmentation[..., ACTOR_ID_CHANNEL], np.asarray(cabinet_ids))


class MaskSource(Protocol):
    """Finds the cabinet in a batch of frames.

    `frames` is uint8 (N, H, W, 3); `segmentations` is the simulator's (N, H, W, 4) segmentation of the same
    frames, or None where there is none (e.g. real images). Returns the masks, bool (N, H, W), and whether the
    cabinet was found in each frame, bool (N,).
    """

    def masks(
        self, frames: np.ndarray, segmentations: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray]: ...


class SimulatorMasks:
    """Exact cabinet masks from the simulator's segmentation (SIMPLER or the stand-in): free and never wrong."""

    def __init__(self, cabinet_ids: Sequence[int]):
        if len(cabinet_ids) == 0:
            raise ValueError("SimulatorMasks needs the cabinet's segmentation ids; got none")
        self.cabinet_ids = tuple(int(i) for i in cabinet_ids)

    @classmethod
    def from_env(cls, env: gym.Env) -> SimulatorMasks:
        """Reads the cabinet ids from a reset env (see `cabinet_segmentation_ids`)."""
        return cls(cabinet_segmentation_ids(env))

    def masks(self, frames: np.ndarray, segmentations: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        if segmentations is None:
            raise ValueError(
                "SimulatorMasks needs the simulator's segmentation of each frame: make the env with "
                "add_segmentation=True (camera_cfgs={'add_segmentation': True}) and pass "
                "obs['image'][camera]['Segmentation'], or use an image-based mask source such as Grounded-SAM2"
            )
        frames, segmentations = np.asarray(frames), np.asarray(segmentations)
        if frames.ndim != 4 or segmentations.ndim != 4 or frames.shape[:3] != segmentations.shape[:3]:
            raise ValueError(
                f"expected frames (N, H, W, 3) and segmentations (N, H, W, 4) of the same N, H, W; got "
                f"{frames.shape} and {segmentations.shape}"
            )
        masks = cabinet_mask(segmentations, self.cabinet_ids)
        return masks, masks.any(axis=(1, 2))


class GroundedSAM2Masks:
    """Cabinet masks found in the pixels by Grounded-SAM2 (the paper's way): works on any image, including
    real photos and frames without segmentation, but can miss. `segmentations` is ignored."""

    def __init__(self, segmenter, prompt: str = "cupboard"):
        self.segmenter = segmenter  # sim2real_edit.feedback.GroundedSAM2 or any Segmenter
        self.prompt = prompt

    @classmethod
    def from_pretrained(cls, prompt: str = "cupboard", **kwargs) -> GroundedSAM2Masks:
        from sim2real_edit.feedback import GroundedSAM2

        return cls(GroundedSAM2.from_pretrained(**kwargs), prompt)

    def masks(self, frames: np.ndarray, segmentations: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        result = self.segmenter(np.asarray(frames), self.prompt)
        return result.masks.cpu().numpy(), result.found.cpu().numpy()
