"""How well edits do a specialist's job on held-out frames and noise seeds, in the judges' own terms.

A specialist is only better if it beats what a skeptic tries first: returning the input unchanged, the
untrained specialist, and one trained the same way on preferences that carry no information (a coin flip per
pair). `score_edits` measures any edit function on the same frames, masks, exemplars and noise seeds, so that
these compare pair by pair:

- `total`: structure + semantic score (lower is better), the judges' verdict;
- `outside_change`, `inside_change`: mean absolute change outside and inside the object's mask, in grey levels
  (0-255): an edit of the cabinet should change the cabinet and leave the rest of the frame alone;
- `colour_distance`: distance (grey levels, RGB) from the mean colour inside the mask to the exemplars' mean
  colour: does the object move towards the material?
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np

from .feedback import Feedback

#: Noise seeds of held-out edits start here; training draws its seeds from [0, 2**31 - 1) at random, so a
#: collision is possible but has a chance of about one in a hundred thousand per seed.
HELD_OUT_SEED = 2_000_000_000

EditFunction = Callable[[np.ndarray, np.ndarray, list[int]], np.ndarray]  # (frames, style images, seeds) -> edits


@dataclass(frozen=True)
class EditScorecard:
    method: str
    total: float
    total_spread: float  # sd of the per-round means / sqrt(rounds): how far the mean moves with other seeds
    structure: float
    semantic: float
    outside_change: float
    inside_change: float
    cabinet_colour: tuple[float, float, float]
    colour_distance: float
    round_totals: tuple[float, ...]  # mean total of each round of noise seeds (rounds pair up across methods)

    def to_dict(self) -> dict:
        return asdict(self)

    def wins_against(self, other: EditScorecard) -> float:
        """Fraction of seed rounds in which this method's mean total is lower than `other`'s."""
        if len(self.round_totals) != len(other.round_totals):
            raise ValueError("scorecards of different numbers of rounds do not pair up")
        return float(np.mean([a < b for a, b in zip(self.round_totals, other.round_totals)]))


def exemplar_colour(exemplars: Sequence[np.ndarray]) -> np.ndarray:
    """Mean RGB of the exemplar images (0-255)."""
    return np.mean([np.asarray(image, dtype=np.float64).reshape(-1, 3).mean(axis=0) for image in exemplars], axis=0)


def score_edits(
    method: str,
    edit: EditFunction,
    frames: np.ndarray,
    masks: np.ndarray,
    exemplars: Sequence[np.ndarray],
    feedback: Feedback,
    rounds: int = 4,
) -> EditScorecard:
    """Scores `edit` on uint8 frames (N, H, W, 3) with their object masks (N, H, W): `rounds` rounds of fresh
    noise seeds, frame i conditioned on exemplar i mod len(exemplars) (as in training)."""
    if rounds < 1:
        raise ValueError(f"rounds must be at least 1, got {rounds}")
    count = len(frames)
    styles = np.stack([np.asarray(exemplars[i % len(exemplars)]) for i in range(count)])
    totals, structures, semantics, outside, inside, colours = [], [], [], [], [], []
    for index in range(rounds):
        seeds = [HELD_OUT_SEED + index * count + i for i in range(count)]
        edits = np.asarray(edit(frames, styles, seeds))
        scores = feedback.score(frames, edits, styles, input_masks=masks)
        structures.append(scores.structure.cpu().numpy())
        semantics.append(scores.semantic.cpu().numpy())
        totals.append(structures[-1] + semantics[-1])
        difference = np.abs(edits.astype(np.float64) - frames.astype(np.float64)).mean(axis=-1)
        outside.append(difference[~masks].mean())
        inside.append(difference[masks].mean())
        colours.append(np.mean([edit_frame[mask].mean(axis=0) for edit_frame, mask in zip(edits, masks)], axis=0))
    round_totals = np.array([t.mean() for t in totals])
    spread = float(round_totals.std(ddof=1) / math.sqrt(rounds)) if rounds > 1 else float("nan")
    colour = np.mean(colours, axis=0)
    return EditScorecard(
        method=method,
        total=float(round_totals.mean()),
        total_spread=spread,
        structure=float(np.mean(structures)),
        semantic=float(np.mean(semantics)),
        outside_change=float(np.mean(outside)),
        inside_change=float(np.mean(inside)),
        cabinet_colour=tuple(float(c) for c in colour),
        colour_distance=float(np.linalg.norm(colour - exemplar_colour(exemplars))),
        round_totals=tuple(float(t) for t in round_totals),
    )


def identity_edit(frames: np.ndarray, styles: np.ndarray, seeds: list[int]) -> np.ndarray:
    """The baseline that edits nothing: the input returned."""
    return frames.copy()


def specialist_edit(specialist, instruction: str, num_steps: int) -> EditFunction:
    """A specialist's edits as an `EditFunction`."""

    def edit(frames: np.ndarray, styles: np.ndarray, seeds: list[int]) -> np.ndarray:
        return specialist.edit(frames, styles, instruction, num_steps=num_steps, seed=seeds)

    return edit
