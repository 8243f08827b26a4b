"""How well edits do a specialist's job on held-out frames and noise seeds, in the judges' own terms.

A specialist is only better if it beats what a skeptic tries first: returning the input unchanged, the
untrained specialist, and one trained the same way on preferences that carry no information (a coin flip per
pair). `score_edits` measures any edit function on the same frames, masks, exemplars and noise seeds, so that
these compare pair by pair:

- `total`: structure + semantic score (lower is better), the judges' verdict;
- `outside_change`, `inside_change`: mean absolute change outside and inside the object's mask, in grey levels
  (0-255): an edit of the cabinet should change the cabinet and leave the rest of the frame alone;
- `colour_distance`: distance (grey levels, RGB) from the mean colour inside the mask to the exemplars' mean
  colour: does the object move towards the material? (The exemplars show it unlit: under the scene's light
  the right colour is darker, so this is a direction, not a target.)
- `colour_ratio_to_sim`: the edit's mean colour inside the mask over the input's, per channel;
- `edge_structure`: how much of the input's edge pattern inside the object survives (1.0 for identity; see
  `feedback.analytic.edge_structure`): drawer lines and handles kept or erased.

Selection is honest by construction: a `ScorecardSplit` hands out the frames' seed and the noise seeds of a
validation part (all tuning) and a test part (reporting only), disjoint from each other and from training.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np

from sim2real_edit.feedback import Feedback
from sim2real_edit.feedback.analytic import edge_structure

#: Noise seeds of held-out edits start here; training draws its seeds from [0, 2**31 - 1) at random, so a
#: collision is possible but has a chance of about one in a hundred thousand per seed.
HELD_OUT_SEED = 2_000_000_000
#: The test part's noise seeds start here (the validation part's at HELD_OUT_SEED); both stay below 2**31.
TEST_NOISE_SEED = 2_100_000_000
_NOISE_SEEDS_PER_PART = 40_000_000


class OverlappingSplitError(ValueError):
    """A scorecard split whose parts share frame seeds or noise seeds (with each other or with training)."""


@dataclass(frozen=True)
class ScorecardPart:
    """One part of a scorecard split: frames drawn from `frame_seed` (e.g. `stand_in_frames(frame_count,
    seed=frame_seed)`) and noise seeds from [first_noise_seed, first_noise_seed + noise_seed_count)."""

    name: str
    frame_seed: int
    frame_count: int
    first_noise_seed: int
    noise_seed_count: int = _NOISE_SEEDS_PER_PART

    def __post_init__(self):
        if self.frame_count < 1 or self.noise_seed_count < 1:
            raise ValueError(f"scorecard part {self.name!r} needs at least one frame and one noise seed, got "
                             f"{self.frame_count} frames and {self.noise_seed_count} seeds")

    @property
    def noise_seeds(self) -> range:
        return range(self.first_noise_seed, self.first_noise_seed + self.noise_seed_count)

    def round_seeds(self, round_index: int, count: int) -> list[int]:
        """The noise seeds of round `round_index` of `count` frames, all inside this part's range."""
        start = self.first_noise_seed + round_index * count
        if round_index < 0 or start + count > self.noise_seeds.stop:
            raise ValueError(f"round {round_index} of {count} frames needs noise seeds beyond the {self.name} part's "
                             f"{self.noise_seed_count}; score fewer rounds or give the part more seeds")
        return list(range(start, start + count))


@dataclass(frozen=True)
class ScorecardSplit:
    """Validation (every choice: learning rate, steps, judges) and test (reported once, never chosen on).

    Refused on construction: parts with the same frame seed, a frame seed that training uses
    (`training_frame_seeds`), or overlapping noise-seed ranges.
    """

    validation: ScorecardPart
    test: ScorecardPart
    training_frame_seeds: tuple[int, ...] = ()

    def __post_init__(self):
        if (self.validation.name, self.test.name) != ("validation", "test"):
            raise ValueError(f"a split's parts are named 'validation' and 'test', got {self.validation.name!r} and "
                             f"{self.test.name!r}")
        if self.validation.frame_seed == self.test.frame_seed:
            raise OverlappingSplitError(f"validation and test draw their frames from the same seed "
                                        f"{self.test.frame_seed}; give the test part its own frame seed")
        for part in (self.validation, self.test):
            if part.frame_seed in self.training_frame_seeds:
                raise OverlappingSplitError(f"the {part.name} part's frame seed {part.frame_seed} is a training "
                                            f"frame seed {self.training_frame_seeds}; held-out frames need their own")
        first, second = sorted((self.validation.noise_seeds, self.test.noise_seeds), key=lambda r: r.start)
        if first.stop > second.start:
            raise OverlappingSplitError(f"the noise seeds of validation {self.validation.noise_seeds} and test "
                                        f"{self.test.noise_seeds} overlap; give each part its own range")

    @classmethod
    def for_miniature(cls, base_seed: int, frame_count: int) -> ScorecardSplit:
        """The miniature's split: validation frames from base_seed + 30_000 (the scorecard's seed before the
        split), test frames from base_seed + 40_000; training uses base_seed (the base), base_seed + 10_000 (its
        held-out frames) and base_seed + 20_000 (the specialist's frames)."""
        return cls(
            validation=ScorecardPart("validation", base_seed + 30_000, frame_count, HELD_OUT_SEED),
            test=ScorecardPart("test", base_seed + 40_000, frame_count, TEST_NOISE_SEED),
            training_frame_seeds=(base_seed, base_seed + 10_000, base_seed + 20_000),
        )

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
    colour_ratio_to_sim: tuple[float, float, float]  # edit's mean colour in the mask / the input's, per channel
    edge_structure: float  # 1.0: every edge of the input inside the object kept
    split: str  # "validation", "test" or "unsplit" (scored without a ScorecardSplit)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> EditScorecard:
        """The inverse of `to_dict` (JSON gives tuples back as lists)."""
        tuples = ("cabinet_colour", "round_totals", "colour_ratio_to_sim")
        return cls(**{key: tuple(value) if key in tuples else value for key, value in values.items()})

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
    part: ScorecardPart | None = None,
    material_masks: np.ndarray | None = None,
) -> EditScorecard:
    """Scores `edit` on uint8 frames (N, H, W, 3) with their object masks (N, H, W): `rounds` rounds of fresh
    noise seeds, frame i conditioned on exemplar i mod len(exemplars) (as in training).

    `part`: the split's part the frames were drawn from; the noise seeds come from its range (without one, from
    HELD_OUT_SEED on, and the card says "unsplit"). `material_masks` (bool (N, H, W)): the object's material
    (handles and cavities left out), the region of the style score and of the colour figures; None: `masks`.
    """
    if rounds < 1:
        raise ValueError(f"rounds must be at least 1, got {rounds}")
    count = len(frames)
    if part is not None and count != part.frame_count:
        raise ValueError(f"the {part.name} part has {part.frame_count} frames but {count} were given; draw them "
                         f"with the part's frame_seed and frame_count")
    colour_masks = masks if material_masks is None else material_masks & masks
    styles = np.stack([np.asarray(exemplars[i % len(exemplars)]) for i in range(count)])
    totals, structures, semantics, outside, inside, colours, edges = [], [], [], [], [], [], []
    for index in range(rounds):
        seeds = (part.round_seeds(index, count) if part is not None
                 else [HELD_OUT_SEED + index * count + i for i in range(count)])
        edits = np.asarray(edit(frames, styles, seeds))
        scores = feedback.score(frames, edits, styles, input_masks=masks, material_masks=material_masks)
        structures.append(scores.structure.cpu().numpy())
        semantics.append(scores.semantic.cpu().numpy())
        totals.append(structures[-1] + semantics[-1])
        difference = np.abs(edits.astype(np.float64) - frames.astype(np.float64)).mean(axis=-1)
        outside.append(difference[~masks].mean())
        inside.append(difference[masks].mean())
        colours.append(np.mean([edit_frame[mask].mean(axis=0) for edit_frame, mask in zip(edits, colour_masks)],
                               axis=0))
        edges.append(edge_structure(frames, edits, masks))
    round_totals = np.array([t.mean() for t in totals])
    spread = float(round_totals.std(ddof=1) / math.sqrt(rounds)) if rounds > 1 else float("nan")
    colour = np.mean(colours, axis=0)
    sim_colour = np.mean([frame[mask].astype(np.float64).mean(axis=0) for frame, mask in zip(frames, colour_masks)],
                         axis=0)
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
        colour_ratio_to_sim=tuple(float(c) for c in colour / sim_colour),
        edge_structure=float(np.mean(edges)),
        split=part.name if part is not None else "unsplit",
    )


def identity_edit(frames: np.ndarray, styles: np.ndarray, seeds: list[int]) -> np.ndarray:
    """The baseline that edits nothing: the input returned."""
    return frames.copy()


def specialist_edit(specialist, instruction: str, num_steps: int) -> EditFunction:
    """A specialist's edits as an `EditFunction`."""

    def edit(frames: np.ndarray, styles: np.ndarray, seeds: list[int]) -> np.ndarray:
        return specialist.edit(frames, styles, instruction, num_steps=num_steps, seed=seeds)

    return edit
