"""The policy interface of the evaluation harness, shared by the RT-1 adapter and the scripted policies."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np

ACTION_DIM = 7


@dataclass
class PolicyStep:
    """One batched decision: ``actions`` (N, 7) float64 as the Google-robot env takes them (xyz delta,
    axis-angle delta, gripper) and ``terminate`` (N,) bool, True where the policy ends its episode."""

    actions: np.ndarray
    terminate: np.ndarray

    def __post_init__(self) -> None:
        self.actions = np.asarray(self.actions, dtype=np.float64)
        self.terminate = np.asarray(self.terminate, dtype=bool)
        if self.actions.ndim != 2 or self.actions.shape[1] != ACTION_DIM:
            raise ValueError(
                f"PolicyStep.actions must have shape (N, {ACTION_DIM}), got {self.actions.shape}"
            )
        if self.terminate.shape != (self.actions.shape[0],):
            raise ValueError(
                f"PolicyStep.terminate must have shape ({self.actions.shape[0]},) to match the actions, "
                f"got {self.terminate.shape}"
            )


@runtime_checkable
class Policy(Protocol):
    """A batched, language-conditioned policy.

    ``observations`` is an env observation dict whose arrays are stacked along axis 0, one row per env
    (the layout of a Gymnasium vector env); ``instructions`` holds one instruction per env.
    """

    name: str

    def reset(self, instructions: list[str]) -> None:
        """Starts new episodes, one per instruction."""

    def act(self, observations: dict[str, Any], instructions: list[str]) -> PolicyStep:
        """Chooses the next action of every env."""
